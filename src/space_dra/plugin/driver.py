"""The namespace driver: what the kubelet protocol layer calls to prepare and unprepare.

Data flows one way: kubelet request -> ResourceClaim (read from the API server) -> the
controller's namespace record -> a fresh token -> artifact files -> CDI spec ->
checkpoint -> CDI device IDs for the kubelet. :mod:`~space_dra.plugin.plan` decides
(reads, waits, validates, computes the layout; writes nothing);
:mod:`~space_dra.plugin.state` makes the changes. This module ties them to the layer's
callbacks and measures every claim.

The layer hands over one claim at a time, under that claim's lock
(``Serialization.PER_CLAIM``, which this driver relies on), so calls for one claim
never overlap while other claims proceed; the background refresh takes the same locks.
A claim already in the checkpoint is answered from it, re-creating any file that went
missing, without the API server.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence

from space_dra.kube import WatchAPI
from space_dra.kubeletplugin import (
    ChangeSignal,
    Claim,
    ClaimError,
    ClaimLocks,
    Device,
    DeviceHealth,
    PrepareResult,
    UnprepareResult,
)
from space_dra.logs import log_event
from space_dra.metrics import PREPARE_CLAIMS, PREPARE_SECONDS, UNPREPARE_CLAIMS, UNPREPARE_SECONDS
from space_dra.plugin.ahead import MintAhead
from space_dra.plugin.checkpoint import PreparedClaim
from space_dra.plugin.monitor import ClaimMonitor
from space_dra.plugin.options import DriverOptions
from space_dra.plugin.plan import Planner
from space_dra.plugin.state import NodeState

log = logging.getLogger(__name__)


class NamespaceDriver:
    """A :class:`~space_dra.kubeletplugin.DRAPlugin` and health reporter for namespaces."""

    def __init__(
        self,
        kube: WatchAPI,
        options: DriverOptions,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options
        # Replaceable (tests move time forward); the plan and the state read it through _now.
        self.clock = clock
        # Jitter for the health checks; seedable for tests.
        rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.claim_locks = ClaimLocks()
        self.planner = Planner(kube, options, self._now)
        self.state = NodeState(kube, options, self._now, rng)
        # Re-reads prepared claims for their health; run() it beside the refresh.
        self.monitor = ClaimMonitor(kube, options, self.state, rng)
        # Mints tokens before the kubelet asks (run() it when options.mint_ahead).
        self.ahead = MintAhead(
            kube,
            options,
            self.planner,
            self.state.request_token,
            lambda uid: uid in self.state.prepared,
        )

    def _now(self) -> float:
        return self.clock()

    # -- lifecycle and health ------------------------------------------------------

    def recover(self) -> None:
        """Load the checkpoint and restore lost CDI specs; call before serving."""
        self.state.recover()

    def prepared(self) -> dict[str, PreparedClaim]:
        return dict(self.state.prepared)

    async def refresh_due(self) -> float:
        """Refresh due tokens (and check credentials) and repair lost files; seconds
        until the next is due."""
        return await self.state.refresh_due(self.claim_locks)

    async def check_claims_due(self) -> float:
        """Re-read the prepared claims whose health check is due; seconds until the next."""
        return await self.monitor.check_due()

    @property
    def health_changes(self) -> ChangeSignal:
        return self.state.changed

    def device_health(self) -> list[DeviceHealth]:
        return self.state.health()

    # -- prepare -------------------------------------------------------------------

    async def prepare_resource_claims(self, claims: Sequence[Claim]) -> dict[str, PrepareResult]:
        outcomes = await asyncio.gather(*(self._prepare_measured(claim) for claim in claims))
        return {claim.uid: outcome for claim, outcome in zip(claims, outcomes, strict=True)}

    async def _prepare_measured(self, claim: Claim) -> PrepareResult:
        started = time.perf_counter()
        path = "warm" if claim.uid in self.state.prepared else "cold"
        try:
            devices = await self.prepare_claim(claim)
        except ClaimError as exc:
            PREPARE_CLAIMS.labels("error").inc()
            PREPARE_SECONDS.labels("error", path).observe(time.perf_counter() - started)
            log_event(
                log,
                logging.WARNING,
                "claim_prepare_failed",
                claim_uid=claim.uid,
                claim=claim.display,
                error=str(exc),
            )
            return exc
        except Exception:
            # Counted here; the layer logs it and answers with an internal error.
            PREPARE_CLAIMS.labels("error").inc()
            PREPARE_SECONDS.labels("error", path).observe(time.perf_counter() - started)
            raise
        PREPARE_CLAIMS.labels("ok").inc()
        PREPARE_SECONDS.labels("ok", path).observe(time.perf_counter() - started)
        return devices

    async def prepare_claim(self, claim: Claim) -> list[Device]:
        known = self.state.known(claim)
        if known is not None:
            await self.state.repair(known)
            return self._response_devices(self.state.prepared[claim.uid])
        # One budget for waiting on the controller and on the node's authorization to
        # mint (see NodeState.mint), well inside the kubelet's own timeout.
        started = time.perf_counter()
        deadline = self._now() + self.options.wait_timeout
        plan = await self.planner.plan(claim, deadline, self.ahead.read_ahead(claim.uid))
        planned = time.perf_counter()
        ahead = [
            await self.ahead.take(
                claim.uid, p.record.namespace, p.record.service_account, p.token_expiration_seconds
            )
            for p in plan
        ]
        prepared = await self.state.materialise(claim, plan, deadline, ahead)
        log_event(
            log,
            logging.INFO,
            "claim_prepared",
            claim_uid=claim.uid,
            claim=claim.display,
            namespaces=",".join(d.record.namespace for d in prepared.devices),
            # Where a slow prepare spent its time: reading the claim (and waiting for the
            # controller's record), then minting and writing the files.
            plan_ms=round((planned - started) * 1000, 1),
            minted_ahead=sum(token is not None for token in ahead),
            materialise_ms=round((time.perf_counter() - planned) * 1000, 1),
        )
        return self._response_devices(prepared)

    def _response_devices(self, prepared: PreparedClaim) -> list[Device]:
        return [
            Device(
                requests=(device.request,),
                pool=device.pool,
                device=device.device,
                cdi_device_ids=(self.state.cdi.qualified_name(device.layout.cdi_device_name),),
                share_id=device.share_id,
            )
            for device in prepared.devices
        ]

    # -- unprepare -----------------------------------------------------------------

    async def unprepare_resource_claims(
        self, claims: Sequence[Claim]
    ) -> dict[str, UnprepareResult]:
        outcomes = await asyncio.gather(*(self._unprepare_measured(claim) for claim in claims))
        return {claim.uid: outcome for claim, outcome in zip(claims, outcomes, strict=True)}

    async def _unprepare_measured(self, claim: Claim) -> UnprepareResult:
        started = time.perf_counter()
        try:
            await self.state.remove(claim.uid)
        except ClaimError as exc:
            UNPREPARE_CLAIMS.labels("error").inc()
            UNPREPARE_SECONDS.labels("error").observe(time.perf_counter() - started)
            log_event(
                log, logging.WARNING, "claim_unprepare_failed", claim_uid=claim.uid, error=str(exc)
            )
            return exc
        UNPREPARE_CLAIMS.labels("ok").inc()
        UNPREPARE_SECONDS.labels("ok").observe(time.perf_counter() - started)
        log_event(log, logging.INFO, "claim_unprepared", claim_uid=claim.uid, claim=claim.display)
        return None

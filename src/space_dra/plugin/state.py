"""What the namespace driver has put on this node, and every change to it.

A plan becomes state in one order: a token per namespace, the credential files
(artifacts), the CDI spec, then the checkpoint entry. A failure after the first
write removes what the call wrote; files a crash left before the checkpoint knew of
them are found by name when the claim is unprepared. The same state is kept alive in
the background: tokens are refreshed before they expire and at least every credential
check interval, and files lost behind the plugin's back (a reboot wipes tmpfs) are
re-created. What every token request and claim read says about a device goes into the
:class:`~space_dra.plugin.health.HealthBook`; the health stream is woken when the
verdict on any device changes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import replace

from space_dra import faults
from space_dra.contract import ManagementLabels
from space_dra.kube import Forbidden, KubeAPI, KubeError, TokenBinding
from space_dra.kubeletplugin import (
    ArtifactStore,
    ChangeSignal,
    CheckpointCorrupt,
    Claim,
    ClaimError,
    ClaimLocks,
    DeviceHealth,
    GroupCommit,
    HealthStatus,
)
from space_dra.logs import log_event
from space_dra.metrics import (
    CHECKPOINT_RECOVERIES,
    PREPARED_CLAIMS,
    TOKEN_REFRESHES,
    TOKEN_REFUSALS,
)
from space_dra.naming import owned_artifact_names
from space_dra.plugin.artifacts import FILES, render
from space_dra.plugin.cdi import cdi_devices, claims_from_records, namespace_specs
from space_dra.plugin.checkpoint import PreparedClaim, PreparedDevice, open_checkpoint
from space_dra.plugin.health import HealthBook
from space_dra.plugin.options import DriverOptions
from space_dra.plugin.plan import PlannedDevice

log = logging.getLogger(__name__)

# A token as minted: (token, issued_at, expires_at), on the wall clock.
Minted = tuple[str, float, float]


class NodeState:
    def __init__(
        self,
        kube: KubeAPI,
        options: DriverOptions,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self.kube = kube
        self.options = options
        self.clock = clock
        self.labels = ManagementLabels(options.driver_name)
        self.cdi = namespace_specs(options.cdi_dir, options.driver_name)
        self.artifacts = ArtifactStore(options.artifact_dir)
        self.checkpoint = open_checkpoint(options.checkpoint_path, self._start_over)
        self.commits = GroupCommit(self.checkpoint)
        self.prepared: dict[str, PreparedClaim] = {}
        self.book = HealthBook(options, clock, rng or random.Random())  # noqa: S311 - jitter
        # What the health stream was last told, by (claim UID, pool, device).
        self._published: dict[tuple[str, str, str], DeviceHealth] = {}
        # Notified whenever the prepared devices or their health change.
        self.changed = ChangeSignal()

    def recover(self) -> None:
        """Load the checkpoint at start; rebuild it if it is unreadable (_start_over)."""
        self.artifacts.ensure_root()
        self.cdi.directory.mkdir(parents=True, exist_ok=True)
        # Read through an (empty) update: an unreadable file is then moved aside and
        # rebuilt under the same lock, whatever another instance does meanwhile.
        self.prepared = self.checkpoint.update(lambda _claims: None)
        for claim in self.prepared.values():
            self.book.track(claim, just_prepared=False)
            if not self.cdi.exists(claim.uid):
                self._write_cdi(claim)
                log_event(log, logging.INFO, "cdi_spec_restored", claim_uid=claim.uid)
        PREPARED_CLAIMS.set(len(self.prepared))

    def _start_over(self, unreadable: CheckpointCorrupt) -> dict[str, PreparedClaim]:
        """What replaces an unreadable checkpoint: the claims recorded in the CDI specs on
        the node (another instance's too, during a rolling update) and those this instance
        holds, so no prepared claim is forgotten and left without token refreshes."""
        rebuilt = claims_from_records(self.cdi.recorded_devices()) | self.prepared
        CHECKPOINT_RECOVERIES.labels(reason=unreadable.kind).inc()
        log_event(
            log,
            logging.ERROR,
            "checkpoint_unreadable",
            reason=unreadable.kind,
            error=str(unreadable),
            rebuilt_claims=len(rebuilt),
        )
        return rebuilt

    def known(self, claim: Claim) -> PreparedClaim | None:
        """The prepared state of this very claim (same UID, namespace and name)."""
        known = self.prepared.get(claim.uid)
        if known is not None and (known.namespace, known.name) == (claim.namespace, claim.name):
            return known
        return None

    # -- health ----------------------------------------------------------------------

    def _files_complete(self, device: PreparedDevice) -> bool:
        return self.artifacts.complete(device.layout.artifact_dir_name, FILES)

    def health(self) -> list[DeviceHealth]:
        """Every prepared device's health, judged now (see :mod:`space_dra.plugin.health`)."""
        return [item for _, item in self.book.report(self.prepared, self._files_complete)]

    def publish_health(self, only: str | None = None) -> None:
        """Wake the health stream if any device's health changed since it was last woken;
        log each change with its claim UID. ``only``: the one claim that changed (just
        prepared or removed), judged alone, the others kept as last judged; without it
        every device is judged (the monitor's periodic pass). Judging every device after
        each prepare made a burst of claims quadratic."""
        if only is None:
            judged, kept = self.prepared, {}
        else:
            claim = self.prepared.get(only)
            judged = {only: claim} if claim is not None else {}
            kept = {
                key: item
                for key, item in self._published.items()
                if key[0] != only and key[0] in self.prepared
            }
        current = kept | {
            (uid, item.pool, item.device): item
            for uid, item in self.book.report(judged, self._files_complete)
        }
        if current == self._published:
            return
        for (uid, pool, device), item in current.items():
            if self._published.get((uid, pool, device)) != item:
                log_event(
                    log,
                    logging.INFO if item.status is HealthStatus.HEALTHY else logging.WARNING,
                    "device_health_changed",
                    claim_uid=uid,
                    device=f"{pool}/{device}",
                    health=item.status.value,
                    message=item.message,
                )
        self._published = current
        self.changed.notify()

    # -- prepare ---------------------------------------------------------------------

    async def materialise(
        self,
        claim: Claim,
        plan: list[PlannedDevice],
        deadline: float,
        ahead: Sequence[Minted | None] = (),
    ) -> PreparedClaim:
        """``ahead``: per planned device, a token minted ahead of the kubelet, if any."""

        async def minted(index: int, p: PlannedDevice) -> Minted:
            known = ahead[index] if index < len(ahead) else None
            if known is not None:
                return known
            return await self.mint(
                claim.uid,
                p.record.namespace,
                p.record.service_account,
                p.token_expiration_seconds,
                deadline,
            )

        tokens = await asyncio.gather(*(minted(index, p) for index, p in enumerate(plan)))
        devices = tuple(
            PreparedDevice(
                request=p.ref.request,
                pool=p.ref.pool,
                device=p.ref.device,
                share_id=p.ref.share_id,
                layout=p.layout,
                record=p.record,
                token_expiration_seconds=p.token_expiration_seconds,
                token_issued_at=issued_at,
                token_expires_at=expires_at,
            )
            for p, (_, issued_at, expires_at) in zip(plan, tokens, strict=True)
        )
        prepared = PreparedClaim(claim.uid, claim.namespace, claim.name, devices)
        try:
            for device, (token, _, _) in zip(devices, tokens, strict=True):
                self._publish(device, token)
            faults.point("plugin-after-artifacts")
            self._write_cdi(prepared)
            faults.point("plugin-after-cdi-spec")
            self.prepared = await self.commits.apply(
                lambda claims: claims.__setitem__(claim.uid, prepared)
            )
        except OSError as exc:
            self._remove_files(claim.uid, prepared)
            raise ClaimError(f"claim {claim.uid}: writing files failed: {exc}") from None
        PREPARED_CLAIMS.set(len(self.prepared))
        self.book.track(prepared, just_prepared=True)
        self.publish_health(only=claim.uid)
        return prepared

    async def mint(
        self,
        claim_uid: str,
        namespace: str,
        service_account: str,
        lifetime: int,
        deadline: float | None = None,
    ) -> Minted:
        """A token for the namespace's ServiceAccount, bound to this node; raises ClaimError.

        The API server lets this node mint only once the controller has recorded a pod
        of the claim on it, which can lag the kubelet's call by a moment, and only for a
        namespace made for this very claim (the claim UID travels on the request). So a
        refusal is retried until ``deadline``; without one (background refresh), once.
        """
        try:
            return await self.request_token(
                claim_uid, namespace, service_account, lifetime, deadline
            )
        except KubeError as exc:
            raise ClaimError(f"claim {claim_uid}: {exc}") from None

    async def request_token(
        self,
        claim_uid: str,
        namespace: str,
        service_account: str,
        lifetime: int,
        deadline: float | None = None,
    ) -> Minted:
        """:meth:`mint`, raising the API server's KubeError (the health book reads it)."""
        binding = (
            TokenBinding(self.options.node_name, {self.labels.claim_uid: claim_uid})
            if self.options.node_name
            else None
        )
        delay = 0.02
        while True:
            issued_at = self.clock()
            try:
                token = await self.kube.create_token(namespace, service_account, lifetime, binding)
            except Forbidden:
                remaining = (deadline - self.clock()) if deadline is not None else 0.0
                if remaining <= 0:
                    raise
                TOKEN_REFUSALS.inc()
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)
                continue
            return token.token, issued_at, token.expires_at.timestamp()

    def _publish(self, device: PreparedDevice, token: str) -> None:
        files = render(
            device.layout.mount_path,
            device.record.server,
            self.options.ca_pem,
            device.record.namespace,
            token,
        )
        self.artifacts.publish(device.layout.artifact_dir_name, files)

    def _write_cdi(self, claim: PreparedClaim) -> None:
        self.cdi.write(claim.uid, cdi_devices(self.options.driver_name, claim, self.artifacts.path))

    # -- repair and refresh ----------------------------------------------------------

    def _due_at(self, device: PreparedDevice) -> float:
        lifetime = device.token_expires_at - device.token_issued_at
        return device.token_issued_at + self.options.refresh_fraction * lifetime

    def _needed(self, device: PreparedDevice, now: float) -> bool:
        """The token is due for refresh or the device's files are incomplete."""
        return now >= self._due_at(device) or not self._files_complete(device)

    async def repair(self, claim: PreparedClaim) -> bool:
        """Re-create missing files and refresh due tokens now (a repeated prepare);
        True when anything changed. A failure raises ClaimError."""
        changed, errors = await self._renew(claim, on_schedule=False)
        if errors:
            raise ClaimError(errors[0])
        return changed

    async def _renew(self, claim: PreparedClaim, on_schedule: bool) -> tuple[bool, list[str]]:
        """Mint and publish a token for each device that needs one (``on_schedule``: also
        the credential checks and retries the health book has due, none backing off);
        every outcome goes into the health book. Returns (anything changed, errors)."""
        now = self.clock()
        devices = list(claim.devices)
        changed = False
        errors: list[str] = []
        for index, device in enumerate(devices):
            needed = self._needed(device, now)
            if on_schedule:
                needed = self.book.mint_due(claim.uid, index, now, needed)
            if not needed:
                continue
            try:
                token, issued_at, expires_at = await self.request_token(
                    claim.uid,
                    device.record.namespace,
                    device.record.service_account,
                    device.token_expiration_seconds,
                )
                renewed = replace(device, token_issued_at=issued_at, token_expires_at=expires_at)
                self._publish(renewed, token)
            except (KubeError, OSError) as exc:
                self.book.mint_failed(claim.uid, index, exc)
                TOKEN_REFRESHES.labels("error").inc()
                errors.append(f"claim {claim.uid}: {exc}")
                continue
            self.book.minted(claim.uid, index)
            TOKEN_REFRESHES.labels("ok").inc()
            devices[index] = renewed
            changed = True
        updated = replace(claim, devices=tuple(devices))
        if not self.cdi.exists(claim.uid):
            self._write_cdi(updated)
            changed = True
        if changed:
            self.prepared = await self.commits.apply(
                lambda claims: (
                    claims.__setitem__(claim.uid, updated) if claim.uid in claims else None
                )
            )
        return changed, errors

    async def refresh_due(self, locks: ClaimLocks) -> float:
        """Renew what is due on every prepared claim, each under its claim lock; return
        the seconds until the next token request is due."""
        for uid in list(self.prepared):
            async with locks.hold(uid):
                claim = self.prepared.get(uid)
                if claim is None:
                    continue
                try:
                    changed, errors = await self._renew(claim, on_schedule=True)
                except OSError as exc:
                    changed, errors = False, [f"claim {uid}: {exc}"]
                if changed:
                    log_event(log, logging.INFO, "claim_credentials_refreshed", claim_uid=uid)
                for error in errors:
                    log_event(
                        log, logging.WARNING, "claim_refresh_failed", claim_uid=uid, error=error
                    )
        self.publish_health()
        now = self.clock()
        next_due = [
            self.book.next_attempt(uid, index, self._due_at(device))
            for uid, claim in self.prepared.items()
            for index, device in enumerate(claim.devices)
        ]
        return max(0.0, min(next_due, default=now + 3600) - now)

    # -- unprepare -------------------------------------------------------------------

    async def remove(self, uid: str) -> None:
        """Remove the claim's CDI spec, artifacts and checkpoint entry; unknown is fine."""
        try:
            self._remove_files(uid, self.prepared.get(uid))
            faults.point("plugin-after-unprepare-files")
            self.prepared = await self.commits.apply(lambda claims: claims.pop(uid, None))
        except OSError as exc:
            raise ClaimError(f"claim {uid}: removing files failed: {exc}") from None
        self.book.forget(uid)
        PREPARED_CLAIMS.set(len(self.prepared))
        self.publish_health(only=uid)

    def _remove_files(self, uid: str, claim: PreparedClaim | None) -> None:
        self.cdi.remove(uid)
        names = {d.layout.artifact_dir_name for d in claim.devices} if claim else set()
        names.update(owned_artifact_names(uid, self.artifacts.names()))
        for name in sorted(names):
            self.artifacts.remove(name)

"""What the namespace driver has put on this node, and every change to it.

A plan becomes state in one order: a token per namespace, the credential files
(artifacts), the CDI spec, then the checkpoint entry. A failure after the first
write removes what the call wrote; files a crash left before the checkpoint knew of
them are found by name when the claim is unprepared. The same state is kept alive in
the background: tokens are refreshed before they expire, and files lost behind the
plugin's back (a reboot wipes tmpfs) are re-created.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from space_dra import faults
from space_dra.kube import KubeAPI, KubeError
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
from space_dra.metrics import CHECKPOINT_RECOVERIES, PREPARED_CLAIMS, TOKEN_REFRESHES
from space_dra.naming import owned_artifact_names
from space_dra.plugin.artifacts import FILES, render
from space_dra.plugin.cdi import cdi_devices, claims_from_records, namespace_specs
from space_dra.plugin.checkpoint import PreparedClaim, PreparedDevice, open_checkpoint
from space_dra.plugin.options import DriverOptions
from space_dra.plugin.plan import PlannedDevice

log = logging.getLogger(__name__)


class NodeState:
    def __init__(self, kube: KubeAPI, options: DriverOptions, clock: Callable[[], float]) -> None:
        self.kube = kube
        self.options = options
        self.clock = clock
        self.cdi = namespace_specs(options.cdi_dir, options.driver_name)
        self.artifacts = ArtifactStore(options.artifact_dir)
        self.checkpoint = open_checkpoint(options.checkpoint_path)
        self.commits = GroupCommit(self.checkpoint)
        self.prepared: dict[str, PreparedClaim] = {}
        self.refresh_errors: dict[str, str] = {}
        # Notified whenever the prepared devices or their health change.
        self.changed = ChangeSignal()

    def recover(self) -> None:
        """Load the checkpoint at start; rebuild it from CDI specs if it is unreadable."""
        self.artifacts.ensure_root()
        self.cdi.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.prepared = self.checkpoint.load()
        except CheckpointCorrupt as exc:
            CHECKPOINT_RECOVERIES.inc()
            log_event(log, logging.ERROR, "checkpoint_corrupt", error=str(exc))
            rebuilt = claims_from_records(self.cdi.recorded_devices())
            self.prepared = self.checkpoint.update(lambda claims: claims.update(rebuilt))
            log_event(log, logging.WARNING, "checkpoint_rebuilt", claims=len(rebuilt))
        for claim in self.prepared.values():
            if not self.cdi.exists(claim.uid):
                self._write_cdi(claim)
                log_event(log, logging.INFO, "cdi_spec_restored", claim_uid=claim.uid)
        PREPARED_CLAIMS.set(len(self.prepared))

    def known(self, claim: Claim) -> PreparedClaim | None:
        """The prepared state of this very claim (same UID, namespace and name)."""
        known = self.prepared.get(claim.uid)
        if known is not None and (known.namespace, known.name) == (claim.namespace, claim.name):
            return known
        return None

    def health(self) -> list[DeviceHealth]:
        """Each prepared device is healthy while its credentials are in place and valid."""
        now = self.clock()
        report = []
        for claim in self.prepared.values():
            problem = self.refresh_errors.get(claim.uid)
            for device in claim.devices:
                message = problem or ""
                if not message and device.token_expires_at and now >= device.token_expires_at:
                    message = "the namespace token has expired and could not be refreshed"
                if not message and not self.artifacts.complete(
                    device.layout.artifact_dir_name, FILES
                ):
                    message = f"credential files for claim {claim.uid} are missing"
                status = HealthStatus.UNHEALTHY if message else HealthStatus.HEALTHY
                report.append(DeviceHealth(device.pool, device.device, status, message))
        return report

    # -- prepare ---------------------------------------------------------------------

    async def materialise(self, claim: Claim, plan: list[PlannedDevice]) -> PreparedClaim:
        tokens = await asyncio.gather(
            *(
                self._mint(
                    claim.uid,
                    p.record.namespace,
                    p.record.service_account,
                    p.token_expiration_seconds,
                )
                for p in plan
            )
        )
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
        self.changed.notify()
        return prepared

    async def _mint(
        self, claim_uid: str, namespace: str, service_account: str, lifetime: int
    ) -> tuple[str, float, float]:
        issued_at = self.clock()
        try:
            token = await self.kube.create_token(namespace, service_account, lifetime)
        except KubeError as exc:
            raise ClaimError(f"claim {claim_uid}: {exc}") from None
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

    def _due(self, device: PreparedDevice, now: float) -> bool:
        lifetime = device.token_expires_at - device.token_issued_at
        return now >= device.token_issued_at + self.options.refresh_fraction * lifetime

    async def repair(self, claim: PreparedClaim) -> bool:
        """Re-create missing files and refresh due tokens; True when anything changed."""
        now = self.clock()
        changed = False
        devices = list(claim.devices)
        for index, device in enumerate(devices):
            if self.artifacts.complete(device.layout.artifact_dir_name, FILES) and not self._due(
                device, now
            ):
                continue
            token, issued_at, expires_at = await self._mint(
                claim.uid,
                device.record.namespace,
                device.record.service_account,
                device.token_expiration_seconds,
            )
            devices[index] = replace(device, token_issued_at=issued_at, token_expires_at=expires_at)
            self._publish(devices[index], token)
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
        return changed

    async def refresh_due(self, locks: ClaimLocks) -> float:
        """Repair every prepared claim that needs it, each under its claim lock;
        return the seconds until the next token is due."""
        for uid in list(self.prepared):
            async with locks.hold(uid):
                claim = self.prepared.get(uid)
                if claim is None:
                    continue
                try:
                    if await self.repair(claim):
                        TOKEN_REFRESHES.labels("ok").inc()
                        log_event(log, logging.INFO, "claim_credentials_refreshed", claim_uid=uid)
                    if self.refresh_errors.pop(uid, None) is not None:
                        self.changed.notify()
                except (ClaimError, OSError) as exc:
                    if self.refresh_errors.get(uid) != str(exc):
                        self.refresh_errors[uid] = str(exc)
                        self.changed.notify()
                    TOKEN_REFRESHES.labels("error").inc()
                    log_event(
                        log, logging.WARNING, "claim_refresh_failed", claim_uid=uid, error=str(exc)
                    )
        now = self.clock()
        next_due = [
            d.token_issued_at
            + self.options.refresh_fraction * (d.token_expires_at - d.token_issued_at)
            for claim in self.prepared.values()
            for d in claim.devices
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
        self.refresh_errors.pop(uid, None)
        PREPARED_CLAIMS.set(len(self.prepared))
        self.changed.notify()

    def _remove_files(self, uid: str, claim: PreparedClaim | None) -> None:
        self.cdi.remove(uid)
        names = {d.layout.artifact_dir_name for d in claim.devices} if claim else set()
        names.update(owned_artifact_names(uid, self.artifacts.names()))
        for name in sorted(names):
            self.artifacts.remove(name)

"""Prepare and unprepare claims on this node: the kubelet plugin's core.

Data flows one way: kubelet request -> ResourceClaim (read from the API server)
-> the controller's namespace record -> a fresh token -> artifact files -> CDI
spec -> checkpoint -> CDI device IDs for the kubelet. Everything that can be
rejected is checked before the first write, and a failure after it removes what
this call wrote, so a bad request leaves nothing behind.

Calls for the same claim are serialised with a per-claim lock; calls for
different claims run concurrently. A claim already in the checkpoint is answered
from it (re-creating any file that went missing), without the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from space_dra import faults
from space_dra.config import ConfigError, Settings, resolve
from space_dra.contract import ClaimView, DeviceRef, NamespaceRecord, RecordError
from space_dra.kube import KubeAPI, KubeError, NotFound
from space_dra.logs import log_event
from space_dra.metrics import (
    CHECKPOINT_RECOVERIES,
    PREPARE_CLAIMS,
    PREPARE_SECONDS,
    PREPARED_CLAIMS,
    TOKEN_REFRESHES,
    UNPREPARE_CLAIMS,
    UNPREPARE_SECONDS,
)
from space_dra.naming import (
    DeviceLayout,
    NamingError,
    check_uid,
    device_layout,
    owned_artifact_names,
)
from space_dra.plugin.artifacts import ArtifactStore, render
from space_dra.plugin.cdi import CDIDevice, CDISpecs
from space_dra.plugin.checkpoint import (
    Checkpoint,
    CheckpointCorrupt,
    GroupCommit,
    PreparedClaim,
    PreparedDevice,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriverOptions:
    driver_name: str
    cdi_dir: Path
    artifact_dir: Path
    checkpoint_path: Path
    ca_pem: bytes
    # Replaces the server URL the controller recorded (for nodes that reach the
    # API server differently from the rest of the cluster).
    server_override: str | None = None
    # How long prepare waits for the controller's record; well inside the
    # kubelet's 45 s timeout so the kubelet gets our error, not its own.
    wait_timeout: float = 20.0
    # Refresh a token once this fraction of its lifetime has passed.
    refresh_fraction: float = 0.8
    # Token lifetime when no NamespaceConfig sets one (policy bounds still apply).
    default_token_seconds: int = 3600


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str

    @property
    def display(self) -> str:
        """namespace/name for messages, clipped to Kubernetes' limits so hostile
        requests cannot make errors and logs arbitrarily large."""
        return f"{clip(self.namespace, 63)}/{clip(self.name, 253)}"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class ClaimError(Exception):
    """Preparing or unpreparing one claim failed; the message goes to the kubelet."""


@dataclass(frozen=True)
class DeviceHealth:
    pool: str
    device: str
    healthy: bool
    message: str


class ChangeSignal:
    """Wakes every waiter when the set of prepared devices or their health changes."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Return on the next change or after ``seconds``, whichever comes first."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)


@dataclass(frozen=True)
class _Planned:
    ref: DeviceRef
    settings: Settings
    layout: DeviceLayout
    record: NamespaceRecord


class NamespaceDriver:
    def __init__(
        self, kube: KubeAPI, options: DriverOptions, clock: Callable[[], float] = time.time
    ) -> None:
        self.kube = kube
        self.options = options
        self.clock = clock
        self.cdi = CDISpecs(options.cdi_dir, options.driver_name)
        self.artifacts = ArtifactStore(options.artifact_dir)
        self.checkpoint = Checkpoint(options.checkpoint_path)
        self.commits = GroupCommit(self.checkpoint)
        self._prepared: dict[str, PreparedClaim] = {}
        # Per-claim locks with a count of their users, dropped when unused: a lock
        # per UID ever seen would grow without bound under hostile requests.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._refresh_errors: dict[str, str] = {}
        self.changed = ChangeSignal()

    # -- lifecycle -----------------------------------------------------------------

    def recover(self) -> None:
        """Load the checkpoint at start; rebuild it from CDI specs if it is unreadable."""
        self.artifacts.ensure_root()
        self.cdi.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._prepared = self.checkpoint.load()
        except CheckpointCorrupt as exc:
            CHECKPOINT_RECOVERIES.inc()
            log_event(log, logging.ERROR, "checkpoint_corrupt", error=str(exc))
            rebuilt = self._claims_from_cdi_specs()
            self._prepared = self.checkpoint.update(lambda claims: claims.update(rebuilt))
            log_event(log, logging.WARNING, "checkpoint_rebuilt", claims=len(rebuilt))
        for claim in self._prepared.values():
            if not self.cdi.exists(claim.uid):
                self._write_cdi(claim)
                log_event(log, logging.INFO, "cdi_spec_restored", claim_uid=claim.uid)
        PREPARED_CLAIMS.set(len(self._prepared))

    def _claims_from_cdi_specs(self) -> dict[str, PreparedClaim]:
        rebuilt = {}
        for uid, records in self.cdi.recorded_devices().items():
            try:
                devices = tuple(PreparedDevice.from_json(r) for r in records)
                first = records[0]
                rebuilt[uid] = PreparedClaim(
                    uid, str(first["claim_namespace"]), str(first["claim_name"]), devices
                )
            except (KeyError, TypeError, IndexError):
                log_event(log, logging.WARNING, "cdi_spec_unusable_for_recovery", claim_uid=uid)
        return rebuilt

    def prepared(self) -> dict[str, PreparedClaim]:
        return dict(self._prepared)

    def health(self) -> list[DeviceHealth]:
        """Each prepared device is healthy while its credentials are in place and valid."""
        now = self.clock()
        report = []
        for claim in self._prepared.values():
            problem = self._refresh_errors.get(claim.uid)
            for device in claim.devices:
                message = problem or ""
                if not message and device.token_expires_at and now >= device.token_expires_at:
                    message = "the namespace token has expired and could not be refreshed"
                if not message and not self.artifacts.complete(device.artifact_dir_name):
                    message = f"credential files for claim {claim.uid} are missing"
                report.append(DeviceHealth(device.pool, device.device, not message, message))
        return report

    @contextlib.asynccontextmanager
    async def _claim_lock(self, uid: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(uid, (asyncio.Lock(), 0))
        self._locks[uid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[uid]
            if users == 1:
                del self._locks[uid]
            else:
                self._locks[uid] = (lock, users - 1)

    # -- prepare -------------------------------------------------------------------

    async def prepare(
        self, claims: Sequence[ClaimRef]
    ) -> dict[str, list[PreparedDevice] | ClaimError]:
        """Prepare every claim; the result has an entry for each requested UID."""
        outcomes = await asyncio.gather(*(self._prepare_measured(ref) for ref in claims))
        return {ref.uid: outcome for ref, outcome in zip(claims, outcomes, strict=True)}

    async def _prepare_measured(self, ref: ClaimRef) -> list[PreparedDevice] | ClaimError:
        started = time.perf_counter()
        path = "warm" if ref.uid in self._prepared else "cold"
        try:
            devices = await self.prepare_claim(ref)
        except ClaimError as exc:
            PREPARE_CLAIMS.labels("error").inc()
            PREPARE_SECONDS.labels("error", path).observe(time.perf_counter() - started)
            log_event(
                log,
                logging.WARNING,
                "claim_prepare_failed",
                claim_uid=ref.uid,
                claim=f"{ref.display}",
                error=str(exc),
            )
            return exc
        except Exception as exc:
            PREPARE_CLAIMS.labels("error").inc()
            PREPARE_SECONDS.labels("error", path).observe(time.perf_counter() - started)
            log.exception("claim_prepare_crashed", extra={"space_fields": {"claim_uid": ref.uid}})
            return ClaimError(f"claim {ref.uid}: internal error: {type(exc).__name__}: {exc}")
        PREPARE_CLAIMS.labels("ok").inc()
        PREPARE_SECONDS.labels("ok", path).observe(time.perf_counter() - started)
        return devices

    async def prepare_claim(self, ref: ClaimRef) -> list[PreparedDevice]:
        try:
            check_uid(ref.uid)
        except NamingError as exc:
            raise ClaimError(f"claim {ref.display}: {exc}") from None
        async with self._claim_lock(ref.uid):
            known = self._prepared.get(ref.uid)
            if known is not None and (known.namespace, known.name) == (ref.namespace, ref.name):
                await self._repair(known)
                return list(self._prepared[ref.uid].devices)
            plan = await self._plan(ref)
            return await self._materialise(ref, plan)

    async def _plan(self, ref: ClaimRef) -> list[_Planned]:
        """Read the claim, check it is ours, and wait for the controller's records."""
        deadline = self.clock() + self.options.wait_timeout
        delay = 0.05
        while True:
            view = await self._fetch(ref)
            planned, waiting_for = self._plan_devices(ref, view)
            if not waiting_for:
                return planned
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise ClaimError(
                    f"claim {ref.uid}: the controller has not marked namespace(s) for "
                    f"{', '.join(waiting_for)} ready after {self.options.wait_timeout:g}s; "
                    "the kubelet will retry (check the space-dra controller's logs and the "
                    "claim's status.devices)"
                )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)

    async def _fetch(self, ref: ClaimRef) -> ClaimView:
        try:
            claim = await self.kube.get_claim(ref.namespace, ref.name)
        except NotFound:
            raise ClaimError(f"claim {ref.uid}: ResourceClaim {ref.display} not found") from None
        except KubeError as exc:
            raise ClaimError(f"claim {ref.uid}: {exc}") from None
        view = ClaimView(claim, self.options.driver_name)
        if view.uid != ref.uid:
            raise ClaimError(
                f"claim {ref.uid}: ResourceClaim {ref.display} now has UID "
                f"{view.uid or '(none)'}; the claim was replaced"
            )
        if not view.allocated:
            raise ClaimError(f"claim {ref.uid}: ResourceClaim {ref.display} is not allocated")
        return view

    def _plan_devices(self, ref: ClaimRef, view: ClaimView) -> tuple[list[_Planned], list[str]]:
        devices = view.our_devices()
        if not devices:
            raise ClaimError(
                f"claim {ref.uid}: no device of driver {self.options.driver_name} is allocated to "
                f"ResourceClaim {ref.display}"
            )
        planned: list[_Planned] = []
        waiting_for: list[str] = []
        for index, device in enumerate(devices):
            label = f"{device.request}={device.pool}/{device.device}"
            try:
                settings = resolve(
                    view.opaque_configs(device.request),
                    device.admin_access,
                    Settings(token_expiration_seconds=self.options.default_token_seconds),
                ).settings
                layout = device_layout(ref.uid, view.display_name, index, len(devices), settings)
                state = view.device_state(device)
            except (ConfigError, NamingError, RecordError) as exc:
                raise ClaimError(f"claim {ref.uid}: device {label}: {exc}") from None
            if state.failure is not None:
                raise ClaimError(
                    f"claim {ref.uid}: device {label}: "
                    f"namespace provisioning failed: {state.failure}"
                )
            if state.record is None:
                waiting_for.append(label)
                continue
            planned.append(_Planned(device, settings, layout, state.record))
        return planned, waiting_for

    async def _materialise(self, ref: ClaimRef, plan: list[_Planned]) -> list[PreparedDevice]:
        tokens = await asyncio.gather(
            *(
                self._mint(
                    ref.uid,
                    p.record.namespace,
                    p.record.service_account,
                    p.settings.token_expiration_seconds,
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
                cdi_device_name=p.layout.cdi_device_name,
                artifact_dir_name=p.layout.artifact_dir_name,
                env_prefix=p.layout.env_prefix,
                mount_path=p.layout.mount_path,
                namespace=p.record.namespace,
                service_account=p.record.service_account,
                server=self.options.server_override or p.record.server,
                token_expiration_seconds=p.settings.token_expiration_seconds,
                token_issued_at=issued_at,
                token_expires_at=expires_at,
            )
            for p, (_, issued_at, expires_at) in zip(plan, tokens, strict=True)
        )
        claim = PreparedClaim(ref.uid, ref.namespace, ref.name, devices)
        try:
            for device, (token, _, _) in zip(devices, tokens, strict=True):
                self._publish(device, token)
            faults.point("plugin-after-artifacts")
            self._write_cdi(claim)
            faults.point("plugin-after-cdi-spec")
            self._prepared = await self.commits.apply(
                lambda claims: claims.__setitem__(ref.uid, claim)
            )
        except OSError as exc:
            self._remove_files(ref.uid, claim)
            raise ClaimError(f"claim {ref.uid}: writing files failed: {exc}") from None
        PREPARED_CLAIMS.set(len(self._prepared))
        self.changed.notify()
        log_event(
            log,
            logging.INFO,
            "claim_prepared",
            claim_uid=ref.uid,
            claim=f"{ref.display}",
            namespaces=",".join(d.namespace for d in devices),
        )
        return list(devices)

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
            device.mount_path, device.server, self.options.ca_pem, device.namespace, token
        )
        self.artifacts.publish(device.artifact_dir_name, files)

    def _write_cdi(self, claim: PreparedClaim) -> None:
        self.cdi.write(
            claim.uid,
            [
                CDIDevice(
                    name=device.cdi_device_name,
                    env=_layout_of(device).env(
                        self.options.driver_name, device.namespace, device.server
                    ),
                    host_path=str(self.artifacts.path(device.artifact_dir_name)),
                    container_path=device.mount_path,
                    # Token times are left out so the spec only changes when
                    # what containers see changes; recovery re-mints anyway.
                    record={
                        **device.to_json(),
                        "token_issued_at": 0.0,
                        "token_expires_at": 0.0,
                        "claim_namespace": claim.namespace,
                        "claim_name": claim.name,
                    },
                )
                for device in claim.devices
            ],
        )

    def cdi_device_id(self, device: PreparedDevice) -> str:
        return self.cdi.qualified_name(device.cdi_device_name)

    # -- repair and refresh ----------------------------------------------------------

    def _due(self, device: PreparedDevice, now: float) -> bool:
        lifetime = device.token_expires_at - device.token_issued_at
        return now >= device.token_issued_at + self.options.refresh_fraction * lifetime

    async def _repair(self, claim: PreparedClaim) -> bool:
        """Re-create missing files and refresh due tokens; True when anything changed."""
        now = self.clock()
        changed = False
        devices = list(claim.devices)
        for index, device in enumerate(devices):
            if self.artifacts.complete(device.artifact_dir_name) and not self._due(device, now):
                continue
            token, issued_at, expires_at = await self._mint(
                claim.uid, device.namespace, device.service_account, device.token_expiration_seconds
            )
            devices[index] = replace(device, token_issued_at=issued_at, token_expires_at=expires_at)
            self._publish(devices[index], token)
            changed = True
        updated = replace(claim, devices=tuple(devices))
        if not self.cdi.exists(claim.uid):
            self._write_cdi(updated)
            changed = True
        if changed:
            self._prepared = await self.commits.apply(
                lambda claims: (
                    claims.__setitem__(claim.uid, updated) if claim.uid in claims else None
                )
            )
        return changed

    async def refresh_due(self) -> float:
        """Repair every prepared claim that needs it; return seconds until the next is due."""
        for uid in list(self._prepared):
            async with self._claim_lock(uid):
                claim = self._prepared.get(uid)
                if claim is None:
                    continue
                try:
                    if await self._repair(claim):
                        TOKEN_REFRESHES.labels("ok").inc()
                        log_event(log, logging.INFO, "claim_credentials_refreshed", claim_uid=uid)
                    if self._refresh_errors.pop(uid, None) is not None:
                        self.changed.notify()
                except (ClaimError, OSError) as exc:
                    if self._refresh_errors.get(uid) != str(exc):
                        self._refresh_errors[uid] = str(exc)
                        self.changed.notify()
                    TOKEN_REFRESHES.labels("error").inc()
                    log_event(
                        log, logging.WARNING, "claim_refresh_failed", claim_uid=uid, error=str(exc)
                    )
        now = self.clock()
        next_due = [
            d.token_issued_at
            + self.options.refresh_fraction * (d.token_expires_at - d.token_issued_at)
            for claim in self._prepared.values()
            for d in claim.devices
        ]
        return max(0.0, min(next_due, default=now + 3600) - now)

    # -- unprepare -------------------------------------------------------------------

    async def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, ClaimError | None]:
        outcomes = await asyncio.gather(*(self._unprepare_measured(ref) for ref in claims))
        return {ref.uid: outcome for ref, outcome in zip(claims, outcomes, strict=True)}

    async def _unprepare_measured(self, ref: ClaimRef) -> ClaimError | None:
        started = time.perf_counter()
        try:
            await self.unprepare_claim(ref)
        except ClaimError as exc:
            UNPREPARE_CLAIMS.labels("error").inc()
            UNPREPARE_SECONDS.labels("error").observe(time.perf_counter() - started)
            log_event(
                log, logging.WARNING, "claim_unprepare_failed", claim_uid=ref.uid, error=str(exc)
            )
            return exc
        UNPREPARE_CLAIMS.labels("ok").inc()
        UNPREPARE_SECONDS.labels("ok").observe(time.perf_counter() - started)
        return None

    async def unprepare_claim(self, ref: ClaimRef) -> None:
        """Remove the claim's CDI spec, artifacts and checkpoint entry; unknown is fine."""
        try:
            check_uid(ref.uid)
        except NamingError as exc:
            raise ClaimError(f"claim {ref.display}: {exc}") from None
        async with self._claim_lock(ref.uid):
            try:
                self._remove_files(ref.uid, self._prepared.get(ref.uid))
                faults.point("plugin-after-unprepare-files")
                self._prepared = await self.commits.apply(lambda claims: claims.pop(ref.uid, None))
            except OSError as exc:
                raise ClaimError(f"claim {ref.uid}: removing files failed: {exc}") from None
        self._refresh_errors.pop(ref.uid, None)
        PREPARED_CLAIMS.set(len(self._prepared))
        self.changed.notify()
        log_event(
            log,
            logging.INFO,
            "claim_unprepared",
            claim_uid=ref.uid,
            claim=f"{ref.display}",
        )

    def _remove_files(self, uid: str, claim: PreparedClaim | None) -> None:
        self.cdi.remove(uid)
        names = {d.artifact_dir_name for d in claim.devices} if claim else set()
        names.update(owned_artifact_names(uid, self.artifacts.names()))
        for name in sorted(names):
            self.artifacts.remove(name)


def _layout_of(device: PreparedDevice) -> DeviceLayout:
    return DeviceLayout(
        cdi_device_name=device.cdi_device_name,
        artifact_dir_name=device.artifact_dir_name,
        env_prefix=device.env_prefix,
        mount_path=device.mount_path,
    )

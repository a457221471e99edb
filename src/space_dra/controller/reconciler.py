"""Drive every claim allocated to our driver towards "one ready namespace per device".

Claims and managed namespaces are watched into caches; every claim event queues
the claim's key, and one worker at a time reconciles a key:

- for each of our devices without a record: check the config against policy
  (a rejection is recorded as ``NamespaceFailed`` and nothing is created), adopt
  a namespace we already made for it (after a crash) or create one, fill it, then
  record ``NamespaceReady`` with the namespace, ServiceAccount and server URL;
- namespaces that the claim no longer holds are deleted (see :mod:`gc`).

A periodic full resync re-queues every claim and sweeps every managed namespace,
catching whatever happened while the controller was down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lightkube.resources.core_v1 import Namespace
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra import faults
from space_dra.config import ConfigError, resolve
from space_dra.contract import (
    WORKLOAD_SERVICE_ACCOUNT,
    ClaimView,
    DeviceRef,
    ManagementLabels,
    NamespaceRecord,
    RecordError,
)
from space_dra.controller.gc import judge
from space_dra.controller.informer import Informer, Key, key_of
from space_dra.controller.provision import MANAGED_BY_VALUE, Provisioner, device_label
from space_dra.controller.status import DeviceOutcome, emit_event, write_status
from space_dra.controller.workqueue import WorkQueue
from space_dra.kube import Conflict, ControllerAPI, Invalid, KubeError, NotFound
from space_dra.logs import log_event
from space_dra.metrics import (
    FAILURES,
    GC_DELETIONS,
    NAMESPACES_MANAGED,
    PROVISION_SECONDS,
    PROVISIONED,
    UNVERIFIED_NAMESPACES,
)

log = logging.getLogger(__name__)

# Failure reason recorded on the claim -> (log event, reason of the Warning Event).
_REFUSAL_REPORTS = {
    "InvalidConfig": ("claim_config_rejected", "InvalidNamespaceConfig"),
    "Rejected": ("namespace_rejected", "NamespaceRejected"),
}


@dataclass(frozen=True)
class ReconcilerOptions:
    driver: str
    pod_api_server: str
    protected_namespaces: frozenset[str]
    resync_seconds: float = 300.0
    workers: int = 8
    # How long a rejection by the API server is answered from memory.
    rejection_memory_seconds: float = 300.0


class Reconciler:
    def __init__(
        self, kube: ControllerAPI, provisioner: Provisioner, options: ReconcilerOptions
    ) -> None:
        self.kube = kube
        self.provisioner = provisioner
        self.options = options
        self.labels = ManagementLabels(options.driver)
        self.claims: Informer[ResourceClaim] = Informer(kube, ResourceClaim, self._on_claim)
        self.namespaces: Informer[Namespace] = Informer(
            kube, Namespace, self._on_namespace, labels={self.labels.managed_by: MANAGED_BY_VALUE}
        )
        self.queue: WorkQueue[Key] = WorkQueue(self.reconcile, workers=options.workers)
        # Namespaces we created whose watch event may not have arrived yet, so a
        # re-run before the cache catches up adopts them instead of creating more.
        self._created: dict[tuple[str, str], Namespace] = {}
        self._uids: dict[Key, str] = {}
        self._keys: dict[str, Key] = {}
        self._first_seen: dict[str, float] = {}
        # Claim UIDs that a key held before the claim was re-created under that name.
        self._replaced: dict[Key, set[str]] = {}
        # (claim UID, config inputs) refused before -> (reason, message, until when).
        self._refused: dict[tuple[str, str], tuple[str, str, float]] = {}
        self._unverified_reported: set[str] = set()
        # UIDs of namespaces we asked to delete whose Terminating state may not be
        # cached yet, so a second pass does not delete (and count) them again.
        self._deleting: set[str] = set()

    # -- events ----------------------------------------------------------------------

    def _relevant(self, claim: ResourceClaim | None) -> bool:
        if claim is None or claim.status is None or claim.status.allocation is None:
            return False
        return bool(ClaimView(claim, self.options.driver).our_devices())

    def _on_claim(self, event: str, old: Any, new: Any) -> None:
        obj = new or old
        key = key_of(obj)
        if self._relevant(new) or self._relevant(old) or key in self._uids:
            if obj.metadata and obj.metadata.uid:
                self._remember(key, obj.metadata.uid)
            self.queue.add(key)

    def _on_namespace(self, event: str, old: Any, new: Any) -> None:
        obj = new or old
        labels = (obj.metadata.labels if obj.metadata else None) or {}
        uid = labels.get(self.labels.claim_uid)
        if new is not None:
            self._created.pop((uid or "", labels.get(self.labels.device, "")), None)
        if new is None or (new.metadata and new.metadata.deletionTimestamp):
            self._deleting.discard(obj.metadata.uid if obj.metadata else "")
        # Queue the owning claim, if we know it, so duplicates and orphans are settled.
        key = self._keys.get(uid or "")
        if key is not None:
            self.queue.add(key)
        NAMESPACES_MANAGED.set(len(self.namespaces.cache))

    def _remember(self, key: Key, uid: str) -> None:
        previous = self._uids.get(key)
        if previous is not None and previous != uid:
            # Deleted and re-created under the same name before a reconcile saw the
            # deletion: the old claim's namespaces are collected on the next reconcile.
            self._replaced.setdefault(key, set()).add(previous)
            if self._keys.get(previous) == key:
                del self._keys[previous]
        self._uids[key] = uid
        self._keys[uid] = key

    def _forget(self, key: Key) -> None:
        uid = self._uids.pop(key, None)
        if uid is not None:
            self._first_seen.pop(uid, None)
            if self._keys.get(uid) == key:
                del self._keys[uid]

    # -- lookups ---------------------------------------------------------------------

    def _namespaces_for(self, claim_uid: str) -> list[Namespace]:
        found = {
            ns.metadata.name: ns
            for ns in self.namespaces.cache.values()
            if ns.metadata and (ns.metadata.labels or {}).get(self.labels.claim_uid) == claim_uid
        }
        for (uid, _), ns in self._created.items():
            if uid == claim_uid and ns.metadata and ns.metadata.name not in found:
                found[ns.metadata.name] = ns
        return [ns for ns in found.values() if self._owned(ns)]

    def _owned(self, namespace: Namespace) -> bool:
        if self.provisioner.signature_valid(namespace):
            return True
        name = namespace.metadata.name if namespace.metadata else ""
        if name and name not in self._unverified_reported:
            self._unverified_reported.add(name)
            log_event(
                log,
                logging.WARNING,
                "namespace_unverified",
                namespace=name,
                detail="carries our labels but no valid ownership signature; never deleted",
            )
        return False

    # -- reconcile -------------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        for old_uid in sorted(self._replaced.get(key, ())):
            try:
                await self._collect(old_uid, None)
            except KubeError as exc:
                # Best effort: the claim that now has this name must not wait for it;
                # the sweep deletes the old claim's namespaces later.
                log_event(log, logging.WARNING, "gc_failed", claim_uid=old_uid, error=str(exc))
            self._replaced[key].discard(old_uid)
        if not self._replaced.get(key):
            self._replaced.pop(key, None)
        claim = self.claims.cache.get(key)
        if claim is None:
            uid = self._uids.get(key)
            if uid:
                await self._collect(uid, None)
                # Kept across deallocations (the scheduler's retries), dropped with the claim.
                for refusal in [k for k in self._refused if k[0] == uid]:
                    del self._refused[refusal]
            self._forget(key)
            return
        view = ClaimView(claim, self.options.driver)
        self._remember(key, view.uid)
        if view.deleting or not view.allocated or not view.our_devices():
            await self._collect(view.uid, view)
            if not view.allocated:
                self._forget(key)
            return
        try:
            await self._provision(view)
        finally:
            # Even when one device keeps failing, namespaces the claim no longer holds
            # (released devices, crash duplicates) must go: the sweep leaves them to us.
            await self._collect(view.uid, view)

    async def _provision(self, view: ClaimView) -> None:
        devices = view.our_devices()
        outcomes: list[DeviceOutcome] = []
        changed = False
        existing = self._namespaces_for(view.uid)
        for device in devices:
            try:
                state = view.device_state(device)
            except RecordError:
                state = None
            if state is not None and state.record is not None:
                outcomes.append(DeviceOutcome(device, record=state.record))
                continue
            if state is not None and state.failure is not None:
                reason, _, message = state.failure.partition(": ")
                outcomes.append(
                    DeviceOutcome(device, failure_reason=reason, failure_message=message)
                )
                continue
            outcomes.append(await self._provision_device(view, device, existing))
            changed = True
        if changed:
            faults.point("controller-before-status-write")
            try:
                stored = await write_status(self.kube, view, outcomes)
            except KubeError as exc:
                if not await self._claim_gone(view, exc):
                    raise
                log_event(
                    log,
                    logging.INFO,
                    "claim_replaced",
                    claim_uid=view.uid,
                    claim=f"{view.namespace}/{view.name}",
                    detail="deleted (and maybe re-created) while provisioning; undoing",
                )
                self._first_seen.pop(view.uid, None)
                await self._collect(view.uid, None)
                return
            self.claims.remember(stored)
            now = time.time()
            first_seen = self._first_seen.pop(view.uid, now)
            started = _allocated_at(view) or first_seen
            for outcome in outcomes:
                if outcome.failed:
                    continue
                PROVISION_SECONDS.observe(max(0.0, now - started))

    async def _claim_gone(self, view: ClaimView, exc: KubeError) -> bool:
        """Whether a failed status write means the claim is gone or is another object now."""
        if isinstance(exc, NotFound):
            return True
        if not isinstance(exc, Invalid):
            return False
        try:
            current = await self.kube.get_claim(view.namespace, view.name)
        except NotFound:
            return True
        return (current.metadata.uid if current.metadata else None) != view.uid

    async def _provision_device(
        self, view: ClaimView, device: DeviceRef, existing: list[Namespace]
    ) -> DeviceOutcome:
        self._first_seen.setdefault(view.uid, time.time())
        label = f"{device.request}={device.pool}/{device.device}"
        configs = view.opaque_configs(device.request)
        # The scheduler answers a failure by re-allocating the claim (every few seconds);
        # a config refused before is refused again from memory: no new namespace, Event
        # or log line. The key is what the decision depends on, so a changed DeviceClass
        # config is judged afresh.
        refusal_key = (view.uid, repr((configs, device.admin_access)))
        refused = self._refused.get(refusal_key)
        if refused is not None and time.monotonic() < refused[2]:
            reason, message, _ = refused
            return DeviceOutcome(device, failure_reason=reason, failure_message=message)
        try:
            settings = resolve(configs, device.admin_access).settings
        except ConfigError as exc:
            # The parser's verdict depends only on the key: remembered for good.
            return await self._refuse(
                view, device, label, refusal_key, "InvalidConfig", str(exc), math.inf
            )

        namespace = self._adopt(device, existing)
        try:
            if namespace is None:
                namespace = await self.provisioner.create_namespace(
                    view.uid, f"{view.namespace}/{view.name}", device, settings
                )
                self._created[(view.uid, device_label(device))] = namespace
                faults.point("controller-after-namespace-create")
            name = namespace.metadata.name if namespace.metadata and namespace.metadata.name else ""
            await self.provisioner.fill(name, settings)
        except Invalid as exc:
            # Any other KubeError is transient: the work queue retries. But the API
            # server refuses what this config makes (e.g. a quota on a resource it does
            # not know): retrying cannot help. GC removes the half-filled
            # namespace once the failure is recorded. An admission policy or webhook can
            # be behind a 400/422 too, and may be fixed: remembered for a while only.
            return await self._refuse(
                view,
                device,
                label,
                refusal_key,
                "Rejected",
                f"the API server rejected the namespace's objects: {exc}",
                time.monotonic() + self.options.rejection_memory_seconds,
            )
        faults.point("controller-after-namespace-contents")
        PROVISIONED.labels("ok").inc()
        log_event(
            log,
            logging.INFO,
            "namespace_provisioned",
            claim_uid=view.uid,
            claim=f"{view.namespace}/{view.name}",
            device=label,
            namespace=name,
        )
        await emit_event(
            self.kube, view, "Normal", "NamespaceProvisioned", f"{label}: namespace {name} is ready"
        )
        return DeviceOutcome(
            device,
            record=NamespaceRecord(name, WORKLOAD_SERVICE_ACCOUNT, self.options.pod_api_server),
        )

    async def _refuse(
        self,
        view: ClaimView,
        device: DeviceRef,
        label: str,
        refusal_key: tuple[str, str],
        reason: str,
        message: str,
        until: float,
    ) -> DeviceOutcome:
        """Record a device's provisioning failure: metrics, memory, log and a Warning Event."""
        FAILURES.labels(reason).inc()
        PROVISIONED.labels("failed").inc()
        self._refused[refusal_key] = (reason, message, until)
        log_name, event_reason = _REFUSAL_REPORTS[reason]
        log_event(log, logging.WARNING, log_name, claim_uid=view.uid, device=label, error=message)
        await emit_event(self.kube, view, "Warning", event_reason, f"{label}: {message}")
        return DeviceOutcome(device, failure_reason=reason, failure_message=message)

    def _adopt(self, device: DeviceRef, existing: list[Namespace]) -> Namespace | None:
        """Reuse the oldest namespace we already made for this device; GC drops the rest."""
        candidates = [
            ns
            for ns in existing
            if ns.metadata
            and (ns.metadata.labels or {}).get(self.labels.device) == device_label(device)
            and ns.metadata.deletionTimestamp is None
        ]
        candidates.sort(key=_age_key)
        return candidates[0] if candidates else None

    # -- garbage collection ----------------------------------------------------------

    async def _collect(self, claim_uid: str, view: ClaimView | None) -> None:
        claims = {claim_uid: view} if view is not None else {}
        for namespace in self._namespaces_for(claim_uid):
            await self._maybe_delete(namespace, claims)

    async def _maybe_delete(self, namespace: Namespace, claims: dict[str, ClaimView]) -> None:
        verdict = judge(
            namespace,
            self.labels,
            claims,
            self.options.protected_namespaces,
            self._owned(namespace),
        )
        if not verdict.delete:
            return
        meta = namespace.metadata
        assert meta is not None and meta.name
        if meta.uid in self._deleting:
            return
        try:
            faults.point("controller-before-namespace-delete")
            await self.kube.delete(Namespace, meta.name, uid=meta.uid)
            faults.point("controller-after-namespace-delete")
        except NotFound:
            return
        except Conflict:
            return  # the UID precondition failed: the name is someone else's now
        if meta.uid:
            self._deleting.add(meta.uid)
        GC_DELETIONS.labels(verdict.why).inc()
        labels = meta.labels or {}
        log_event(
            log,
            logging.INFO,
            "namespace_deleted",
            namespace=meta.name,
            claim_uid=labels.get(self.labels.claim_uid, ""),
            why=verdict.why,
        )
        self._created.pop(
            (labels.get(self.labels.claim_uid, ""), labels.get(self.labels.device, "")), None
        )

    async def sweep(self) -> None:
        """Full pass over every managed namespace.

        A namespace whose claim still exists is settled by that claim's reconcile (queued
        here), never by the sweep itself: the work queue runs one reconcile per claim at a
        time, so a deletion judged here cannot race a worker adopting the same namespace.
        The sweep deletes only namespaces whose claim is gone; a UID never comes back.
        """
        keys_by_uid = {
            claim.metadata.uid: key
            for key, claim in self.claims.cache.items()
            if claim.metadata and claim.metadata.uid
        }
        for refusal in [k for k in self._refused if k[0] not in keys_by_uid]:
            del self._refused[refusal]  # claims deleted while deallocated
        for namespace in list(self.namespaces.cache.values()):
            labels = (namespace.metadata.labels if namespace.metadata else None) or {}
            key = keys_by_uid.get(labels.get(self.labels.claim_uid, ""))
            if key is not None:
                self.queue.add(key)
                continue
            try:
                await self._maybe_delete(namespace, {})
            except KubeError as exc:
                log_event(
                    log, logging.WARNING, "gc_failed", namespace=_name(namespace), error=str(exc)
                )
        unverified = [
            ns for ns in self.namespaces.cache.values() if not self.provisioner.signature_valid(ns)
        ]
        UNVERIFIED_NAMESPACES.set(len(unverified))
        NAMESPACES_MANAGED.set(len(self.namespaces.cache) - len(unverified))

    def requeue_all(self, keys: Iterable[Key] | None = None) -> None:
        for key in keys if keys is not None else list(self.claims.cache):
            if self._relevant(self.claims.cache.get(key)):
                self.queue.add(key)

    # -- run -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until a part stops; that is always a failure, raised to the caller.

        An informer that died would leave the controller working from a frozen cache,
        so its end ends the run instead.
        """
        tasks = [
            asyncio.create_task(self.claims.run(), name="claim-informer"),
            asyncio.create_task(self.namespaces.run(), name="namespace-informer"),
            asyncio.create_task(self._reconcile_and_sweep(), name="reconciler"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise RuntimeError(f"{', '.join(t.get_name() for t in done)} stopped")
        finally:
            for task in tasks:
                task.cancel()
            # Workers first: none may act on a cache that no longer follows the cluster.
            await self.queue.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _reconcile_and_sweep(self) -> None:
        # GC must never run against a half-filled cache: an empty claim cache
        # would make every namespace look orphaned.
        await asyncio.gather(self.claims.synced.wait(), self.namespaces.synced.wait())
        log_event(
            log,
            logging.INFO,
            "caches_synced",
            claims=len(self.claims.cache),
            namespaces=len(self.namespaces.cache),
        )
        self.queue.start()
        self.requeue_all()
        while True:
            await self.sweep()
            await asyncio.sleep(self.options.resync_seconds)
            self.requeue_all()

    @property
    def synced(self) -> bool:
        return self.claims.synced.is_set() and self.namespaces.synced.is_set()


_EPOCH = datetime.min.replace(tzinfo=UTC)


def _age_key(namespace: Namespace) -> tuple[datetime, str]:
    meta = namespace.metadata
    return (
        (meta.creationTimestamp if meta else None) or _EPOCH,
        (meta.name if meta else None) or "",
    )


def _name(namespace: Namespace) -> str:
    return (namespace.metadata.name if namespace.metadata else None) or ""


def _allocated_at(view: ClaimView) -> float | None:
    allocation = view.claim.status.allocation if view.claim.status else None
    stamp = allocation.allocationTimestamp if allocation else None
    return stamp.timestamp() if stamp else None

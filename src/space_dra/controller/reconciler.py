"""Drive every claim allocated to our driver towards "one ready namespace per device".

Claims and managed namespaces are watched into caches; every claim event queues
the claim's key, and one worker at a time reconciles a key: the claim's devices
are provisioned (see :mod:`provision`), what became of their namespaces since is
recorded (see :mod:`lifecycle`), then the namespaces the claim no longer holds are
collected (see :mod:`gc`). A claim that is gone, deallocated or being
deleted only has its namespaces collected.

A periodic full resync re-queues every claim and sweeps every managed namespace,
catching whatever happened while the controller was down.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.contract import (
    ClaimView,
    ManagementLabels,
    NamespaceView,
    RecordError,
)
from space_dra.controller.consumers import ConsumerNodes
from space_dra.controller.gc import Collector
from space_dra.controller.informer import Informer, Key, key_of
from space_dra.controller.lifecycle import Lifecycle
from space_dra.controller.namespaces import ManagedNamespaces
from space_dra.controller.ownership import Signer
from space_dra.controller.provision import ClaimGone, Provisioner, ProvisionerOptions
from space_dra.controller.refusals import RETRIED_FAILURES
from space_dra.controller.slices import SlotTaints
from space_dra.controller.slim import slim_claim
from space_dra.controller.warm import WarmOptions, WarmPool
from space_dra.controller.workqueue import DEFAULT_WORKERS, WorkQueue
from space_dra.kube import ControllerAPI, KubeError
from space_dra.logs import log_event
from space_dra.metrics import NAMESPACES_MANAGED
from space_dra.times import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcilerOptions:
    provisioning: ProvisionerOptions
    protected_namespaces: frozenset[str]
    resync_seconds: float = 300.0
    workers: int = DEFAULT_WORKERS
    warm: WarmOptions | None = None
    # When namespaces expire is judged by this clock (tests move it).
    clock: Callable[[], datetime] = utc_now

    @property
    def driver(self) -> str:
        return self.provisioning.driver


class ClaimIdentities:
    """Which claim UID each key (namespace, name) holds, and which it held before.

    A claim deleted and re-created under the same name before a reconcile saw the
    deletion leaves namespaces made for its old UID; the next reconcile of the key
    collects them.
    """

    def __init__(self) -> None:
        self._uids: dict[Key, str] = {}
        self._keys: dict[str, Key] = {}
        self._replaced: dict[Key, set[str]] = {}

    def __contains__(self, key: Key) -> bool:
        return key in self._uids

    def uid(self, key: Key) -> str | None:
        return self._uids.get(key)

    def key(self, uid: str) -> Key | None:
        return self._keys.get(uid)

    def remember(self, key: Key, uid: str) -> None:
        previous = self._uids.get(key)
        if previous is not None and previous != uid:
            self._replaced.setdefault(key, set()).add(previous)
            if self._keys.get(previous) == key:
                del self._keys[previous]
        self._uids[key] = uid
        self._keys[uid] = key

    def forget(self, key: Key) -> str | None:
        """Drop the key; return the UID it held."""
        uid = self._uids.pop(key, None)
        if uid is not None and self._keys.get(uid) == key:
            del self._keys[uid]
        return uid

    def take_replaced(self, key: Key) -> list[str]:
        """The UIDs the key held before its current claim, once."""
        return sorted(self._replaced.pop(key, ()))


class Reconciler:
    def __init__(
        self,
        kube: ControllerAPI,
        signer: Signer,
        options: ReconcilerOptions,
        taints: SlotTaints | None = None,
    ) -> None:
        """``taints`` are shared with the slice publisher, which puts them on the slots."""
        self.kube = kube
        self.options = options
        self.labels = ManagementLabels(options.driver)
        self.claims: Informer[ResourceClaim] = Informer(
            kube,
            ResourceClaim,
            self._on_claim,
            # Memory must depend on our claims, not on what other drivers' claims carry.
            slim=functools.partial(slim_claim, driver=options.driver),
        )
        self.namespaces = ManagedNamespaces(kube, self.labels, signer, self._on_namespace)
        self.provisioner = Provisioner(
            kube, options.provisioning, signer, self.namespaces, options.clock
        )
        self.collector = Collector(
            kube, self.namespaces, options.protected_namespaces, options.clock
        )
        self.lifecycle = Lifecycle(
            kube, self.namespaces, taints or SlotTaints(), self._requeue_claim, options.clock
        )
        self.identities = ClaimIdentities()
        # Devices of ours each claim holds, kept by the claim events (the pool's budget
        # is asked for on every refill pass; counting the cache each time grew with it).
        self._held: dict[Key, int] = {}
        self.consumers = ConsumerNodes(kube, self.labels, self._requeue_claim)
        self.queue: WorkQueue[Key] = WorkQueue(self.reconcile, workers=options.workers)
        self.warm: WarmPool | None = None
        if options.warm is not None:
            # Also at size 0: a pool turned off removes the namespaces it kept.
            self.warm = WarmPool(
                kube,
                self.labels,
                signer,
                self.namespaces,
                options.warm,
                self._held_devices,
                self.provisioner.fill,
                claims_idle=self.queue.idle,
            )
            if options.warm.size > 0:
                self.provisioner.warm = self.warm

    # -- events ----------------------------------------------------------------------

    def _our_devices(self, claim: ResourceClaim | None) -> int:
        """How many of our devices ``claim`` has allocated (each holds, or will hold, a
        namespace)."""
        if claim is None or claim.status is None or claim.status.allocation is None:
            return 0
        return len(ClaimView(claim, self.options.driver).our_devices())

    def _held_devices(self) -> int:
        """Devices of ours allocated now."""
        return sum(self._held.values())

    def _on_claim(self, event: str, old: Any, new: Any) -> None:
        obj = new or old
        key = key_of(obj)
        held_before = self._held.pop(key, 0)
        held = self._our_devices(new)
        if held:
            self._held[key] = held
        if self.warm is not None and bool(held) != bool(held_before):
            self.warm.wake()  # a slot was taken or freed
        if held or held_before or key in self.identities:
            if obj.metadata and obj.metadata.uid:
                self.identities.remember(key, obj.metadata.uid)
            self.queue.add(key)

    def _on_namespace(self, namespace: NamespaceView) -> None:
        # Queue the owning claim, if we know it, so duplicates and orphans are settled.
        key = self.identities.key(namespace.claim_uid)
        if key is not None:
            self.queue.add(key)
        NAMESPACES_MANAGED.set(len(self.namespaces))

    def _requeue_claim(self, claim_uid: str) -> None:
        key = self.identities.key(claim_uid)
        if key is not None:
            self.queue.add(key)

    def _forget(self, key: Key) -> None:
        uid = self.identities.forget(key)
        if uid is not None:
            self.provisioner.claim_deallocated(uid)
            self.consumers.forget(uid)
            self.lifecycle.forget(uid)

    # -- reconcile -------------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        for old_uid in self.identities.take_replaced(key):
            self.lifecycle.forget(old_uid)
            try:
                await self.collector.collect(old_uid, None)
            except KubeError as exc:
                # Best effort: the claim that now has this name must not wait for it;
                # the sweep deletes the old claim's namespaces later.
                log_event(log, logging.WARNING, "gc_failed", claim_uid=old_uid, error=str(exc))
        claim = self.claims.cache.get(key)
        if claim is None:
            uid = self.identities.uid(key)
            if uid:
                await self.collector.collect(uid, None)
                self.provisioner.claim_deleted(uid)
            self._forget(key)
            return
        view = ClaimView(claim, self.options.driver)
        self.identities.remember(key, view.uid)
        if view.deleting or not view.allocated or not view.our_devices():
            await self.collector.collect(view.uid, view)
            if not view.allocated:
                self._forget(key)
            elif not view.our_devices():
                self.lifecycle.forget(view.uid)
            return
        try:
            nodes = await self.consumers.nodes(view)
            stored = await self.provisioner.provision(view, nodes)
            if stored is not None:
                self.claims.remember(stored)
                view = ClaimView(stored, self.options.driver)
            if self._retried_failure(view):
                # Come back when the rejection is no longer remembered (see provision).
                self.queue.add_after(key, self.options.provisioning.rejection_memory_seconds)
            stored = await self.lifecycle.settle(view)
            if stored is not None:
                self.claims.remember(stored)
                view = ClaimView(stored, self.options.driver)
            await self.consumers.record(view, self._recorded_namespaces(view))
        except ClaimGone:
            await self.collector.collect(view.uid, None)
        finally:
            # Even when one device keeps failing, namespaces the claim no longer holds
            # (released devices, crash duplicates) must go: the sweep leaves them to us.
            await self.collector.collect(view.uid, view)

    def _retried_failure(self, view: ClaimView) -> bool:
        for device in view.our_devices():
            try:
                failure = view.device_state(device).failure
            except RecordError:
                continue
            if failure and failure.partition(": ")[0] in RETRIED_FAILURES:
                return True
        return False

    def _recorded_namespaces(self, view: ClaimView) -> list[NamespaceView]:
        """The namespaces the claim's status records for its devices."""
        recorded = set()
        for device in view.our_devices():
            try:
                record = view.device_state(device).record
            except RecordError:
                continue
            if record is not None:
                recorded.add(record.namespace)
        return [ns for ns in self.namespaces.for_claim(view.uid) if ns.name in recorded]

    async def sweep(self) -> None:
        """Collect the namespaces of claims that are gone; queue the others' claims."""
        keys_by_uid = {
            claim.metadata.uid: key
            for key, claim in self.claims.cache.items()
            if claim.metadata and claim.metadata.uid
        }
        self.provisioner.refusals.keep_only(keys_by_uid)  # claims deleted while deallocated
        await self.collector.sweep(keys_by_uid, self.queue.add)

    def requeue_all(self, keys: Iterable[Key] | None = None) -> None:
        for key in keys if keys is not None else list(self.claims.cache):
            if self._our_devices(self.claims.cache.get(key)):
                self.queue.add(key)

    # -- run -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until a part stops; that is always a failure, raised to the caller.

        An informer that died would leave the controller working from a frozen cache,
        so its end ends the run instead.
        """
        tasks = [
            asyncio.create_task(self.claims.run(), name="claim-informer"),
            asyncio.create_task(self.namespaces.informer.run(), name="namespace-informer"),
            asyncio.create_task(self._reconcile_and_sweep(), name="reconciler"),
        ]
        if self.warm is not None:
            tasks.append(asyncio.create_task(self._keep_warm(self.warm), name="warm-pool"))
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
            await self.consumers.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _reconcile_and_sweep(self) -> None:
        # GC must never run against a half-filled cache: an empty claim cache
        # would make every namespace look orphaned.
        await asyncio.gather(self.claims.synced.wait(), self.namespaces.informer.synced.wait())
        log_event(
            log,
            logging.INFO,
            "caches_synced",
            claims=len(self.claims.cache),
            namespaces=len(self.namespaces),
        )
        self.queue.start()
        self.requeue_all()
        while True:
            await self.sweep()
            await asyncio.sleep(self.options.resync_seconds)
            self.requeue_all()

    async def _keep_warm(self, warm: WarmPool) -> None:
        # Like GC, the pool's budget needs complete caches (every held slot counted).
        await asyncio.gather(self.claims.synced.wait(), self.namespaces.informer.synced.wait())
        await warm.run()
        await asyncio.Event().wait()  # a pool of size 0 returns once trimmed; keep the task

    @property
    def synced(self) -> bool:
        return self.claims.synced.is_set() and self.namespaces.informer.synced.is_set()

"""Which managed namespaces must go, and deleting them.

A namespace is deleted only when all of these hold: it carries a valid ownership
signature (see :mod:`ownership`), it is not protected, and its device is no
longer held: the claim is gone, deallocated, being deleted, no longer has that
device, records a different namespace for it (a duplicate left by a crash), or
records that provisioning failed; or its lifetime is over and no pod is reserved to
use the claim any more (see :mod:`lifecycle`). A namespace for a device with no
record yet is being provisioned and is kept.

:func:`judge` decides from the caches alone; :class:`Collector` acts on its verdicts,
for one claim (from that claim's reconcile) or for every namespace whose claim is
gone (the periodic sweep).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from lightkube.resources.core_v1 import Namespace

from space_dra import faults
from space_dra.contract import ClaimView, NamespaceView, RecordError, device_label
from space_dra.controller.informer import Key
from space_dra.controller.namespaces import ManagedNamespaces
from space_dra.kube import Conflict, ControllerAPI, KubeError, NotFound
from space_dra.logs import log_event
from space_dra.metrics import GC_DELETIONS, NAMESPACES_MANAGED, UNVERIFIED_NAMESPACES
from space_dra.times import utc_now

log = logging.getLogger(__name__)

ALWAYS_PROTECTED = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


@dataclass(frozen=True)
class Verdict:
    delete: bool
    why: str


KEEP = Verdict(False, "in use")


def judge(
    namespace: NamespaceView,
    claims_by_uid: Mapping[str, ClaimView],
    protected: frozenset[str],
    signature_valid: bool,
    now: datetime | None = None,
) -> Verdict:
    """``now`` (the controller's clock) decides whether the namespace has expired."""
    if namespace.name in protected or namespace.name in ALWAYS_PROTECTED:
        return Verdict(False, "protected")
    if not signature_valid:
        return Verdict(False, "unverified")
    if namespace.deleting:
        return Verdict(False, "terminating")
    if namespace.warm_key and not namespace.claim_uid:
        return Verdict(False, "warm")  # the warm pool deletes its own
    claim = claims_by_uid.get(namespace.claim_uid)
    if claim is None:
        return Verdict(True, "claim-deleted")
    if claim.deleting or not claim.allocated:
        return Verdict(True, "claim-deallocated")
    devices = [d for d in claim.our_devices() if device_label(d) == namespace.device]
    if not devices:
        return Verdict(True, "device-released")
    try:
        state = claim.device_state(devices[0])
    except RecordError:
        return KEEP
    if state.record is not None and state.record.namespace != namespace.name:
        return Verdict(True, "duplicate")
    if state.record is None and state.failure is not None:
        return Verdict(True, "provisioning-failed")
    expires_at = namespace.expires_at
    if expires_at is not None and now is not None and now >= expires_at and not claim.reserved:
        return Verdict(True, "expired")
    return KEEP


class Collector:
    def __init__(
        self,
        kube: ControllerAPI,
        namespaces: ManagedNamespaces,
        protected: frozenset[str],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.kube = kube
        self.namespaces = namespaces
        self.protected = protected
        self.clock = clock

    async def collect(self, claim_uid: str, claim: ClaimView | None) -> None:
        """Delete the namespaces made for ``claim_uid`` that ``claim`` no longer holds
        (all of them when the claim is gone: None)."""
        claims = {claim_uid: claim} if claim is not None else {}
        for namespace in self.namespaces.for_claim(claim_uid):
            await self._maybe_delete(namespace, claims)

    async def sweep(self, keys_by_uid: Mapping[str, Key], requeue: Callable[[Key], None]) -> None:
        """Full pass over every managed namespace.

        A namespace whose claim still exists is settled by that claim's reconcile (queued
        here), never by the sweep itself: the work queue runs one reconcile per claim at a
        time, so a deletion judged here cannot race a worker adopting the same namespace.
        The sweep deletes only namespaces whose claim is gone; a UID never comes back.
        """
        for namespace in self.namespaces.cached():
            key = keys_by_uid.get(namespace.claim_uid)
            if key is not None:
                requeue(key)
                continue
            try:
                await self._maybe_delete(namespace, {})
            except KubeError as exc:
                log_event(
                    log, logging.WARNING, "gc_failed", namespace=namespace.name, error=str(exc)
                )
        unverified = self.namespaces.unverified_count()
        UNVERIFIED_NAMESPACES.set(unverified)
        NAMESPACES_MANAGED.set(len(self.namespaces) - unverified)

    async def _maybe_delete(
        self, namespace: NamespaceView, claims: Mapping[str, ClaimView]
    ) -> None:
        owned = self.namespaces.owned(namespace)
        verdict = judge(namespace, claims, self.protected, owned, self.clock())
        if not verdict.delete or self.namespaces.deleting(namespace):
            return
        try:
            faults.point("controller-before-namespace-delete")
            await self.kube.delete(Namespace, namespace.name, uid=namespace.uid or None)
            faults.point("controller-after-namespace-delete")
        except NotFound:
            return
        except Conflict:
            return  # the UID precondition failed: the name is someone else's now
        self.namespaces.deleted(namespace)
        GC_DELETIONS.labels(verdict.why).inc()
        log_event(
            log,
            logging.INFO,
            "namespace_deleted",
            namespace=namespace.name,
            claim_uid=namespace.claim_uid,
            why=verdict.why,
        )

"""What happens to a namespace after it was provisioned: is it still there, and has its
lifetime run out?

The controller watches the namespaces it made, so it knows first when one is deleted
behind its back; the kubelet plugin can only infer it from failing token requests
(docs/health.md). For every device whose namespace the claim records as ready, the
controller says so in the device's ``NamespaceHealthy`` condition: ``False`` with
reason ``NamespaceTerminating`` while the namespace is being deleted, ``NamespaceDeleted``
once it is gone, ``NamespaceExpired`` once its lifetime is over, and ``True``
(``NamespaceActive``) again if it turns up once more. ``NamespaceReady`` and the record
stay as they were: they say what was provisioned, and the plugin turns
``NamespaceHealthy`` into the pod's device health. A deleted namespace is never made
again: the pods hold credentials for the old one, so a new claim (new pods) is the way
back. Our own garbage collection never deletes a namespace that an allocated claim still
records, unless it expired, so a recorded namespace that is terminating or gone was
deleted out of band.

A namespace with a lifetime (``lifetimeSeconds``) carries its expiry time; at that time,
even while the claim is still in use:

- the device's condition says ``NamespaceExpired`` and an Event of that reason goes to
  the claim;
- its credentials stop working: every RoleBinding in it is deleted (the workload's, the
  plugin's token minting, any the workload made itself) and so is the workload's
  ServiceAccount, so its tokens are refused and the plugin can mint no more;
- its slot gets a ``NoExecute`` device taint (see :class:`~slices.SlotTaints`), so
  Kubernetes evicts the pods using it and will not start new ones on the claim; the taint
  goes once the claim no longer holds the slot. Where the cluster drops device taints the
  same Event goes to every pod the claim is reserved for instead, and the revoked
  credentials are all that stops them;
- the namespace is deleted once no pod is reserved to use the claim (see :mod:`gc`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from lightkube.models.resource_v1 import DeviceTaint
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.rbac_authorization_v1 import RoleBinding
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.contract import (
    POOL_NAME,
    TOKEN_MINTER_BINDING,
    WORKLOAD_BINDING,
    WORKLOAD_SERVICE_ACCOUNT,
    ClaimView,
    ManagementLabels,
    NamespaceRecord,
    NamespaceView,
    RecordError,
)
from space_dra.controller.namespaces import ManagedNamespaces
from space_dra.controller.slices import SlotTaints
from space_dra.controller.status import (
    DeviceOutcome,
    Health,
    emit_event,
    emit_pod_events,
    recorded_health,
    write_status,
)
from space_dra.kube import ControllerAPI, NotFound
from space_dra.logs import log_event
from space_dra.times import rfc3339, utc_now

log = logging.getLogger(__name__)

REASON_ACTIVE = "NamespaceActive"
REASON_TERMINATING = "NamespaceTerminating"
REASON_DELETED = "NamespaceDeleted"
REASON_EXPIRED = "NamespaceExpired"

# A timer set for the expiry moment fires this much later, so the clock has passed it.
_EXPIRY_SLACK_SECONDS = 0.05


def expired_health(record: NamespaceRecord, expires_at: datetime) -> Health:
    return Health(
        False,
        REASON_EXPIRED,
        f"namespace {record.namespace} expired at {rfc3339(expires_at)} (lifetimeSeconds): "
        "its credentials are revoked, the pods using it are stopped, and it is deleted once "
        "none is left",
    )


def judge_health(
    record: NamespaceRecord, namespace: NamespaceView | None, current: Health | None
) -> Health | None:
    """The ``NamespaceHealthy`` a recorded, unexpired device should carry (None: none).

    ``namespace`` is the recorded namespace as the cache shows it (None: not there);
    ``current`` is what the claim says now.
    """
    name = record.namespace
    if namespace is None:
        return Health(
            False,
            REASON_DELETED,
            f"namespace {name} was deleted outside the driver; it is not made again: "
            "use a new claim for new pods",
        )
    if namespace.deleting:
        return Health(
            False, REASON_TERMINATING, f"namespace {name} is being deleted outside the driver"
        )
    if current is not None and not current.healthy:
        return Health(True, REASON_ACTIVE, f"namespace {name} is active")
    return current


class Lifecycle:
    def __init__(
        self,
        kube: ControllerAPI,
        namespaces: ManagedNamespaces,
        taints: SlotTaints,
        requeue: Callable[[str], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """``requeue(claim_uid)`` queues a claim's reconcile (at expiry, and once the
        cluster's support for device taints is known)."""
        self.kube = kube
        self.namespaces = namespaces
        self.labels: ManagementLabels = namespaces.labels
        self.taints = taints
        self.requeue = requeue
        self.clock = clock
        # Claim UID -> the timer that reconciles it when its next namespace expires.
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Claim UID -> UIDs of its namespaces whose credentials were revoked.
        self._revoked: dict[str, set[str]] = {}
        # Claims whose pods get the expiry Event once we know taints do not evict them.
        self._pods_to_tell: set[str] = set()
        taints.on_verdict(self._taint_verdict)

    def forget(self, claim_uid: str) -> None:
        """The claim is gone or no longer allocated: its slots are free again."""
        self.taints.set(claim_uid, {})
        timer = self._timers.pop(claim_uid, None)
        if timer is not None:
            timer.cancel()
        self._revoked.pop(claim_uid, None)
        self._pods_to_tell.discard(claim_uid)

    async def settle(self, view: ClaimView) -> ResourceClaim | None:
        """Bring the claim's ``NamespaceHealthy`` conditions, slot taints and expired
        namespaces' credentials up to date; return the claim as stored when its status
        was written, None when it was not.

        Only a claim whose every device has its outcome recorded is judged: the others
        are still being provisioned, and a status write now would drop their entries.
        """
        now = self.clock()
        outcomes: list[DeviceOutcome] = []
        changed: list[tuple[str, Health]] = []
        taints: dict[str, DeviceTaint] = {}
        next_expiry: datetime | None = None
        for device in view.our_devices():
            try:
                state = view.device_state(device)
            except RecordError:
                return None
            if state.failure is not None:
                reason, _, message = state.failure.partition(": ")
                outcomes.append(
                    DeviceOutcome(device, failure_reason=reason, failure_message=message)
                )
                continue
            record = state.record
            if record is None:
                return None
            namespace = self.namespaces.named(record.namespace)
            if namespace is not None and namespace.claim_uid != view.uid:
                namespace = None  # gone, and the name is another's now
            current = recorded_health(view, device)
            expires_at = record.expires_at or (namespace.expires_at if namespace else None)
            if expires_at is not None and now >= expires_at:
                wanted: Health | None = expired_health(record, expires_at)
                await self._revoke(view, namespace)
                if device.pool == POOL_NAME:
                    taints[device.device] = DeviceTaint(
                        key=self.labels.expired_taint, effect="NoExecute", timeAdded=expires_at
                    )
            else:
                wanted = judge_health(record, namespace, current)
                if expires_at is not None and (next_expiry is None or expires_at < next_expiry):
                    next_expiry = expires_at
            outcomes.append(DeviceOutcome(device, record=record, health=wanted))
            if wanted is not None and wanted != current:
                changed.append((record.namespace, wanted))
        self.taints.set(view.uid, taints)
        self._wake_at(view.uid, next_expiry)
        stored = await self._record(view, outcomes, changed) if changed else None
        await self._tell_pods(view)
        return stored

    async def _record(
        self, view: ClaimView, outcomes: list[DeviceOutcome], changed: list[tuple[str, Health]]
    ) -> ResourceClaim | None:
        try:
            stored = await write_status(self.kube, view, outcomes)
        except NotFound:
            return None  # the claim is gone: its next reconcile collects
        for namespace, health in changed:
            log_event(
                log,
                logging.INFO if health.healthy else logging.WARNING,
                "namespace_health_changed",
                claim_uid=view.uid,
                namespace=namespace,
                healthy=health.healthy,
                reason=health.reason,
            )
            kind = "Normal" if health.healthy else "Warning"
            await emit_event(self.kube, view, kind, health.reason, health.message)
            if health.reason == REASON_EXPIRED:
                self._pods_to_tell.add(view.uid)
        return stored

    async def _tell_pods(self, view: ClaimView) -> None:
        """Where device taints do not evict, the pods hear of the expiry from us."""
        if view.uid not in self._pods_to_tell or self.taints.supported is None:
            return  # nothing to tell, or not known yet: the verdict requeues the claim
        self._pods_to_tell.discard(view.uid)
        if self.taints.supported:
            return  # the eviction controller tells them, with its own Events
        await emit_pod_events(
            self.kube,
            view,
            "Warning",
            REASON_EXPIRED,
            f"ResourceClaim {view.name}: its namespace expired; its credentials are revoked "
            "(this cluster cannot evict through device taints: stop the pod)",
        )

    def _taint_verdict(self, supported: bool) -> None:
        for claim_uid in list(self._pods_to_tell):
            self.requeue(claim_uid)

    async def _revoke(self, view: ClaimView, namespace: NamespaceView | None) -> None:
        """Make every credential of the namespace useless there, once.

        The workload's role may let it bind roles itself (``admin`` does), so every
        RoleBinding in the namespace goes, ours (the workload's and the plugin's token
        minting) first; and the workload's ServiceAccount goes, so the tokens minted for it
        are refused outright.
        """
        if namespace is None or namespace.deleting:
            return
        revoked = self._revoked.setdefault(view.uid, set())
        if namespace.uid in revoked:
            return
        found, _ = await self.kube.list(RoleBinding, fields={"metadata.namespace": namespace.name})
        others = sorted(b.metadata.name for b in found if b.metadata and b.metadata.name)
        names = [WORKLOAD_BINDING, TOKEN_MINTER_BINDING]
        for name in names + [n for n in others if n not in names]:
            with contextlib.suppress(NotFound):
                await self.kube.delete(RoleBinding, name, namespace.name)
        with contextlib.suppress(NotFound):
            await self.kube.delete(ServiceAccount, WORKLOAD_SERVICE_ACCOUNT, namespace.name)
        revoked.add(namespace.uid)
        log_event(
            log,
            logging.INFO,
            "namespace_credentials_revoked",
            claim_uid=view.uid,
            namespace=namespace.name,
            why="expired",
        )

    def _wake_at(self, claim_uid: str, when: datetime | None) -> None:
        """Reconcile the claim again at ``when`` (its next expiry), or not at all (None).

        Set afresh on every pass: the loop's timers follow a monotonic clock, so a wall
        clock that was stepped since is caught up with at the next pass (a resync at most).
        """
        timer = self._timers.pop(claim_uid, None)
        if timer is not None:
            timer.cancel()
        if when is None:
            return
        delay = (when - self.clock()).total_seconds() + _EXPIRY_SLACK_SECONDS
        self._timers[claim_uid] = asyncio.get_running_loop().call_later(
            delay, self.requeue, claim_uid
        )

"""What happens to a namespace after it was provisioned: is it still there?

The controller watches the namespaces it made, so it knows first when one is deleted
behind its back; the kubelet plugin can only infer it from failing token requests
(docs/health.md). For every device whose namespace the claim records as ready, the
controller says so in the device's ``NamespaceHealthy`` condition: ``False`` with
reason ``NamespaceTerminating`` while the namespace is being deleted, ``NamespaceDeleted``
once it is gone, and ``True`` (``NamespaceActive``) again if it turns up once more.
``NamespaceReady`` and the record stay as they were: they say what was provisioned,
and the plugin turns ``NamespaceHealthy`` into the pod's device health. A deleted
namespace is never made again: the pods hold credentials for the old one, so a new
claim (new pods) is the way back.

Our own garbage collection never deletes a namespace that an allocated claim still
records, so a recorded namespace that is terminating or gone was deleted out of band.
"""

from __future__ import annotations

import logging

from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.contract import ClaimView, NamespaceRecord, NamespaceView, RecordError
from space_dra.controller.namespaces import ManagedNamespaces
from space_dra.controller.status import (
    DeviceOutcome,
    Health,
    emit_event,
    recorded_health,
    write_status,
)
from space_dra.kube import ControllerAPI, NotFound
from space_dra.logs import log_event

log = logging.getLogger(__name__)

REASON_ACTIVE = "NamespaceActive"
REASON_TERMINATING = "NamespaceTerminating"
REASON_DELETED = "NamespaceDeleted"


def judge_health(
    record: NamespaceRecord, namespace: NamespaceView | None, current: Health | None
) -> Health | None:
    """The ``NamespaceHealthy`` a recorded device should carry (None: none at all).

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
    def __init__(self, kube: ControllerAPI, namespaces: ManagedNamespaces) -> None:
        self.kube = kube
        self.namespaces = namespaces

    async def settle(self, view: ClaimView) -> ResourceClaim | None:
        """Bring the claim's ``NamespaceHealthy`` conditions up to date; return the claim
        as stored when they were written, None when nothing changed.

        Only a claim whose every device has its outcome recorded is judged: the others
        are still being provisioned, and a write now would drop their entries.
        """
        present = {ns.name: ns for ns in self.namespaces.for_claim(view.uid)}
        outcomes: list[DeviceOutcome] = []
        changed: list[tuple[str, Health]] = []
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
            if state.record is None:
                return None
            current = recorded_health(view, device)
            wanted = judge_health(state.record, present.get(state.record.namespace), current)
            outcomes.append(DeviceOutcome(device, record=state.record, health=wanted))
            if wanted is not None and wanted != current:
                changed.append((state.record.namespace, wanted))
        if not changed:
            return None
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
        return stored

"""Tell users and the kubelet plugin what happened: claim status and Events.

Claim status is written with server-side apply on the ``status`` subresource.
``status.devices`` is a map list keyed by driver/pool/device, so our apply owns
exactly our entries and never touches another driver's; each apply carries all of
our entries for the claim, because with SSA an omitted entry would be removed.
So an entry's ``NamespaceHealthy`` condition, which only :mod:`lifecycle` decides, is
carried over from the claim by every other write.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import Condition, ObjectMeta
from lightkube.models.resource_v1 import AllocatedDeviceStatus
from lightkube.models.resource_v1 import ResourceClaimStatus as ClaimStatusModel
from lightkube.resources.core_v1 import Event
from lightkube.resources.resource_v1 import ResourceClaim, ResourceClaimStatus

from space_dra.contract import (
    CONDITION_FAILED,
    CONDITION_HEALTHY,
    CONDITION_READY,
    CONTROLLER_NAME,
    ClaimView,
    DeviceRef,
    NamespaceRecord,
)
from space_dra.kube import ControllerAPI, KubeError
from space_dra.logs import log_event

log = logging.getLogger(__name__)

COMPONENT = CONTROLLER_NAME


@dataclass(frozen=True)
class Health:
    """The controller's ``NamespaceHealthy`` verdict on a provisioned device."""

    healthy: bool
    reason: str
    message: str

    @property
    def status(self) -> str:
        return "True" if self.healthy else "False"


def recorded_health(view: ClaimView, device: DeviceRef) -> Health | None:
    """The ``NamespaceHealthy`` condition the claim carries for ``device``, if any."""
    condition = view.device_conditions(device).get(CONDITION_HEALTHY)
    if condition is None:
        return None
    return Health(condition.status == "True", condition.reason or "", condition.message or "")


@dataclass(frozen=True)
class DeviceOutcome:
    """What status to record for one device."""

    device: DeviceRef
    record: NamespaceRecord | None = None
    failure_reason: str = ""
    failure_message: str = ""
    # None: the claim's current NamespaceHealthy condition, if any, is kept.
    health: Health | None = None

    @property
    def failed(self) -> bool:
        return bool(self.failure_reason)


def _condition(
    view: ClaimView, device: DeviceRef, kind: str, status: str, reason: str, message: str
) -> Condition:
    """Keep lastTransitionTime when the status did not change, as conditions should."""
    for existing in (view.claim.status.devices if view.claim.status else None) or []:
        if (existing.driver, existing.pool, existing.device) != (
            view.driver,
            device.pool,
            device.device,
        ):
            continue
        for condition in existing.conditions or []:
            if condition.type == kind and condition.status == status:
                return Condition(
                    type=kind,
                    status=status,
                    reason=reason,
                    message=message,
                    lastTransitionTime=condition.lastTransitionTime,
                )
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        lastTransitionTime=datetime.now(UTC),
    )


def device_status(view: ClaimView, outcome: DeviceOutcome) -> AllocatedDeviceStatus:
    device = outcome.device
    if outcome.failed:
        conditions = [
            _condition(
                view,
                device,
                CONDITION_READY,
                "False",
                outcome.failure_reason,
                outcome.failure_message,
            ),
            _condition(
                view,
                device,
                CONDITION_FAILED,
                "True",
                outcome.failure_reason,
                outcome.failure_message,
            ),
        ]
        data = None
    else:
        assert outcome.record is not None
        message = f"namespace {outcome.record.namespace} is ready"
        conditions = [
            _condition(view, device, CONDITION_READY, "True", "Provisioned", message),
            _condition(view, device, CONDITION_FAILED, "False", "Provisioned", ""),
        ]
        health = outcome.health or recorded_health(view, device)
        if health is not None:
            conditions.append(
                _condition(
                    view, device, CONDITION_HEALTHY, health.status, health.reason, health.message
                )
            )
        data = outcome.record.to_data()
    return AllocatedDeviceStatus(
        driver=view.driver,
        pool=device.pool,
        device=device.device,
        shareID=device.share_id,
        conditions=conditions,
        data=data,
    )


async def write_status(
    kube: ControllerAPI, view: ClaimView, outcomes: list[DeviceOutcome]
) -> ResourceClaim:
    """Apply our entries of status.devices; return the claim as the API server stored it.

    The UID makes the write fail (422, "field is immutable") if the claim was deleted and
    re-created under the same name meanwhile, instead of giving the new claim a record
    that was made for the old one.
    """
    body = ResourceClaimStatus(
        metadata=ObjectMeta(name=view.name, namespace=view.namespace, uid=view.uid),
        status=ClaimStatusModel(devices=[device_status(view, o) for o in outcomes]),
    )
    stored = await kube.apply(body, name=view.name, namespace=view.namespace)
    claim = ResourceClaim.from_dict(stored.to_dict())
    assert isinstance(claim, ResourceClaim)
    return claim


async def emit_event(
    kube: ControllerAPI, view: ClaimView, kind: str, reason: str, message: str
) -> None:
    """Best effort: an Event on the claim that cannot be written is logged, never fatal."""
    claim = _reference("resource.k8s.io/v1", "ResourceClaim", view.namespace, view.name, view.uid)
    await emit_event_on(kube, view, claim, kind, reason, message)


async def emit_pod_events(
    kube: ControllerAPI, view: ClaimView, kind: str, reason: str, message: str
) -> None:
    """The same Event on every pod the claim is reserved for: where a user looks first
    when a pod does not start (``kubectl describe pod``)."""
    for consumer in (view.claim.status.reservedFor if view.claim.status else None) or []:
        if consumer.resource != "pods" or consumer.apiGroup:
            continue
        pod = _reference("v1", "Pod", view.namespace, consumer.name, consumer.uid)
        await emit_event_on(kube, view, pod, kind, reason, message)


def _reference(api_version: str, kind: str, namespace: str, name: str, uid: str) -> ObjectReference:
    return ObjectReference(
        apiVersion=api_version, kind=kind, namespace=namespace, name=name, uid=uid
    )


async def emit_event_on(
    kube: ControllerAPI,
    view: ClaimView,
    involved: ObjectReference,
    kind: str,
    reason: str,
    message: str,
) -> None:
    now = datetime.now(UTC)
    event = Event(
        metadata=ObjectMeta(
            name=f"{involved.name}.{secrets.token_hex(8)}", namespace=view.namespace
        ),
        involvedObject=involved,
        reason=reason,
        message=message[:1024],
        type=kind,
        source=EventSource(component=COMPONENT),
        firstTimestamp=now,
        lastTimestamp=now,
        count=1,
    )
    try:
        await kube.create(event)
    except KubeError as exc:
        log_event(
            log,
            logging.WARNING,
            "event_write_failed",
            claim_uid=view.uid,
            reason=reason,
            error=str(exc),
        )

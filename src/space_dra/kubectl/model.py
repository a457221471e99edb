"""Which claims are the driver's, and what state each is in: pure functions over fetched objects.

A claim is ours when its allocation holds devices of our driver, or, before allocation, when
one of its requests names our DeviceClass. Its state comes from the controller's record in
``status.devices`` (read through :class:`~space_dra.contract.ClaimView`, as the plugin reads
it), combined over the claim's devices: one failed device fails the claim, one still being
provisioned keeps it Pending, one the controller reports unhealthy (``NamespaceHealthy``
False: provisioned, then deleted behind its back, say) makes it Unhealthy. Nothing here
talks to the API server, so every state is tested on plain objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from lightkube.resources.core_v1 import Namespace
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.contract import (
    CONDITION_HEALTHY,
    EXPIRES_AT_FIELD,
    ClaimView,
    DeviceRef,
    ManagementLabels,
    RecordError,
)
from space_dra.times import parse_rfc3339

T = TypeVar("T")

PENDING = "Pending"
READY = "Ready"
UNHEALTHY = "Unhealthy"
FAILED = "Failed"
DELETING = "Deleting"


@dataclass(frozen=True)
class Part(Generic[T]):
    """Something read from the API server, or why it could not be read (``error``)."""

    items: tuple[T, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class DeviceSummary:
    """One allocated device of the claim: the namespace it stands for, and its state."""

    request: str
    pool: str
    device: str
    namespace: str | None
    state: str
    reason: str | None = None
    message: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ClaimSummary:
    """One row of ``kubectl space list``."""

    namespace: str
    name: str
    pod_claim_name: str | None
    state: str
    reason: str | None
    message: str | None
    expires_at: datetime | None
    namespaces: tuple[str, ...]
    pods: tuple[str, ...]
    created: datetime | None
    devices: tuple[DeviceSummary, ...]


def requested_classes(claim: ResourceClaim) -> set[str]:
    """The DeviceClasses a claim's requests (and their alternatives) name."""
    devices = claim.spec.devices if claim.spec else None
    names = set()
    for request in (devices.requests if devices else None) or []:
        if request.exactly is not None:
            names.add(request.exactly.deviceClassName)
        names.update(sub.deviceClassName for sub in request.firstAvailable or [])
    return names


def is_ours(claim: ResourceClaim, driver: str, device_class: str) -> bool:
    view = ClaimView(claim, driver)
    if view.allocated:
        return bool(view.our_devices())
    return device_class in requested_classes(claim)


def status_data(claim: ResourceClaim, driver: str, ref: DeviceRef) -> Mapping[str, Any]:
    """The ``data`` the controller recorded for one device (empty when none)."""
    for entry in (claim.status.devices if claim.status else None) or []:
        if (entry.driver, entry.pool, entry.device, entry.shareID) == (
            driver,
            ref.pool,
            ref.device,
            ref.share_id,
        ):
            return entry.data if isinstance(entry.data, dict) else {}
    return {}


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time as the API writes it, in UTC; None for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_rfc3339(value)


def namespace_expiry(namespace: Namespace | None, driver: str) -> datetime | None:
    meta = namespace.metadata if namespace else None
    annotations = (meta.annotations if meta else None) or {}
    return parse_time(annotations.get(ManagementLabels(driver).expires_at))


def device_summary(
    view: ClaimView, ref: DeviceRef, namespaces: Mapping[str, Namespace]
) -> DeviceSummary:
    pending = DeviceSummary(ref.request, ref.pool, ref.device, namespace=None, state=PENDING)
    try:
        state = view.device_state(ref)
    except RecordError as exc:
        return replace(pending, state=FAILED, reason="InvalidRecord", message=str(exc))
    if state.failure is not None:
        # The controller's reasons are CamelCase words, so the first ": " ends the reason.
        reason, _, message = state.failure.partition(": ")
        return replace(pending, state=FAILED, reason=reason, message=message or None)
    if state.record is None:
        return replace(
            pending,
            reason="Provisioning",
            message="allocated; the controller has not reported the namespace ready yet",
        )
    name = state.record.namespace
    expires = parse_time(status_data(view.claim, view.driver, ref).get(EXPIRES_AT_FIELD))
    ready = replace(
        pending,
        namespace=name,
        state=READY,
        reason=None,
        message=None,
        expires_at=expires or namespace_expiry(namespaces.get(name), view.driver),
    )
    healthy = view.device_conditions(ref).get(CONDITION_HEALTHY)
    if healthy is not None and healthy.status == "False":
        # Provisioned, then something happened to it (deleted behind the driver's back...).
        return replace(ready, state=UNHEALTHY, reason=healthy.reason, message=healthy.message)
    return ready


def _is_pod(entry: Any) -> bool:
    return bool(entry.resource == "pods" and not entry.apiGroup)


def consuming_pods(claim: ResourceClaim) -> list[str]:
    """The names of the pods using the claim (``status.reservedFor``), in its namespace."""
    reserved = (claim.status.reservedFor if claim.status else None) or []
    return [entry.name for entry in reserved if _is_pod(entry)]


def consumers(claim: ResourceClaim) -> tuple[str, ...]:
    """Who uses the claim: pod names, and other kinds of consumer as resource/name."""
    reserved = (claim.status.reservedFor if claim.status else None) or []
    return tuple(e.name if _is_pod(e) else f"{e.resource}/{e.name}" for e in reserved)


def summarize(
    claim: ResourceClaim, driver: str, namespaces: Mapping[str, Namespace] | None = None
) -> ClaimSummary:
    """The claim's row; ``namespaces`` are the provisioned Namespaces that could be read."""
    view = ClaimView(claim, driver)
    devices = tuple(device_summary(view, ref, namespaces or {}) for ref in view.our_devices())
    failed = next((d for d in devices if d.state == FAILED), None)
    if view.deleting:
        state, reason, message = DELETING, None, None
    elif not view.allocated:
        state, reason, message = PENDING, "Unallocated", "waiting for the scheduler to allocate"
    elif failed is not None:
        state, reason, message = FAILED, failed.reason, failed.message
    elif any(d.state in (PENDING, UNHEALTHY) for d in devices):
        # Pending first: the claim is not usable yet; then Unhealthy: it no longer is.
        worst = min(
            (d for d in devices if d.state in (PENDING, UNHEALTHY)),
            key=lambda d: d.state != PENDING,
        )
        state, reason, message = worst.state, worst.reason, worst.message
    else:
        state, reason, message = READY, None, None
    expiries = [d.expires_at for d in devices if d.expires_at is not None]
    return ClaimSummary(
        namespace=view.namespace,
        name=view.name,
        pod_claim_name=view.display_name if view.display_name != view.name else None,
        state=state,
        reason=reason,
        message=message,
        expires_at=min(expiries) if expiries else None,
        namespaces=tuple(d.namespace for d in devices if d.namespace),
        pods=consumers(claim),
        created=claim.metadata.creationTimestamp if claim.metadata else None,
        devices=devices,
    )


def namespaces_by_name(namespaces: Iterable[Namespace]) -> dict[str, Namespace]:
    return {ns.metadata.name: ns for ns in namespaces if ns.metadata and ns.metadata.name}


def summaries(
    claims: Iterable[ResourceClaim],
    driver: str,
    device_class: str,
    namespaces: Iterable[Namespace] = (),
) -> list[ClaimSummary]:
    """Rows for the claims that are ours, ordered by namespace and name as kubectl does."""
    by_name = namespaces_by_name(namespaces)
    rows = [summarize(c, driver, by_name) for c in claims if is_ours(c, driver, device_class)]
    return sorted(rows, key=lambda row: (row.namespace, row.name))


def provisioned_namespaces(claim: ResourceClaim, driver: str) -> list[str]:
    """The namespaces the controller recorded for the claim's devices, in device order."""
    return list(summarize(claim, driver).namespaces)

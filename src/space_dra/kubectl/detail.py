"""What ``kubectl space describe`` shows beyond the claim's row: pure functions over a snapshot.

- The policy applied: the claim's opaque configs resolved by :func:`space_dra.config.resolve`
  exactly as the controller resolves them, within the installation's policy read from the
  chart's ConfigMap (as the controller reads it from the mounted file), so what is shown is
  what was (or will be) applied, and a refused config shows the controller's own message.
  When that ConfigMap cannot be read, the section says so and resolves without it.
- The objects the controller made in each namespace (found by its managed-by label), with
  what each is for, told by the fixed names in :mod:`space_dra.contract`.
- The device's health as the kubelet reports it in the consuming pods'
  ``status.containerStatuses[].allocatedResourcesStatus``: the entries of this claim (the pod's
  ``resourceClaims[].name`` that maps to it) whose resource ID is one of our driver's.
- The claim's Events, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Pod
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra import schema
from space_dra.config import ConfigError, Policy, load_policy, resolve
from space_dra.contract import (
    LIMITS_NAME,
    NETWORK_POLICY_NAME,
    QUOTA_NAME,
    TOKEN_MINTER_BINDING,
    WORKLOAD_BINDING,
    WORKLOAD_SERVICE_ACCOUNT,
    ClaimView,
)
from space_dra.kubectl.fetch import NAMESPACE_OBJECT_KINDS, DescribeSnapshot
from space_dra.kubectl.model import (
    ClaimSummary,
    Part,
    consuming_pods,
    namespace_expiry,
    namespaces_by_name,
    summarize,
)

# The key of the chart's policy ConfigMap (deployments/helm/space-dra-driver/templates/policy.yaml).
POLICY_KEY = "policy.yaml"

PURPOSES: Mapping[tuple[str, str], str] = {
    ("ServiceAccount", WORKLOAD_SERVICE_ACCOUNT): "the pods' identity in the namespace",
    ("RoleBinding", WORKLOAD_BINDING): "the pods' role in the namespace",
    (
        "RoleBinding",
        TOKEN_MINTER_BINDING,
    ): f"lets the kubelet plugin mint {WORKLOAD_SERVICE_ACCOUNT} tokens",
    ("ResourceQuota", QUOTA_NAME): "the namespace's quota",
    ("LimitRange", LIMITS_NAME): "container defaults and limits",
    ("NetworkPolicy", NETWORK_POLICY_NAME): "network isolation",
}


@dataclass(frozen=True)
class InstallationPolicy:
    """The policy the controller judges every claim within, read from ``config_map``, or why
    it could not be read (``error``; the settings are then resolved without it)."""

    config_map: str
    policy: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class RequestPolicy:
    """The NamespaceConfig resolved for one request: ``settings`` (field name to value) and
    the class's ``policy``, or the controller's ``error`` refusing it."""

    request: str
    settings: dict[str, Any] | None
    policy: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class ObjectRow:
    kind: str
    name: str
    detail: str
    purpose: str


@dataclass(frozen=True)
class NamespaceDetail:
    """A provisioned namespace: ``phase`` is None when the Namespace could not be read."""

    name: str
    phase: str | None
    expires_at: datetime | None
    objects: Part[ObjectRow]


@dataclass(frozen=True)
class PodRow:
    name: str
    phase: str


@dataclass(frozen=True)
class HealthRow:
    pod: str
    container: str
    resource: str
    resource_id: str
    health: str
    message: str | None


@dataclass(frozen=True)
class EventRow:
    last_seen: datetime | None
    type: str
    reason: str
    message: str
    count: int


@dataclass(frozen=True)
class ClaimDetail:
    summary: ClaimSummary
    uid: str
    generated_for: str | None
    installation: InstallationPolicy
    policies: tuple[RequestPolicy, ...]
    namespaces: tuple[NamespaceDetail, ...]
    pods: Part[PodRow]
    health: Part[HealthRow]
    events: Part[EventRow]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _policy_fields(policy: Policy) -> dict[str, Any]:
    return {f.name: _plain(getattr(policy, f.attr)) for f in schema.POLICY}


def installation_policy(
    part: Part[ConfigMap], where: str
) -> tuple[Policy | None, InstallationPolicy]:
    if part.error or not part.items:
        return None, InstallationPolicy(where, None, part.error or f"ConfigMap {where} not found")
    text = (part.items[0].data or {}).get(POLICY_KEY)
    try:
        if text is None:
            raise ValueError(f"it has no {POLICY_KEY}")
        policy = load_policy(yaml.safe_load(text))
    except (ValueError, yaml.YAMLError) as exc:
        return None, InstallationPolicy(where, None, f"cannot use ConfigMap {where}: {exc}")
    return policy, InstallationPolicy(where, _policy_fields(policy))


def request_policies(
    claim: ResourceClaim, driver: str, installation: Policy | None = None
) -> tuple[RequestPolicy, ...]:
    """One entry per request with devices of ours, in allocation order."""
    view = ClaimView(claim, driver)
    seen: dict[str, RequestPolicy] = {}
    for ref in view.our_devices():
        if ref.request in seen:
            continue
        try:
            resolved = resolve(
                view.opaque_configs(ref.request), ref.admin_access, installation=installation
            )
        except ConfigError as exc:
            seen[ref.request] = RequestPolicy(ref.request, None, None, str(exc))
            continue
        seen[ref.request] = RequestPolicy(
            ref.request,
            {f.name: _plain(getattr(resolved.settings, f.attr)) for f in schema.SETTINGS},
            _policy_fields(resolved.policy),
        )
    return tuple(seen.values())


def _quantities(values: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((values or {}).items()))


def object_detail(obj: Any) -> str:
    """A few words on what the object holds (its role, its limits)."""
    kind = type(obj).__name__
    if kind == "RoleBinding":
        return f"{obj.roleRef.kind}/{obj.roleRef.name}"
    if kind == "ResourceQuota" and obj.spec:
        return _quantities(obj.spec.hard)
    if kind == "LimitRange" and obj.spec:
        parts = []
        for item in obj.spec.limits:
            for name in schema.LIMIT_RANGE_KINDS:
                values = getattr(item, name, None)
                if values:
                    parts.append(f"{item.type} {name} {_quantities(values)}")
        return "; ".join(parts)
    if kind == "NetworkPolicy" and obj.spec:
        return ", ".join(obj.spec.policyTypes or [])
    return ""


def object_rows(objects: Iterable[Any]) -> tuple[ObjectRow, ...]:
    order = {res.__name__: i for i, res in enumerate(NAMESPACE_OBJECT_KINDS)}
    rows = [
        ObjectRow(
            kind=type(obj).__name__,
            name=obj.metadata.name,
            detail=object_detail(obj),
            purpose=PURPOSES.get((type(obj).__name__, obj.metadata.name), ""),
        )
        for obj in objects
    ]
    return tuple(sorted(rows, key=lambda r: (order.get(r.kind, len(order)), r.name)))


def namespace_details(snapshot: DescribeSnapshot, driver: str) -> tuple[NamespaceDetail, ...]:
    found = namespaces_by_name(snapshot.namespaces.items)
    details = []
    for name, objects in snapshot.objects.items():
        namespace: Namespace | None = found.get(name)
        if snapshot.namespaces.error:
            phase = None
        elif namespace is None:
            phase = "NotFound"
        else:
            phase = (namespace.status.phase if namespace.status else None) or "Active"
        details.append(
            NamespaceDetail(
                name=name,
                phase=phase,
                expires_at=namespace_expiry(namespace, driver),
                objects=Part(object_rows(objects.items), objects.error),
            )
        )
    return tuple(details)


def pod_claim_names(pod: Pod, claim_name: str) -> set[str]:
    """The names under which the pod refers to the claim (``resourceClaims[].name``)."""
    names = {
        rc.name
        for rc in (pod.spec.resourceClaims if pod.spec else None) or []
        if rc.resourceClaimName == claim_name
    }
    statuses = (pod.status.resourceClaimStatuses if pod.status else None) or []
    return names | {s.name for s in statuses if s.resourceClaimName == claim_name}


def health_rows(pods: Iterable[Pod], claim_name: str, driver: str) -> tuple[HealthRow, ...]:
    rows: list[HealthRow] = []
    for pod in pods:
        names = pod_claim_names(pod, claim_name)
        status = pod.status
        containers = [
            *((status.initContainerStatuses if status else None) or []),
            *((status.containerStatuses if status else None) or []),
        ]
        for container in containers:
            for entry in container.allocatedResourcesStatus or []:
                # "claim:<pod claim name>" or "claim:<pod claim name>/<request>"
                kind, _, ref = entry.name.partition(":")
                if kind != "claim" or ref.split("/", 1)[0] not in names:
                    continue
                rows.extend(
                    HealthRow(
                        pod=(pod.metadata.name if pod.metadata else None) or "",
                        container=container.name,
                        resource=entry.name,
                        resource_id=resource.resourceID,
                        health=resource.health or "Unknown",
                        message=resource.message,
                    )
                    for resource in entry.resources or []
                    if resource.resourceID.startswith(f"{driver}/")
                )
    return tuple(rows)


def pod_rows(claim: ResourceClaim, pods: Part[Pod]) -> Part[PodRow]:
    if pods.error:
        return Part(error=pods.error)
    found = {p.metadata.name: p for p in pods.items if p.metadata}
    rows = []
    for name in consuming_pods(claim):
        pod = found.get(name)
        phase = (pod.status.phase if pod and pod.status else None) or (
            "Unknown" if pod else "NotFound"
        )
        rows.append(PodRow(name, phase))
    return Part(tuple(rows))


def _event_time(event: Event) -> datetime | None:
    return (
        event.lastTimestamp
        or event.eventTime
        or event.firstTimestamp
        or (event.metadata.creationTimestamp if event.metadata else None)
    )


def event_rows(events: Part[Event]) -> Part[EventRow]:
    if events.error:
        return Part(error=events.error)
    rows = [
        EventRow(
            last_seen=_event_time(e),
            type=e.type or "",
            reason=e.reason or "",
            message=e.message or "",
            count=e.count or 1,
        )
        for e in events.items
    ]
    return Part(tuple(sorted(rows, key=lambda r: (r.last_seen is not None, r.last_seen))))


def generated_for(claim: ResourceClaim) -> str | None:
    """The pod a ResourceClaimTemplate made this claim for."""
    owners = (claim.metadata.ownerReferences if claim.metadata else None) or []
    return next((o.name for o in owners if o.kind == "Pod" and o.controller), None)


def describe(snapshot: DescribeSnapshot, driver: str) -> ClaimDetail:
    claim = snapshot.claim
    summary = summarize(claim, driver, namespaces_by_name(snapshot.namespaces.items))
    policy, installation = installation_policy(
        snapshot.installation, "/".join(snapshot.policy_config_map)
    )
    health = (
        Part(error=snapshot.pods.error)
        if snapshot.pods.error
        else Part(health_rows(snapshot.pods.items, summary.name, driver))
    )
    return ClaimDetail(
        summary=summary,
        uid=(claim.metadata.uid if claim.metadata else None) or "",
        generated_for=generated_for(claim),
        installation=installation,
        policies=request_policies(claim, driver, policy),
        namespaces=namespace_details(snapshot, driver),
        pods=pod_rows(claim, snapshot.pods),
        health=health,
        events=event_rows(snapshot.events),
    )

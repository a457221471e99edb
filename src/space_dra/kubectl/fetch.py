"""What ``kubectl space`` reads from the API server, and nothing else.

It reads through :class:`Reader`, the two read calls of
:class:`~space_dra.kube.ControllerAPI` (so the real client and the in-memory API server both
serve it, and the tool cannot write). The claims themselves must be readable, or there is
nothing to show; every other part (namespaces, the objects in them, pods, Events) is fetched
on its own, concurrently, and a failure there, most often RBAC, becomes that part's error
message while the rest still shows.

The adapter's ``list`` selects a namespace with the ``metadata.namespace`` field selector,
which it sends to that namespace's path: list permission in that namespace is enough.
:func:`list_in` is the one place that knows this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from lightkube.core import resource as lkr
from lightkube.resources.core_v1 import (
    ConfigMap,
    Event,
    LimitRange,
    Namespace,
    Pod,
    ResourceQuota,
    ServiceAccount,
)
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import RoleBinding
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.contract import ManagementLabels
from space_dra.kube import KubeError, NotFound
from space_dra.kubectl.model import Part, consuming_pods, provisioned_namespaces

R = TypeVar("R", bound=lkr.Resource)

# What the controller creates inside a namespace, in the order describe shows them.
NAMESPACE_OBJECT_KINDS: tuple[type[lkr.Resource], ...] = (
    ServiceAccount,
    RoleBinding,
    ResourceQuota,
    LimitRange,
    NetworkPolicy,
)


class Reader(Protocol):
    async def get(self, res: type[R], name: str, namespace: str | None = None) -> R: ...

    async def list(
        self,
        res: type[R],
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> tuple[list[R], str]: ...


class FetchError(Exception):
    """What the command was asked about cannot be read; the message is one line."""


async def list_in(
    api: Reader,
    res: type[R],
    namespace: str | None,
    *,
    labels: Mapping[str, str] | None = None,
    fields: Mapping[str, str] | None = None,
) -> list[R]:
    """Objects of ``res`` in ``namespace`` (every namespace when None)."""
    selected = dict(fields or {})
    if namespace is not None:
        selected["metadata.namespace"] = namespace
    items, _ = await api.list(res, labels=labels, fields=selected or None)
    return items


@dataclass(frozen=True)
class ListSnapshot:
    claims: list[ResourceClaim]
    # The driver's Namespaces, for their expiry annotations.
    namespaces: Part[Namespace]


@dataclass(frozen=True)
class DescribeSnapshot:
    claim: ResourceClaim
    namespaces: Part[Namespace]
    # Per provisioned namespace: the objects the controller made there.
    objects: dict[str, Part[Any]]
    pods: Part[Pod]
    events: Part[Event]
    # The installation's policy, as the chart hands it to the controller, and where from.
    installation: Part[ConfigMap]
    policy_config_map: tuple[str, str]


async def _part(what: str, reads: Any) -> Part[Any]:
    try:
        return Part(tuple(await reads))
    except KubeError as exc:
        return Part(error=f"cannot read {what}: {exc}")


async def fetch_list(api: Reader, driver: str, namespace: str | None) -> ListSnapshot:
    labels = ManagementLabels(driver)

    async def claims() -> list[ResourceClaim]:
        try:
            return await list_in(api, ResourceClaim, namespace)
        except KubeError as exc:
            where = f"in namespace {namespace}" if namespace else "in any namespace"
            raise FetchError(f"cannot list ResourceClaims {where}: {exc}") from exc

    found, namespaces = await asyncio.gather(
        claims(),
        _part(
            "the driver's Namespaces (expiry times come from claim status only)",
            list_in(api, Namespace, None, labels=labels.managed),
        ),
    )
    return ListSnapshot(found, namespaces)


async def fetch_claim(api: Reader, namespace: str, name: str) -> ResourceClaim:
    try:
        return await api.get(ResourceClaim, name, namespace)
    except NotFound as exc:
        raise FetchError(f'ResourceClaim "{name}" not found in namespace {namespace}') from exc
    except KubeError as exc:
        raise FetchError(f"cannot read ResourceClaim {namespace}/{name}: {exc}") from exc


async def _get_all(api: Reader, res: type[R], names: list[str], namespace: str | None) -> list[R]:
    """The objects that exist; a missing one is skipped, any other failure raised."""

    async def one(name: str) -> R | None:
        try:
            return await api.get(res, name, namespace)
        except NotFound:
            return None

    return [obj for obj in await asyncio.gather(*(one(n) for n in names)) if obj is not None]


async def _objects_in(api: Reader, driver: str, namespace: str) -> Part[Any]:
    managed = ManagementLabels(driver).managed
    parts = await asyncio.gather(
        *(
            _part(f"{res.__name__}s in {namespace}", list_in(api, res, namespace, labels=managed))
            for res in NAMESPACE_OBJECT_KINDS
        )
    )
    errors = [part.error for part in parts if part.error]
    return Part(tuple(obj for part in parts for obj in part.items), "; ".join(errors) or None)


async def _get(api: Reader, res: type[R], namespace: str, name: str) -> list[R]:
    return [await api.get(res, name, namespace)]


async def fetch_details(
    api: Reader, driver: str, claim: ResourceClaim, policy_config_map: tuple[str, str]
) -> DescribeSnapshot:
    """``policy_config_map``: (namespace, name) of the ConfigMap with the installation's policy."""
    meta = claim.metadata
    namespace = (meta.namespace if meta else None) or ""
    uid = (meta.uid if meta else None) or ""
    provisioned = provisioned_namespaces(claim, driver)
    policy_namespace, policy_name = policy_config_map
    namespaces, pods, events, installation, *objects = await asyncio.gather(
        _part("the provisioned Namespaces", _get_all(api, Namespace, provisioned, None)),
        _part(
            f"the consuming Pods in {namespace}",
            _get_all(api, Pod, consuming_pods(claim), namespace),
        ),
        _part(
            f"Events in {namespace}",
            list_in(api, Event, namespace, fields={"involvedObject.uid": uid}),
        ),
        _part(
            f"ConfigMap {policy_namespace}/{policy_name}",
            _get(api, ConfigMap, policy_namespace, policy_name),
        ),
        *(_objects_in(api, driver, name) for name in provisioned),
    )
    return DescribeSnapshot(
        claim=claim,
        namespaces=namespaces,
        objects=dict(zip(provisioned, objects, strict=True)),
        pods=pods,
        events=events,
        installation=installation,
        policy_config_map=policy_config_map,
    )

"""How the in-memory API server treats object data: identity, copies, selectors,
server-side apply of the status subresource, UID checks.

Objects are stored as plain data (what the API server would serialise), so every
read hands out a fresh typed copy and no caller can change the store by accident.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import msgspec
from lightkube.core import resource as lkr

from space_dra.kube import Conflict, Invalid, KubeError

R = TypeVar("R", bound=lkr.Resource)
Kind = tuple[str, str]  # (API group, kind)
Key = tuple[str, str]  # (namespace or "", name)
Data = dict[str, Any]

SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
META_FIELDS = ("apiVersion", "kind", "metadata")


def kind_of(res: type[lkr.Resource]) -> Kind:
    info = res._api_info
    definition = info.parent or info.resource
    return (definition.group, definition.kind)


def namespaced(res: type[lkr.Resource]) -> bool:
    return issubclass(res, (lkr.NamespacedResource, lkr.NamespacedSubResource))


def fresh(data: Data) -> Data:
    """A deep copy of plain data (new containers all the way down), 10x faster than
    ``copy.deepcopy``: lightkube's own serializer."""
    return cast("Data", msgspec.to_builtins(data))


def as_data(obj: lkr.Resource) -> Data:
    """A private copy of ``obj`` as plain data (``to_dict`` makes new containers)."""
    return cast("Data", obj.to_dict())  # type: ignore[attr-defined]


def typed(res: type[R], data: Data, slim: Callable[[Data], Data] | None = None) -> R:
    """A typed copy of stored data that shares nothing with the store (lightkube's
    ``from_dict`` keeps the containers of untyped fields, such as opaque parameters),
    reduced by ``slim`` first when given, as the real adapter does."""
    copy = fresh(data)
    return cast("R", res.from_dict(slim(copy) if slim else copy))  # type: ignore[attr-defined]


def _lookup(data: Data, path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def matches(
    data: Data | None, labels: Mapping[str, str] | None, fields: Mapping[str, str] | None
) -> bool:
    if data is None:
        return False
    have = data.get("metadata", {}).get("labels") or {}
    if any(have.get(key) != value for key, value in (labels or {}).items()):
        return False
    return all(str(_lookup(data, path)) == value for path, value in (fields or {}).items())


def merge_status(current: Data, applied: Data) -> Data:
    merged = dict(current)
    for name, value in applied.items():
        if name == "devices":
            drivers = {entry.get("driver") for entry in value}
            kept = [d for d in current.get("devices") or [] if d.get("driver") not in drivers]
            merged["devices"] = kept + value
        else:
            merged[name] = value
    return merged


def check_uid(wanted: str | None, actual: str, precondition: bool) -> None:
    """A UID in a delete's preconditions fails as a 409; in an applied body, as a 422."""
    if not wanted or wanted == actual:
        return
    message = f"Precondition failed: UID in precondition: {wanted}, UID in object meta: {actual}"
    if precondition:
        raise Conflict(message, 409, "Conflict")
    raise Invalid(f"metadata.uid: field is immutable ({message})", 422, "Invalid")


def check_preconditions(uid: str | None, resource_version: str | None, meta: Data) -> None:
    """A delete's preconditions: a mismatch fails as a 409, as the API server answers."""
    check_uid(uid, meta["uid"], precondition=True)
    actual = meta.get("resourceVersion")
    if resource_version and resource_version != actual:
        raise Conflict(
            f"Precondition failed: ResourceVersion in precondition: {resource_version}, "
            f"ResourceVersion in object meta: {actual}",
            409,
            "Conflict",
        )


def scope(res: type[lkr.Resource], namespace: str | None) -> str:
    """The namespace part of a key: "" for cluster-scoped kinds, required otherwise."""
    if not namespaced(res):
        return ""
    if not namespace:
        raise Invalid(f"{res.__name__}: metadata.namespace is required", 422, "Invalid")
    return namespace


def key_of(data: Data) -> Key:
    return (data["metadata"].get("namespace") or "", data["metadata"]["name"])


def plural(res: type[lkr.Resource]) -> str:
    return res._api_info.plural


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


AdmissionHook = Callable[[str, Any], None]
"""(verb, object about to be stored): may change the object, or raise a KubeError."""


@dataclass
class Fault:
    """A failure injected into the next ``times`` calls of ``verb`` on ``kind`` (any when None)."""

    verb: str
    kind: str | None
    error: KubeError
    times: int

"""What a driver receives from the layer and gives back: claims, devices, errors, health.

These mirror the Go helper's types (``kubeletplugin.DRAPlugin``, ``PrepareResult``,
``Device``, ``NamespacedObject``) so a driver written against one reads like the other.
The one addition is :func:`uid_problem`: the layer refuses every claim whose UID is not
a Kubernetes UID before a driver sees it, so drivers may name files after UIDs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from space_dra.kubeletplugin.sync import ChangeSignal

# Kubernetes UIDs are RFC 4122 UUIDs; anything else never names a file.
_UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def uid_problem(uid: str) -> str | None:
    """Why ``uid`` is not a Kubernetes UID, or None when it is one."""
    if not uid:
        return "the request has an empty claim UID"
    if not _UID.match(uid):
        return f"claim UID {uid[:64]!r} is not a Kubernetes UID"
    return None


def clip(text: str, limit: int) -> str:
    """Shorten request-supplied text for messages, so hostile input stays small."""
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class Claim:
    """A claim as the kubelet names it; the driver reads the object itself if it needs it."""

    namespace: str
    name: str
    uid: str

    @property
    def display(self) -> str:
        """namespace/name for messages, clipped to Kubernetes' limits so hostile
        requests cannot make errors and logs arbitrarily large."""
        return f"{clip(self.namespace, 63)}/{clip(self.name, 253)}"


class ClaimError(Exception):
    """Preparing or unpreparing one claim failed; the message goes to the kubelet as is.

    Say which claim and what to do: the kubelet shows it in the pod's events and retries.
    """


@dataclass(frozen=True)
class Device:
    """One prepared device in a prepare response."""

    requests: tuple[str, ...]
    pool: str
    device: str
    cdi_device_ids: tuple[str, ...]
    # Only sent over DRAPlugin v1; v1beta1 has no field for it.
    share_id: str | None = None


PrepareResult = Sequence[Device] | ClaimError
"""Per claim: its devices, or why it could not be prepared."""

UnprepareResult = ClaimError | None
"""Per claim: None once nothing of it is left on the node (also when it was never here)."""


class DRAPlugin(Protocol):
    """The callbacks a driver implements; see the package documentation for the contract."""

    async def prepare_resource_claims(
        self, claims: Sequence[Claim]
    ) -> Mapping[str, PrepareResult]: ...

    async def unprepare_resource_claims(
        self, claims: Sequence[Claim]
    ) -> Mapping[str, UnprepareResult]: ...


class HealthStatus(Enum):
    """A device's health as the kubelet shows it in the pod's ``allocatedResourcesStatus``."""

    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    UNKNOWN = "Unknown"
    """The driver cannot tell (for example, what it would check is unreachable)."""


@dataclass(frozen=True)
class DeviceHealth:
    """One prepared device's health. Keep ``message`` stable while nothing changes: the
    kubelet updates the pods using the device each time status or message differ."""

    pool: str
    device: str
    status: HealthStatus
    message: str = ""


@runtime_checkable
class HealthReporter(Protocol):
    """Optional: a driver with these two members gets the DRAResourceHealth service."""

    @property
    def health_changes(self) -> ChangeSignal:
        """Notified whenever :meth:`device_health` would answer differently."""
        ...

    def device_health(self) -> Sequence[DeviceHealth]:
        """The health of every device this driver has prepared on the node."""
        ...


class Serialization(Enum):
    """How the layer orders concurrent prepare and unprepare calls."""

    PER_CLAIM = "per-claim"
    """Each claim is passed to the driver alone, under that claim's lock, while other
    claims (of the same request or another) proceed in parallel. The default."""
    GLOBAL = "global"
    """One call at a time, each with every claim of its request: the Go helper's default."""
    NONE = "none"
    """Every request goes straight to the driver; the driver orders what it must."""

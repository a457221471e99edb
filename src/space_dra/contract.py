"""The contract between the controller, the kubelet plugin and whoever inspects them.

Only the controller provisions; the plugin only reads what the controller recorded.
The record lives in the claim's ``status.devices[]`` entry for each allocated
device of our driver: ``data`` names the namespace, its ServiceAccount and the API
server URL pods should use, and the ``NamespaceReady`` / ``NamespaceFailed``
conditions say whether it can be used. Namespaces the controller creates carry
its labels, and the objects inside them have fixed names. Both components, the
tests and the benchmarks import this module so the field names, condition types,
labels and object names exist exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lightkube.resources.core_v1 import Namespace
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.times import parse_rfc3339, rfc3339

DEFAULT_DRIVER_NAME = "space.resource.example.com"
POOL_NAME = "space"
CDI_CLASS = "namespace"
CONFIG_API_VERSION = "space.resource.example.com/v1alpha1"
CONFIG_KIND = "NamespaceConfig"

CONDITION_READY = "NamespaceReady"
CONDITION_FAILED = "NamespaceFailed"
# Written by the controller on a device whose namespace it provisioned, once something
# happened to it afterwards: status "False" with a reason (for example NamespaceDeleted
# or NamespaceTerminating, when the namespace was deleted behind the driver's back) and
# a message for the user; "True" (or no such condition) once it is fine again. The
# kubelet plugin reports the device Unhealthy, with "<reason>: <message>", in the
# health stream the kubelet copies into pods' allocatedResourcesStatus.
CONDITION_HEALTHY = "NamespaceHealthy"

# The field of a device's status data holding when its namespace expires (RFC 3339), for
# namespaces with a lifetime (NamespaceConfig.lifetimeSeconds); the namespace carries the
# same time in its ManagementLabels.expires_at annotation.
EXPIRES_AT_FIELD = "expiresAt"

# Set by the resourceclaim controller on claims generated from a pod's
# ResourceClaimTemplate; the generated claim's own name is random.
POD_CLAIM_NAME_ANNOTATION = "resource.kubernetes.io/pod-claim-name"
# Set (to "true") by the scheduler on the claim it generates for a pod that asks for a
# DeviceClass's extended resource in its containers' resources (DRAExtendedResource);
# that claim's name is "<pod>-extended-resources-<random>".
EXTENDED_RESOURCE_CLAIM_ANNOTATION = "resource.kubernetes.io/extended-resource-claim"

# The ServiceAccount the controller creates in every ephemeral namespace. It is
# constant so one ClusterRole can name it in resourceNames for token minting.
WORKLOAD_SERVICE_ACCOUNT = "space-user"

# The controller's name: the value of the managed-by label on everything it creates,
# its server-side apply field manager and the source of its Events.
CONTROLLER_NAME = "space-dra-controller"
MANAGED_BY_VALUE = CONTROLLER_NAME

# What the controller creates inside every ephemeral namespace, by name: RoleBindings
# of the workload ServiceAccount to the allowed role, and of the plugin's
# ServiceAccount to the token-minting ClusterRole; the config's quota, limits and
# network policy.
WORKLOAD_BINDING = "space-user"
TOKEN_MINTER_BINDING = "space-dra-token-minter"  # noqa: S105 - a RoleBinding name
QUOTA_NAME = "space-quota"
LIMITS_NAME = "space-limits"
NETWORK_POLICY_NAME = "space-isolation"


class RecordError(ValueError):
    """The controller's record for a device is missing or malformed."""


@dataclass(frozen=True)
class NamespaceRecord:
    """What the controller provisioned for one allocated device."""

    namespace: str
    service_account: str
    server: str
    # When the namespace expires; None: it does not.
    expires_at: datetime | None = None

    def to_data(self) -> dict[str, str]:
        data = {
            "namespace": self.namespace,
            "serviceAccount": self.service_account,
            "server": self.server,
        }
        if self.expires_at is not None:
            data[EXPIRES_AT_FIELD] = rfc3339(self.expires_at)
        return data

    @classmethod
    def from_data(cls, data: Any) -> NamespaceRecord:
        if not isinstance(data, dict):
            raise RecordError("status data is not an object")
        fields = {}
        for key in ("namespace", "serviceAccount", "server"):
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise RecordError(f"status data field {key!r} is missing or not a string")
            fields[key] = value
        if not fields["server"].startswith("https://"):
            raise RecordError(
                f"status data field 'server' is not an https URL: {fields['server']!r}"
            )
        # Informational for the plugin; the controller also reads the namespace's annotation.
        expires_at = parse_rfc3339(data.get(EXPIRES_AT_FIELD))
        return cls(fields["namespace"], fields["serviceAccount"], fields["server"], expires_at)


@dataclass(frozen=True)
class DeviceRef:
    """One device of our pool, as allocated to a claim."""

    request: str
    pool: str
    device: str
    admin_access: bool = False
    share_id: str | None = None


def device_label(device: DeviceRef) -> str:
    """Which of its claim's devices a namespace is for: the value of its device label."""
    return f"{device.pool}.{device.device}"


@dataclass(frozen=True)
class DeviceState:
    """The controller's view of one allocated device, read back from claim status."""

    record: NamespaceRecord | None
    ready: bool
    failure: str | None


@dataclass(frozen=True)
class ManagementLabels:
    """Label and annotation keys, scoped by driver name so two installs never mix."""

    driver: str

    @property
    def managed_by(self) -> str:
        return f"{self.driver}/managed-by"

    @property
    def claim_uid(self) -> str:
        return f"{self.driver}/claim-uid"

    @property
    def device(self) -> str:
        return f"{self.driver}/device"

    @property
    def claim_ref(self) -> str:
        return f"{self.driver}/claim"

    @property
    def ownership(self) -> str:
        return f"{self.driver}/ownership"

    @property
    def nodes(self) -> str:
        """Namespace annotation: the nodes whose plugin may mint tokens in it."""
        return f"{self.driver}/nodes"

    @property
    def max_token_seconds(self) -> str:
        """Namespace annotation: the longest token lifetime its policy allows."""
        return f"{self.driver}/max-token-seconds"

    @property
    def expires_at(self) -> str:
        """Namespace annotation: when it expires (RFC 3339), for one with a lifetime."""
        return f"{self.driver}/expires-at"

    @property
    def expired_taint(self) -> str:
        """Key of the NoExecute taint on the slot device of an expired namespace."""
        return f"{self.driver}/expired"

    @property
    def network_policy(self) -> str:
        """Namespace label: the NetworkPolicy mode it was given (none, deny-ingress, ...)."""
        return f"{self.driver}/network-policy"

    @property
    def template(self) -> str:
        """Namespace label ("true"): an admin's template namespace, whose ConfigMaps and
        Secrets a claim whose policy allows it may start with (controller.templates)."""
        return f"{self.driver}/template"

    @property
    def template_source(self) -> str:
        """Annotation on a copy made from a template: ``<namespace>/<name>`` it came from."""
        return f"{self.driver}/template-source"

    @property
    def warm(self) -> str:
        """Namespace label of the warm pool: the settings key it was made for."""
        return f"{self.driver}/warm"

    @property
    def prefix(self) -> str:
        return f"{self.driver}/"

    @property
    def managed(self) -> dict[str, str]:
        """The label selector for everything the controller created."""
        return {self.managed_by: MANAGED_BY_VALUE}

    @property
    def selector(self) -> str:
        """:attr:`managed` as a ``kubectl -l`` argument."""
        return f"{self.managed_by}={MANAGED_BY_VALUE}"


_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class NamespaceView:
    """Read-only accessors over a Namespace the controller manages, for one driver.

    Missing metadata reads as empty (a Namespace without our labels has no claim UID),
    so callers never unpack optional fields.
    """

    name: str
    uid: str
    claim_uid: str
    device: str
    signature: str | None
    deleting: bool
    created: datetime
    # The nodes allowed to mint tokens in it (see controller.consumers).
    nodes: frozenset[str] = frozenset()
    # Set while it waits in the warm pool, not yet any claim's (see controller.warm).
    warm_key: str = ""
    # When it expires; None: it does not (or the annotation is not a time).
    expires_at: datetime | None = None
    # UIDs of its owners (a warm namespace's: the DeviceClass of the installation that made it).
    owner_uids: frozenset[str] = frozenset()
    # The version this view was taken from: a write conditional on it fails if it changed.
    resource_version: str = ""

    @classmethod
    def of(cls, namespace: Namespace, labels: ManagementLabels) -> NamespaceView:
        meta = namespace.metadata
        ours = (meta.labels if meta else None) or {}
        annotations = (meta.annotations if meta else None) or {}
        return cls(
            name=(meta.name if meta else None) or "",
            uid=(meta.uid if meta else None) or "",
            claim_uid=ours.get(labels.claim_uid, ""),
            device=ours.get(labels.device, ""),
            signature=annotations.get(labels.ownership),
            deleting=bool(meta and meta.deletionTimestamp),
            created=(meta.creationTimestamp if meta else None) or _EPOCH,
            nodes=frozenset(filter(None, annotations.get(labels.nodes, "").split(","))),
            warm_key=ours.get(labels.warm, ""),
            expires_at=parse_rfc3339(annotations.get(labels.expires_at)),
            owner_uids=frozenset(
                ref.uid for ref in (meta.ownerReferences if meta else None) or [] if ref.uid
            ),
            resource_version=(meta.resourceVersion if meta else None) or "",
        )

    @property
    def age_key(self) -> tuple[datetime, str]:
        """Oldest first; the name breaks ties."""
        return (self.created, self.name)


class ClaimView:
    """Read-only accessors over a ResourceClaim, for one driver."""

    def __init__(self, claim: ResourceClaim, driver: str) -> None:
        self.claim = claim
        self.driver = driver
        meta = claim.metadata
        self.uid: str = (meta.uid if meta else None) or ""
        self.namespace: str = (meta.namespace if meta else None) or ""
        self.name: str = (meta.name if meta else None) or ""
        annotations = (meta.annotations if meta else None) or {}
        pod_claim_name = annotations.get(POD_CLAIM_NAME_ANNOTATION)
        self.display_name: str = pod_claim_name if isinstance(pod_claim_name, str) else self.name
        # Generated by the scheduler for a pod's extended resource: no name of it is the user's.
        self.extended_resource: bool = annotations.get(EXTENDED_RESOURCE_CLAIM_ANNOTATION) == "true"

    @property
    def allocated(self) -> bool:
        return bool(self.claim.status and self.claim.status.allocation)

    @property
    def deleting(self) -> bool:
        return bool(self.claim.metadata and self.claim.metadata.deletionTimestamp)

    @property
    def reserved(self) -> bool:
        """Whether anything (a pod, as a rule) is reserved to use the claim."""
        return bool(self.claim.status and self.claim.status.reservedFor)

    def our_devices(self) -> list[DeviceRef]:
        """Allocation results of our driver, in allocation order."""
        allocation = self.claim.status.allocation if self.claim.status else None
        results = (allocation.devices.results if allocation and allocation.devices else None) or []
        return [
            DeviceRef(
                request=r.request,
                pool=r.pool,
                device=r.device,
                admin_access=bool(r.adminAccess),
                share_id=r.shareID,
            )
            for r in results
            if r.driver == self.driver
        ]

    def opaque_configs(self, request: str) -> list[tuple[str, Any]]:
        """(source, parameters) of our opaque configs that apply to ``request``.

        Ordered as the allocation lists them: class configs first, then the claim's.
        A config naming a parent request also applies to its subrequests.
        """
        allocation = self.claim.status.allocation if self.claim.status else None
        configs = (allocation.devices.config if allocation and allocation.devices else None) or []
        parent = request.split("/", 1)[0]
        selected = []
        for entry in configs:
            if entry.opaque is None or entry.opaque.driver != self.driver:
                continue
            if entry.requests and request not in entry.requests and parent not in entry.requests:
                continue
            selected.append((entry.source, entry.opaque.parameters))
        return selected

    def _device_status(self, ref: DeviceRef) -> Any:
        """The claim's ``status.devices[]`` entry for ``ref``, or None."""
        for status in (self.claim.status.devices if self.claim.status else None) or []:
            if (status.driver, status.pool, status.device) != (self.driver, ref.pool, ref.device):
                continue
            if status.shareID != ref.share_id:
                continue
            return status
        return None

    def device_conditions(self, ref: DeviceRef) -> dict[str, Any]:
        """The conditions of ``ref``'s status entry by type (empty when it has none)."""
        status = self._device_status(ref)
        return {c.type: c for c in (status.conditions if status else None) or []}

    def device_state(self, ref: DeviceRef) -> DeviceState:
        status = self._device_status(ref)
        if status is None:
            return DeviceState(None, ready=False, failure=None)
        conditions = self.device_conditions(ref)
        failed = conditions.get(CONDITION_FAILED)
        if failed is not None and failed.status == "True":
            return DeviceState(None, ready=False, failure=f"{failed.reason}: {failed.message}")
        ready = conditions.get(CONDITION_READY)
        if ready is None or ready.status != "True":
            return DeviceState(None, ready=False, failure=None)
        return DeviceState(NamespaceRecord.from_data(status.data), ready=True, failure=None)

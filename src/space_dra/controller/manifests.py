"""The objects the controller creates for one device, built from the settings alone.

The namespace gets a name we choose (prefix + 5 random characters, like
``generateName``) so its ownership signature can be part of the request that
creates it. Inside it: the workload ServiceAccount; a RoleBinding of it to the
ClusterRole the policy allowed; a RoleBinding that lets the node plugin's
ServiceAccount mint tokens for exactly that ServiceAccount (the ClusterRole it
points at names it in ``resourceNames``); and, per config, a ResourceQuota, a
LimitRange and a NetworkPolicy. Nothing here talks to the API server.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lightkube.models.core_v1 import LimitRangeItem, LimitRangeSpec, ResourceQuotaSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.models.networking_v1 import (
    IPBlock,
    NetworkPolicyEgressRule,
    NetworkPolicyIngressRule,
    NetworkPolicyPeer,
    NetworkPolicyPort,
    NetworkPolicySpec,
)
from lightkube.models.rbac_v1 import RoleRef, Subject
from lightkube.resources.core_v1 import LimitRange, Namespace, ResourceQuota, ServiceAccount
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import RoleBinding

from space_dra.config import Settings
from space_dra.contract import (
    LIMITS_NAME,
    MANAGED_BY_VALUE,
    NETWORK_POLICY_NAME,
    QUOTA_NAME,
    TOKEN_MINTER_BINDING,
    WORKLOAD_BINDING,
    WORKLOAD_SERVICE_ACCOUNT,
    DeviceRef,
    ManagementLabels,
    device_label,
)
from space_dra.controller.ownership import Signer
from space_dra.times import rfc3339

# The alphabet Kubernetes uses for generateName: no vowels, no look-alikes.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def expiry(made_at: datetime, settings: Settings) -> datetime | None:
    """When a namespace made at ``made_at`` expires: its lifetime later, rounded up to the
    whole second that RFC 3339 times in annotations and status carry. None: never."""
    if settings.lifetime_seconds is None:
        return None
    return datetime.fromtimestamp(math.ceil(made_at.timestamp()) + settings.lifetime_seconds, UTC)


def namespace_object(
    labels: ManagementLabels,
    signer: Signer,
    name: str,
    claim_uid: str,
    claim_ref: str,
    device: DeviceRef,
    settings: Settings,
    max_token_seconds: int | None = None,
    expires_at: datetime | None = None,
) -> Namespace:
    """The Namespace as we create it: management labels, Pod Security, signature, and
    when it expires if it has a lifetime.

    The network-policy label and the token-lifetime annotation are what the chart's
    admission policies read to stop the workload from undoing its isolation or minting
    tokens that outlive the policy.
    """
    level = settings.pod_security
    annotations = {
        labels.claim_ref: claim_ref,
        labels.ownership: signer.sign(name, claim_uid, device_label(device)),
    }
    if max_token_seconds is not None:
        annotations[labels.max_token_seconds] = str(max_token_seconds)
    if expires_at is not None:
        annotations[labels.expires_at] = rfc3339(expires_at)
    return Namespace(
        metadata=ObjectMeta(
            name=name,
            labels={
                labels.managed_by: MANAGED_BY_VALUE,
                labels.claim_uid: claim_uid,
                labels.device: device_label(device),
                "pod-security.kubernetes.io/enforce": level,
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/audit": level,
                "pod-security.kubernetes.io/warn": level,
                labels.network_policy: settings.network_policy,
            },
            annotations=annotations,
        )
    )


@dataclass(frozen=True)
class DnsServers:
    """Where pods of a ``deny-all`` namespace may send DNS queries, and nowhere else on
    port 53: the cluster DNS pods by label, and servers that are not pods by address."""

    namespace_selector: Mapping[str, str] = field(
        default_factory=lambda: {"kubernetes.io/metadata.name": "kube-system"}
    )
    pod_selector: Mapping[str, str] = field(default_factory=lambda: {"k8s-app": "kube-dns"})
    cidrs: tuple[str, ...] = ()

    def peers(self) -> list[NetworkPolicyPeer]:
        peers = [NetworkPolicyPeer(ipBlock=IPBlock(cidr=cidr)) for cidr in self.cidrs]
        if self.namespace_selector or self.pod_selector:
            peers.insert(
                0,
                NetworkPolicyPeer(
                    namespaceSelector=LabelSelector(matchLabels=dict(self.namespace_selector)),
                    podSelector=LabelSelector(matchLabels=dict(self.pod_selector)),
                ),
            )
        return peers


def namespace_contents(
    labels: ManagementLabels,
    namespace: str,
    settings: Settings,
    plugin_service_account: str,
    token_minter_cluster_role: str,
    dns: DnsServers | None = None,
) -> list[Any]:
    """Objects that go into the namespace, in apply order.

    ``plugin_service_account`` is ``<namespace>/<name>`` of the kubelet plugin's.
    """
    plugin_ns, _, plugin_sa = plugin_service_account.partition("/")
    common = labels.managed
    objects: list[Any] = [
        ServiceAccount(
            metadata=ObjectMeta(name=WORKLOAD_SERVICE_ACCOUNT, namespace=namespace, labels=common)
        ),
        RoleBinding(
            metadata=ObjectMeta(name=WORKLOAD_BINDING, namespace=namespace, labels=common),
            roleRef=RoleRef(
                apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name=settings.role
            ),
            subjects=[
                Subject(kind="ServiceAccount", name=WORKLOAD_SERVICE_ACCOUNT, namespace=namespace)
            ],
        ),
        RoleBinding(
            metadata=ObjectMeta(name=TOKEN_MINTER_BINDING, namespace=namespace, labels=common),
            roleRef=RoleRef(
                apiGroup="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name=token_minter_cluster_role,
            ),
            subjects=[Subject(kind="ServiceAccount", name=plugin_sa, namespace=plugin_ns)],
        ),
    ]
    if settings.quota:
        objects.append(
            ResourceQuota(
                metadata=ObjectMeta(name=QUOTA_NAME, namespace=namespace, labels=common),
                spec=ResourceQuotaSpec(hard=dict(settings.quota)),
            )
        )
    if settings.limit_range:
        item = LimitRangeItem(
            type="Container", **{k: dict(v) for k, v in settings.limit_range.items()}
        )
        objects.append(
            LimitRange(
                metadata=ObjectMeta(name=LIMITS_NAME, namespace=namespace, labels=common),
                spec=LimitRangeSpec(limits=[item]),
            )
        )
    if settings.network_policy != "none":
        objects.append(
            network_policy(namespace, settings.network_policy, common, dns or DnsServers())
        )
    return objects


def network_policy(
    namespace: str, mode: str, labels: dict[str, str], dns: DnsServers
) -> NetworkPolicy:
    """``deny-ingress``: only pods of this namespace may connect in.
    ``deny-all``: additionally, pods may only connect to this namespace and to the
    cluster's DNS servers (``dns``)."""
    same_namespace = [NetworkPolicyPeer(podSelector=LabelSelector())]
    spec = NetworkPolicySpec(
        podSelector=LabelSelector(),
        policyTypes=["Ingress"],
        ingress=[NetworkPolicyIngressRule(from_=same_namespace)],
    )
    if mode == "deny-all":
        spec.policyTypes = ["Ingress", "Egress"]
        spec.egress = [
            NetworkPolicyEgressRule(to=same_namespace),
            NetworkPolicyEgressRule(
                to=dns.peers(),
                ports=[
                    NetworkPolicyPort(port=53, protocol="UDP"),
                    NetworkPolicyPort(port=53, protocol="TCP"),
                ],
            ),
        ]
        if not spec.egress[1].to:
            spec.egress.pop()  # no DNS server named: no DNS, rather than DNS to anywhere
    return NetworkPolicy(
        metadata=ObjectMeta(name=NETWORK_POLICY_NAME, namespace=namespace, labels=labels), spec=spec
    )

"""The controller's settings, parsed and checked once at start.

The command line (and the environment variables the chart sets) is turned into one
frozen :class:`ControllerOptions`; nothing else reads ``argparse`` results. Every
value is checked here, so a bad flag stops the process at once with a message that
names the flag, instead of surfacing later as a failing API call.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from space_dra.config import Policy, load_policy_file
from space_dra.controller.manifests import DnsServers
from space_dra.controller.workqueue import DEFAULT_WORKERS

_ATTRIBUTE_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z_][A-Za-z0-9_]{0,31}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_INTEGER = re.compile(r"-?\d{1,18}")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

AttributeValue = str | int | bool


class OptionsError(ValueError):
    """A flag (or its environment variable) has a value the controller cannot use."""


def parse_attributes(text: str) -> dict[str, AttributeValue]:
    """``profile=standard,tier=2,fast=true`` -> typed device attributes."""
    attributes: dict[str, AttributeValue] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, raw = item.partition("=")
        if not sep or not _ATTRIBUTE_NAME.match(name) or name == "index":
            raise OptionsError(
                f"--device-attributes: {item!r}: expected name=value with a C-identifier name "
                "(up to 32 characters, optionally domain-qualified, not 'index')"
            )
        value: AttributeValue = raw
        if raw in ("true", "false"):
            value = raw == "true"
        elif _INTEGER.fullmatch(raw):
            value = int(raw)
        attributes[name] = value
    return attributes


def parse_labels(flag: str, text: str) -> dict[str, str]:
    """``k8s-app=kube-dns,tier=a`` -> a label selector's matchLabels."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        name = key.rsplit("/", 1)[-1]
        if not sep or not _LABEL_NAME.match(name) or not _LABEL_VALUE.match(value):
            raise OptionsError(f"{flag}: {item!r} is not key=value with a valid label")
        labels[key] = value
    return labels


def parse_cidrs(text: str) -> tuple[str, ...]:
    cidrs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            cidrs.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise OptionsError(f"--dns-cidrs: {item!r} is not a CIDR") from None
    return tuple(cidrs)


def _names(text: str) -> frozenset[str]:
    return frozenset(filter(None, (name.strip() for name in text.split(","))))


@dataclass(frozen=True)
class ControllerOptions:
    driver: str
    namespace: str  # the controller's own: Lease, ownership key; never deleted
    identity: str
    plugin_service_account: str  # "<namespace>/<name>"
    token_minter_cluster_role: str
    ownership_secret: str
    pool_size: int = 32
    warm_pool_size: int = 0
    device_attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    binding_conditions: str = "off"  # "auto", "on" or "off"
    owner_device_class: str = ""
    # The API server URL recorded for pods; None: the in-cluster service, or this client's.
    pod_api_server: str | None = None
    # Never deleted, besides ``namespace`` and the always-protected ones (see gc).
    protected_namespaces: frozenset[str] = frozenset()
    resync_seconds: float = 300.0
    workers: int = DEFAULT_WORKERS
    leader_elect: bool = True
    lease_name: str = "space-dra-controller"
    kubeconfig: str | None = None
    http_address: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from other pods
    http_port: int = 8080
    # The installation's policy: every claim is judged within it (see config.resolve).
    policy: Policy = field(default_factory=Policy)
    dns: DnsServers = field(default_factory=DnsServers)

    def __post_init__(self) -> None:
        if not _DNS_SUBDOMAIN.match(self.driver) or len(self.driver) > 63:
            raise OptionsError(
                f"--driver-name: {self.driver!r} is not a DNS subdomain of at most 63 characters"
            )
        if not _DNS_LABEL.match(self.namespace):
            raise OptionsError(f"--namespace: {self.namespace!r} is not a namespace name")
        if not self.identity:
            raise OptionsError("--identity: must not be empty")
        plugin_namespace, slash, plugin_name = self.plugin_service_account.partition("/")
        if not slash or not _DNS_LABEL.match(plugin_namespace):
            raise OptionsError(
                f"--plugin-service-account: {self.plugin_service_account!r} must be "
                "<namespace>/<name>"
            )
        if not _DNS_SUBDOMAIN.match(plugin_name):
            raise OptionsError(
                f"--plugin-service-account: {plugin_name!r} is not a ServiceAccount name"
            )
        for flag, name in (
            ("--token-minter-cluster-role", self.token_minter_cluster_role),
            ("--ownership-secret", self.ownership_secret),
            ("--lease-name", self.lease_name),
        ):
            if not _DNS_SUBDOMAIN.match(name):
                raise OptionsError(f"{flag}: {name!r} is not a valid object name")
        if self.owner_device_class and not _DNS_SUBDOMAIN.match(self.owner_device_class):
            raise OptionsError(
                f"--owner-device-class: {self.owner_device_class!r} is not a valid object name"
            )
        for name in sorted(self.protected_namespaces):
            if not _DNS_LABEL.match(name):
                raise OptionsError(f"--protected-namespaces: {name!r} is not a namespace name")
        if self.pool_size < 0:
            raise OptionsError(f"--pool-size: must be 0 or more, got {self.pool_size}")
        if not 0 <= self.warm_pool_size <= self.pool_size:
            raise OptionsError(
                f"--warm-pool-size: must be from 0 to --pool-size ({self.pool_size}), "
                f"got {self.warm_pool_size}"
            )
        if self.binding_conditions not in ("auto", "on", "off"):
            raise OptionsError(
                f"--binding-conditions: expected auto, on or off, got {self.binding_conditions!r}"
            )
        if self.pod_api_server is not None and not self.pod_api_server.startswith("https://"):
            # The plugin refuses records whose server is not https.
            raise OptionsError(
                f"--pod-api-server-url: {self.pod_api_server!r} is not an https:// URL"
            )
        if not self.resync_seconds > 0:
            raise OptionsError(f"--resync-period: must be above 0, got {self.resync_seconds}")
        if self.workers < 1:
            raise OptionsError(f"--workers: must be 1 or more, got {self.workers}")

    @property
    def protected(self) -> frozenset[str]:
        """Namespaces never deleted besides the always-protected ones: the flag's and ours."""
        return self.protected_namespaces | {self.namespace}

    @classmethod
    def from_args(cls, args: argparse.Namespace, hostname: str) -> ControllerOptions:
        """From ``space-dra controller``'s parsed flags; ``hostname`` is the default identity."""
        try:
            policy = load_policy_file(args.policy_file)
        except ValueError as exc:
            raise OptionsError(f"--policy-file: {exc}") from None
        dns = DnsServers(
            namespace_selector=parse_labels(
                "--dns-namespace-selector", args.dns_namespace_selector
            ),
            pod_selector=parse_labels("--dns-pod-selector", args.dns_pod_selector),
            cidrs=parse_cidrs(args.dns_cidrs),
        )
        return cls(
            policy=policy,
            dns=dns,
            driver=args.driver_name,
            namespace=args.namespace,
            identity=args.identity or hostname,
            plugin_service_account=args.plugin_service_account,
            token_minter_cluster_role=args.token_minter_cluster_role,
            ownership_secret=args.ownership_secret,
            pool_size=args.pool_size,
            warm_pool_size=args.warm_pool_size,
            device_attributes=parse_attributes(args.device_attributes),
            binding_conditions=args.binding_conditions,
            owner_device_class=args.owner_device_class,
            pod_api_server=args.pod_api_server_url or None,
            protected_namespaces=_names(args.protected_namespaces),
            resync_seconds=args.resync_period,
            workers=args.workers,
            leader_elect=args.leader_elect,
            lease_name=args.lease_name,
            kubeconfig=args.kubeconfig or None,
            http_address=args.http_address,
            http_port=args.http_port,
        )

"""The NamespaceConfig schema, declared once.

Every field of a NamespaceConfig (and of its ``policy`` section) is described here:
name, type and constraints, default, which policy field caps it, documentation and an
example. Four things are derived from this table and from nothing else:

- the parser (:mod:`space_dra.config` interprets each field's kind);
- the admission policy's structural checks (:mod:`space_dra.schema_cel`);
- the chart's ``values.schema.json`` and ``values.yaml`` (:mod:`space_dra.schema_json`,
  with the chart's own values in :mod:`space_dra.schema_values`);
- the configuration reference ``docs/configuration.md`` (:mod:`space_dra.schema_doc`).

``tools/genschema.py`` writes the generated files; a unit test fails when one is stale.
This module holds data only: what a kind *means* is up to each interpreter (in words:
:func:`space_dra.schema_parse.rule`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from space_dra.quantity import NON_NEGATIVE_QUANTITY_PATTERN

POD_SECURITY_LEVELS: Final = ("privileged", "baseline", "restricted")
NETWORK_POLICIES: Final = ("none", "deny-ingress", "deny-all")
LIMIT_RANGE_KINDS: Final = ("default", "defaultRequest", "max", "min")

# The API server refuses TokenRequests below 10 minutes.
MIN_TOKEN_SECONDS: Final = 600
MAX_TOKEN_SECONDS: Final = 7 * 24 * 3600
# A namespace's lifetime: long enough for a pod to start, at most a year.
MIN_LIFETIME_SECONDS: Final = 10
MAX_LIFETIME_SECONDS: Final = 366 * 24 * 3600

# Patterns are whole-string matches in the RE2 subset (CEL, Go and Python agree on them).
DNS_LABEL_PREFIX: Final = "[a-z0-9]([-a-z0-9]*)?"
CLUSTER_ROLE_NAME: Final = "[a-z0-9]([-a-z0-9.:]*[a-z0-9])?"
RESOURCE_NAME: Final = "[a-z0-9]([-a-z0-9./]*[a-z0-9])?"
ENV_NAME: Final = "[A-Za-z_][A-Za-z0-9_]*"
NAMESPACE_NAME: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# Mounting over these would break the container or shadow its own credentials.
RESERVED_MOUNT_ROOTS: Final = ("/proc", "/sys", "/dev", "/run/secrets", "/var/run/secrets")
# generateName leaves room for the 5 random characters in a 63-character name.
MAX_PREFIX_LENGTH: Final = 58
RESERVED_NAME_PREFIXES: Final = ("kube-",)
MAX_ENTRIES: Final = 64
# A ResourceClaim holds at most 32 devices (resource.k8s.io AllocationResultsMaxSize).
MAX_DEVICES_PER_CLAIM: Final = 32


@dataclass(frozen=True)
class Text:
    """A non-empty string matching ``pattern``; ``rule`` says what it is, for messages."""

    pattern: str
    max_length: int
    rule: str


@dataclass(frozen=True)
class NamePrefix:
    """A namespace ``generateName``: a DNS-label prefix, short enough for the random suffix."""

    pattern: str = DNS_LABEL_PREFIX
    max_length: int = MAX_PREFIX_LENGTH
    reserved_prefixes: tuple[str, ...] = RESERVED_NAME_PREFIXES


@dataclass(frozen=True)
class MountPath:
    """A normalized absolute path in the container, ``min_depth`` levels or more."""

    segment: str = "[A-Za-z0-9._-]+"
    min_depth: int = 2
    max_length: int = 255
    reserved_roots: tuple[str, ...] = RESERVED_MOUNT_ROOTS
    # Searched for, not matched: a "." segment, or a segment starting with ".."
    # (which covers ".." itself; "..data" is refused too, as the parser always did).
    dot_segment: str = "/[.]([.]|/|$)"

    @property
    def pattern(self) -> str:
        return f"(/{self.segment}){{{self.min_depth},}}"


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]


@dataclass(frozen=True)
class Integer:
    """An integer. Parsing checks the type; the bounds are absolute limits the policy step
    enforces (it names both the request and the policy), admission and the chart check them."""

    minimum: int
    maximum: int


@dataclass(frozen=True)
class Boolean:
    pass


@dataclass(frozen=True)
class Quantities:
    """Resource name -> non-negative Kubernetes quantity (a string, or an integer)."""

    max_entries: int = MAX_ENTRIES
    name_pattern: str = RESOURCE_NAME
    name_max_length: int = 253
    quantity_pattern: str = NON_NEGATIVE_QUANTITY_PATTERN
    quantity_max_length: int = 64


@dataclass(frozen=True)
class LimitRange:
    """LimitRange kind (``default``, ``max``, ...) -> :class:`Quantities`, kept in order."""

    kinds: tuple[str, ...] = LIMIT_RANGE_KINDS
    resources: Quantities = Quantities()


@dataclass(frozen=True)
class ListOf:
    item: Text | NamePrefix | Choice
    max_items: int = MAX_ENTRIES
    min_items: int = 0


Kind = Text | NamePrefix | MountPath | Choice | Integer | Boolean | Quantities | LimitRange | ListOf


@dataclass(frozen=True)
class Field:
    """One NamespaceConfig field. ``default`` is a JSON value (None: computed, see
    ``default_doc``); ``cap`` says how the policy limits the field, if it does."""

    name: str
    kind: Kind
    default: Any
    doc: str
    example: Any
    # A few words for the comment beside the field in YAML examples.
    brief: str = ""
    default_doc: str = ""
    cap: str = ""

    @property
    def attr(self) -> str:
        """The Python attribute: ``tokenExpirationSeconds`` -> ``token_expiration_seconds``."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()


ROLE = Text(CLUSTER_ROLE_NAME, 253, "the name of a ClusterRole")
LIFETIME = Integer(MIN_LIFETIME_SECONDS, MAX_LIFETIME_SECONDS)
TEMPLATE = Text(NAMESPACE_NAME, 63, "the name of a namespace")

# Settable from a DeviceClass (defaults for its claims) and from a claim, within the policy.
SETTINGS: Final = (
    Field(
        "generateName",
        NamePrefix(),
        "ephemeral-ns-",
        "Prefix of the namespace's name; the API server appends 5 random characters.",
        "team-a-",
        brief="namespace name prefix",
        cap="must start with one of `policy.allowedNamePrefixes` when that list is not empty; "
        "a class default outside them becomes the first",
    ),
    Field(
        "role",
        ROLE,
        "admin",
        "ClusterRole bound (by a RoleBinding in the namespace) to the namespace's "
        "ServiceAccount, whose token the pods get.",
        "edit",
        brief="ClusterRole bound to the namespace's ServiceAccount",
        cap="one of `policy.allowedRoles`; a class default outside it becomes the first allowed",
    ),
    Field(
        "podSecurity",
        Choice(POD_SECURITY_LEVELS),
        "baseline",
        "Pod Security Standard the namespace enforces (also its audit and warn level).",
        "restricted",
        brief="enforce, audit, warn",
        cap="at least `policy.minPodSecurity`; a class default below it is raised to it",
    ),
    Field(
        "quota",
        Quantities(),
        {},
        "ResourceQuota `spec.hard` for the namespace: resource name to quantity.",
        {"pods": "10", "requests.cpu": "2"},
        brief="ResourceQuota spec.hard",
        cap="each resource at most `policy.maxQuota`; every resource there is required and "
        "filled from it when the claim sets no quota",
    ),
    Field(
        "limitRange",
        LimitRange(),
        {},
        "Container LimitRange for the namespace: `default`, `defaultRequest`, `max`, `min`, "
        "each a map of resource name to quantity, with min ≤ defaultRequest ≤ default ≤ max.",
        {"default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}},
        brief="container LimitRange",
    ),
    Field(
        "networkPolicy",
        Choice(NETWORK_POLICIES),
        "none",
        "NetworkPolicy the namespace gets: `deny-ingress` lets only the namespace's own pods "
        "connect in; `deny-all` also limits them to connecting to their namespace and to DNS.",
        "deny-ingress",
        cap="one of `policy.allowedNetworkPolicies`; a class default outside it becomes the first",
    ),
    Field(
        "tokenExpirationSeconds",
        Integer(MIN_TOKEN_SECONDS, MAX_TOKEN_SECONDS),
        3600,
        "Lifetime of the mounted ServiceAccount token; the kubelet plugin replaces it once "
        "80 % of it has passed (its `--token-refresh-fraction`).",
        7200,
        brief="lifetime of the mounted token",
        cap="between `policy.minTokenExpirationSeconds` and `policy.maxTokenExpirationSeconds`; "
        "a class default outside is clamped",
    ),
    Field(
        "lifetimeSeconds",
        LIFETIME,
        None,
        "Seconds the namespace lives, from when it becomes the claim's (made for it, or taken "
        "from the warm pool). Then its pods are stopped (evicted "
        "through a device taint where the cluster supports them), its credentials revoked, "
        "and it is deleted once no pod uses it, even while the claim is still referenced.",
        3600,
        brief="expiry",
        default_doc="`policy.defaultLifetimeSeconds`; unset: no expiry",
        cap="at most `policy.maxLifetimeSeconds`; a class default above it is lowered to it",
    ),
    Field(
        "envPrefix",
        Text(ENV_NAME, 128, "a valid environment variable name"),
        None,
        "Prefix of the env vars the containers get: `<prefix>_NAMESPACE`, `_CLUSTER`, "
        "`_KUBECONFIG`. A pod that asks for the DeviceClass's extended resource instead of "
        "naming a claim gets `SPACE` when no config sets this.",
        "WORKSPACE",
        default_doc="the claim's name, upper-cased, other characters -> `_`",
    ),
    Field(
        "mountPath",
        MountPath(),
        None,
        "Directory in the containers holding `kubeconfig`, `token`, `ca.crt` and `namespace`. "
        "A pod that asks for the DeviceClass's extended resource gets `/etc/space` when no "
        "config sets this.",
        "/etc/workspace",
        default_doc="`/etc/<the claim's name>`",
    ),
    Field(
        "template",
        TEMPLATE,
        None,
        "Namespace whose ConfigMaps and Secrets are copied into the new namespace before it "
        "is ready, labelled as the driver's. The namespace must be labelled "
        '`<driverName>/template: "true"` (`space.resource.example.com/template`). '
        "A snapshot: later changes to the template do not reach namespaces already made.",
        "team-defaults",
        brief="copy ConfigMaps and Secrets from this namespace",
        default_doc="none",
        cap="one of `policy.allowedTemplates`",
    ),
)

# Settable from a DeviceClass only: what the claims of that class may ask for.
POLICY: Final = (
    Field(
        "allowedRoles",
        ListOf(ROLE, min_items=1),
        ["admin", "edit", "view"],
        "ClusterRoles a claim may ask for in `role`.",
        ["edit", "view"],
    ),
    Field(
        "minPodSecurity",
        Choice(POD_SECURITY_LEVELS),
        "baseline",
        "Lowest `podSecurity` a claim may ask for.",
        "restricted",
    ),
    Field(
        "maxQuota",
        Quantities(),
        {},
        "Resource name to the largest quota a claim may ask for; when set, every namespace "
        "gets a quota on each of these resources.",
        {"pods": "20", "requests.memory": "8Gi"},
    ),
    Field(
        "minTokenExpirationSeconds",
        Integer(MIN_TOKEN_SECONDS, MAX_TOKEN_SECONDS),
        MIN_TOKEN_SECONDS,
        "Shortest `tokenExpirationSeconds` a claim may ask for.",
        1800,
    ),
    Field(
        "maxTokenExpirationSeconds",
        Integer(MIN_TOKEN_SECONDS, MAX_TOKEN_SECONDS),
        24 * 3600,
        "Longest `tokenExpirationSeconds` a claim may ask for.",
        43200,
    ),
    Field(
        "maxLifetimeSeconds",
        LIFETIME,
        None,
        "Longest `lifetimeSeconds` a claim may ask for; when set, every namespace expires.",
        86400,
        default_doc="no cap",
    ),
    Field(
        "defaultLifetimeSeconds",
        LIFETIME,
        None,
        "`lifetimeSeconds` of a claim that asks for none (and whose class sets none).",
        3600,
        default_doc="`maxLifetimeSeconds` (unset: namespaces do not expire)",
    ),
    Field(
        "allowedNamePrefixes",
        ListOf(NamePrefix()),
        [],
        "When not empty, `generateName` must start with one of these.",
        ["ci-", "team-a-"],
    ),
    Field(
        "allowedNetworkPolicies",
        ListOf(Choice(NETWORK_POLICIES), min_items=1),
        list(NETWORK_POLICIES),
        "`networkPolicy` values a claim may ask for.",
        ["deny-ingress", "deny-all"],
    ),
    Field(
        "maxDevicesPerClaim",
        Integer(1, MAX_DEVICES_PER_CLAIM),
        4,
        "Most namespace devices one claim may hold, so one tenant cannot take the whole "
        "pool. Refused at admission for the chart's DeviceClass (claims and templates, "
        "`allocationMode: All` included) and by the controller for any class.",
        2,
    ),
    Field(
        "allowNestedClaims",
        Boolean(),
        False,
        "Whether a claim made inside a namespace this driver provisioned may get another "
        "namespace (outside the parent's quota). Refused at admission and by the controller "
        "unless true.",
        True,
    ),
    Field(
        "allowedTemplates",
        ListOf(TEMPLATE),
        [],
        "Template namespaces a claim may name in `template`. The chart lets the controller "
        "read ConfigMaps and Secrets in each namespace its `policy.allowedTemplates` lists, "
        "and in no other; a DeviceClass can only narrow the list.",
        ["team-defaults"],
    ),
)

POLICY_FIELD: Final = "policy"
# Policy fields that were once declared: naming one is refused with the reason it went.
REMOVED_POLICY_FIELDS: Final = {
    "allowAdminAccess": "removed: this driver refuses adminAccess whatever the policy says "
    "(docs/security.md, 'Admin access'); delete the field",
}


def field_named(fields: tuple[Field, ...], name: str) -> Field:
    for item in fields:
        if item.name == name:
            return item
    raise KeyError(name)

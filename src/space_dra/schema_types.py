"""JSON-schema fragments for the chart's values, and the patterns they share.

Leaves and groups (``Value``, ``Group``), small builders (``text``, ``integer``,
``closed``, ...) and the shapes Kubernetes gives some values (resources, tolerations,
affinity, security contexts), used by :mod:`space_dra.schema_values` and
:mod:`space_dra.schema_deploy` to declare every chart value. Kubernetes' structures are
closed to the fields Kubernetes defines, so a typo such as ``runAsUsr`` is refused by
``helm lint`` instead of being dropped by the API server. Numbers the templates quote
into environment variables also accept digit strings, so ``--set-string pool.size=4``
keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from space_dra import schema
from space_dra.quantity import NON_NEGATIVE_QUANTITY_PATTERN

Json = dict[str, Any]


@dataclass(frozen=True)
class Value:
    """A leaf value. ``default`` None: not in values.yaml, unset unless given."""

    name: str
    type: Json | schema.Kind
    default: Any
    doc: str = ""


@dataclass(frozen=True)
class Group:
    """A map of named values, closed: a key not declared here is refused."""

    name: str
    children: tuple[Value | Group, ...]
    doc: str = ""
    # JSON-schema keywords relating the children (e.g. if/then), added to the group's.
    rules: Json = field(default_factory=dict)


# A DNS subdomain (RFC 1123), as Kubernetes object names and DRA driver names are.
DNS_SUBDOMAIN: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
DNS_LABEL: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# What the controller's --device-attributes accepts (not "index": the controller sets it).
ATTRIBUTE_NAME: Final = "([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z_][A-Za-z0-9_]{0,31}"
LOG_FORMATS: Final = ("text", "json")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
BINDING_CONDITIONS: Final = ("auto", "on", "off")
PULL_POLICIES: Final = ("Always", "IfNotPresent", "Never")
# A pod's extended resource name: a domain outside kubernetes.io, "/", a qualified name.
EXTENDED_RESOURCE_NAME: Final = f"{DNS_SUBDOMAIN}/[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?"


def text(pattern: str | None = None, *, empty: bool = False, max_length: int = 253) -> Json:
    """A string; ``empty``: also the empty string (meaning "the default")."""
    result: Json = {"type": "string", "maxLength": max_length}
    if not empty:
        result["minLength"] = 1
    if pattern:
        result["pattern"] = f"^({pattern})?$" if empty else f"^{pattern}$"
    return result


def extended_resource_name() -> Json:
    """``auto``, empty (none), or an extended resource name (not in kubernetes.io)."""
    result = text(f"auto|{EXTENDED_RESOURCE_NAME}", empty=True, max_length=253)
    result["not"] = {"pattern": "kubernetes[.]io/"}
    return result


def choice(options: tuple[str, ...]) -> Json:
    return {"type": "string", "enum": list(options)}


def boolean() -> Json:
    return {"type": "boolean"}


def integer(minimum: int, maximum: int | None = None) -> Json:
    """An integer, or its digits as a string (``--set-string``; range then not checked)."""
    result: Json = {"type": ["integer", "string"], "minimum": minimum}
    if maximum is not None:
        result["maximum"] = maximum
    result["pattern"] = "^[1-9][0-9]*$" if minimum >= 1 else "^[0-9]+$"
    return result


def seconds(maximum: float | None = None) -> Json:
    """A positive number of seconds, or its digits as a string."""
    result: Json = {"type": ["number", "string"], "exclusiveMinimum": 0}
    if maximum is not None:
        result["exclusiveMaximum"] = maximum
    result["pattern"] = "^[0-9]+([.][0-9]+)?$"
    return result


def port() -> Json:
    return integer(1, 65535)


def path() -> Json:
    return text("(/[^/]+)+")


def string_map() -> Json:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def closed(properties: Json, required: tuple[str, ...] = ()) -> Json:
    result: Json = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        result["required"] = list(required)
    return result


def array(items: Json) -> Json:
    return {"type": "array", "items": items}


QUANTITY_MAP: Final = {
    "type": "object",
    "additionalProperties": {
        "type": ["string", "number"],
        "pattern": f"^{NON_NEGATIVE_QUANTITY_PATTERN}$",
        "minimum": 0,
    },
}
RESOURCES: Final = closed(
    {
        "requests": QUANTITY_MAP,
        "limits": QUANTITY_MAP,
        "claims": array(closed({"name": text(), "request": text()}, required=("name",))),
    }
)
TOLERATIONS: Final = array(
    closed(
        {
            "key": text(max_length=316),
            "operator": choice(("Exists", "Equal")),
            "value": text(empty=True, max_length=63),
            "effect": choice(("NoSchedule", "PreferNoSchedule", "NoExecute")),
            "tolerationSeconds": {"type": "integer"},
        }
    )
)
# Kubernetes' Affinity is large and checked by the API server; only its shape here.
AFFINITY: Final = closed(
    {
        "nodeAffinity": {"type": "object"},
        "podAffinity": {"type": "object"},
        "podAntiAffinity": {"type": "object"},
    }
)
ATTRIBUTES: Final = {
    "type": "object",
    # The controller sets "index" itself.
    "properties": {"index": {"not": {}, "description": "reserved: the slot's number"}},
    # Strings go into a comma-separated flag: no "," in them.
    "patternProperties": {
        f"^{ATTRIBUTE_NAME}$": {"type": ["string", "integer", "boolean"], "pattern": "^[^,]*$"}
    },
    "additionalProperties": False,
}
_SECCOMP: Final = closed(
    {
        "type": choice(("RuntimeDefault", "Localhost", "Unconfined")),
        "localhostProfile": text(),
    },
    required=("type",),
)
_APPARMOR: Final = closed(
    {"type": choice(("RuntimeDefault", "Localhost", "Unconfined")), "localhostProfile": text()},
    required=("type",),
)
_SELINUX: Final = closed({name: text() for name in ("user", "role", "type", "level")})
_USER_ID: Final = {"type": "integer", "minimum": 0}
# Fields both a pod's and a container's securityContext have.
_COMMON_SECURITY: Final = {
    "runAsUser": _USER_ID,
    "runAsGroup": _USER_ID,
    "runAsNonRoot": boolean(),
    "seccompProfile": _SECCOMP,
    "appArmorProfile": _APPARMOR,
    "seLinuxOptions": _SELINUX,
    "windowsOptions": {"type": "object"},
}
POD_SECURITY_CONTEXT: Final = closed(
    {
        **_COMMON_SECURITY,
        "fsGroup": _USER_ID,
        "fsGroupChangePolicy": choice(("OnRootMismatch", "Always")),
        "supplementalGroups": array(_USER_ID),
        "supplementalGroupsPolicy": choice(("Merge", "Strict")),
        "seLinuxChangePolicy": choice(("MountOption", "Recursive")),
        "sysctls": array(closed({"name": text(), "value": text(empty=True)}, ("name", "value"))),
    }
)
SECURITY_CONTEXT: Final = closed(
    {
        **_COMMON_SECURITY,
        "privileged": boolean(),
        "allowPrivilegeEscalation": boolean(),
        "readOnlyRootFilesystem": boolean(),
        "procMount": choice(("Default", "Unmasked")),
        "capabilities": closed({"add": array(text()), "drop": array(text())}),
    }
)
# A PodDisruptionBudget's minAvailable/maxUnavailable: a count or a percentage.
INT_OR_PERCENT: Final = {"type": ["integer", "string"], "minimum": 0, "pattern": "^[0-9]+%?$"}
# A Prometheus duration as monitors take it (30s, 1m, 500ms).
DURATION: Final = text("[0-9]+(ms|s|m|h)", empty=True, max_length=16)
IMAGE_DIGEST: Final = text("sha256:[a-f0-9]{64}", empty=True, max_length=71)

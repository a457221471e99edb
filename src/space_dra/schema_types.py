"""JSON-schema fragments for the chart's values, and the patterns they share.

Small builders (``text``, ``integer``, ``closed``, ...) and the shapes Kubernetes gives
some values (resources, tolerations, affinity), used by :mod:`space_dra.schema_values`
to declare every chart value. Numbers the templates quote into environment variables
also accept digit strings, so ``--set-string pool.size=4`` keeps working.
"""

from __future__ import annotations

from typing import Any, Final

from space_dra.quantity import NON_NEGATIVE_QUANTITY_PATTERN

Json = dict[str, Any]

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

"""What each kind of :mod:`space_dra.schema` accepts: one JSON value in, its Python form out.

This is the parser's half of the schema: :func:`parse_document` reads one NamespaceConfig
and calls :func:`parse_value` for every field; :mod:`space_dra.config` merges the
documents and applies the policy. A refused
value raises :class:`ConfigError` naming the field's path and what to change, because the
message ends up in a ``NamespaceFailed`` condition a user reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, assert_never

from space_dra import schema
from space_dra.contract import CONFIG_API_VERSION, CONFIG_KIND
from space_dra.quantity import parse_quantity

SOURCE_CLASS: Final = "FromClass"
SOURCE_CLAIM: Final = "FromClaim"
_MOUNT_PATH: Final = schema.MountPath()


class ConfigError(ValueError):
    """A NamespaceConfig that cannot be used; ``str()`` is the user-facing message."""

    def __init__(self, path: str, message: str, source: str | None = None) -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"NamespaceConfig ({_describe(source)})" if source else "NamespaceConfig"
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")


def _describe(source: str | None) -> str:
    return {SOURCE_CLASS: "from the DeviceClass", SOURCE_CLAIM: "from the claim"}.get(
        source or "", source or ""
    )


def rule(kind: schema.Kind) -> str:
    """What a value of ``kind`` must be, in words (admission messages, the reference)."""
    match kind:
        case schema.Text():
            return f"{kind.rule} (up to {kind.max_length} characters)"
        case schema.NamePrefix():
            return (
                f"a lowercase prefix of up to {kind.max_length} characters [a-z0-9-], not "
                f"starting with {' or '.join(kind.reserved_prefixes)}"
            )
        case schema.MountPath():
            return (
                f"a normalized absolute path at least {kind.min_depth} levels deep, outside "
                f"{', '.join(kind.reserved_roots)}"
            )
        case schema.Choice():
            return f"one of {', '.join(kind.options)}"
        case schema.Integer():
            return f"an integer from {kind.minimum} to {kind.maximum}"
        case schema.Boolean():
            return "true or false"
        case schema.Quantities():
            return (
                f"a map of up to {kind.max_entries} resource names to non-negative quantities "
                '(e.g. {pods: "10", requests.memory: 2Gi})'
            )
        case schema.LimitRange():
            return f"a map of {', '.join(kind.kinds)} to maps of resource names to quantities"
        case schema.ListOf():
            size = "a non-empty list" if kind.min_items else "a list"
            return f"{size} of up to {kind.max_items} entries, each {rule(kind.item)}"
        case _:
            assert_never(kind)


def parse_value(path: str, kind: schema.Kind, value: Any) -> Any:
    """Check one JSON value against its schema kind; return it as the dataclasses hold it.

    Errors are ConfigErrors whose path is ``path`` or below it.
    """
    match kind:
        case schema.Text():
            return _str(path, value, kind.pattern, kind.max_length)
        case schema.NamePrefix():
            return _name_prefix(path, value, kind)
        case schema.MountPath():
            return validate_mount_path(path, value, kind)
        case schema.Choice():
            return _choice(path, value, kind.options)
        case schema.Integer():
            return _int(path, value)
        case schema.Boolean():
            return _bool(path, value)
        case schema.Quantities():
            return _resources(path, value, kind)
        case schema.LimitRange():
            return _limit_range(path, value, kind)
        case schema.ListOf():
            return _list(path, value, kind)
        case _:
            assert_never(kind)


_SETTINGS_FIELDS: Final = {item.name: item for item in schema.SETTINGS}
_POLICY_FIELDS: Final = {item.name: item for item in schema.POLICY}


@dataclass(frozen=True)
class Document:
    """One NamespaceConfig's fields, parsed: attribute name -> value."""

    settings: dict[str, Any]
    policy: dict[str, Any]


def parse_document(parameters: Any, source: str) -> Document:
    """Parse one opaque config; unknown fields and wrong types are errors."""
    try:
        if not isinstance(parameters, dict):
            raise ConfigError("", f"parameters must be an object, got {typename(parameters)}")
        api_version = parameters.get("apiVersion")
        kind = parameters.get("kind")
        if api_version != CONFIG_API_VERSION or kind != CONFIG_KIND:
            raise ConfigError(
                "",
                f"apiVersion/kind must be {CONFIG_API_VERSION}/{CONFIG_KIND}, "
                f"got {api_version!r}/{kind!r}",
            )
        settings: dict[str, Any] = {}
        policy: dict[str, Any] = {}
        for key, value in parameters.items():
            if key in ("apiVersion", "kind"):
                continue
            if key in _SETTINGS_FIELDS:
                item = _SETTINGS_FIELDS[key]
                settings[item.attr] = parse_value(key, item.kind, value)
            elif key == schema.POLICY_FIELD:
                if source != SOURCE_CLASS:
                    raise ConfigError(
                        "policy", "only a DeviceClass may set policy; remove it from the claim"
                    )
                if not isinstance(value, dict):
                    raise ConfigError("policy", f"must be an object, got {typename(value)}")
                for pkey, pvalue in value.items():
                    if pkey in schema.REMOVED_POLICY_FIELDS:
                        raise ConfigError(f"policy.{pkey}", schema.REMOVED_POLICY_FIELDS[pkey])
                    if pkey not in _POLICY_FIELDS:
                        raise ConfigError(
                            f"policy.{safe_key(pkey)}", unknown_field(pkey, _POLICY_FIELDS)
                        )
                    item = _POLICY_FIELDS[pkey]
                    policy[item.attr] = parse_value(f"policy.{pkey}", item.kind, pvalue)
            else:
                known = {**_SETTINGS_FIELDS, schema.POLICY_FIELD: None}
                raise ConfigError(safe_key(key), unknown_field(key, known))
        return Document(settings, policy)
    except ConfigError as exc:
        raise ConfigError(exc.path, exc.message, source) from None


def _str(path: str, value: Any, pattern: str | None = None, limit: int = 253) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string, got {typename(value)}")
    if not value or len(value) > limit:
        raise ConfigError(path, f"must be 1 to {limit} characters long")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ConfigError(path, f"{value!r} is not allowed here (must match ^{pattern}$)")
    return value


def _int(path: str, value: Any) -> int:
    # bool is an int in Python but not in JSON.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, got {typename(value)}")
    return value


def _bool(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {typename(value)}")
    return value


def _choice(path: str, value: Any, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if value not in options:
        raise ConfigError(path, f"must be one of {', '.join(options)}; got {value!r}")
    return str(value)


def _list(path: str, value: Any, kind: schema.ListOf) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a list of strings, got {typename(value)}")
    if len(value) > kind.max_items:
        raise ConfigError(path, f"must have at most {kind.max_items} entries")
    if len(value) < kind.min_items:
        raise ConfigError(path, f"must have at least {_count(kind.min_items)}")
    return tuple(parse_value(f"{path}[{i}]", kind.item, item) for i, item in enumerate(value))


def _count(entries: int) -> str:
    return "one entry" if entries == 1 else f"{entries} entries"


def _resources(path: str, value: Any, kind: schema.Quantities) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(
            path, f"must be a map of resource name to quantity, got {typename(value)}"
        )
    if len(value) > kind.max_entries:
        raise ConfigError(path, f"must have at most {kind.max_entries} entries")
    result = {}
    for key, quantity in value.items():
        name = _str(path, key, kind.name_pattern, kind.name_max_length)
        as_text = (
            str(quantity)
            if isinstance(quantity, int) and not isinstance(quantity, bool)
            else quantity
        )
        text = _str(f"{path}.{name}", as_text, limit=kind.quantity_max_length)
        try:
            amount = parse_quantity(text)
        except ValueError:
            raise ConfigError(
                f"{path}.{name}", f"{text!r} is not a quantity (e.g. 500m, 2Gi, 10)"
            ) from None
        if amount < 0:
            raise ConfigError(f"{path}.{name}", "must not be negative")
        result[name] = text
    return result


def _limit_range(path: str, value: Any, kind: schema.LimitRange) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be an object, got {typename(value)}")
    result = {}
    for key, resources in value.items():
        limit_kind = _choice(path, key, kind.kinds)
        result[limit_kind] = _resources(f"{path}.{limit_kind}", resources, kind.resources)
    _check_limit_order(path, result)
    return result


def _check_limit_order(path: str, limits: Mapping[str, Mapping[str, str]]) -> None:
    """min ≤ defaultRequest ≤ default ≤ max per resource, as the API server checks it.

    The API server fills a missing ``default`` from ``max`` and a missing
    ``defaultRequest`` from ``default`` or ``min``; a filled value sits between the
    values it came from, so comparing the values that were written is enough.
    """
    chain = ("min", "defaultRequest", "default", "max")
    for resource in sorted({r for kind in chain for r in limits.get(kind, {})}):
        written = [
            (kind, limits[kind][resource]) for kind in chain if resource in limits.get(kind, {})
        ]
        for i, (low_kind, low) in enumerate(written):
            for high_kind, high in written[i + 1 :]:
                if parse_quantity(low) > parse_quantity(high):
                    raise ConfigError(
                        f"{path}.{low_kind}.{resource}",
                        f"{low} is more than {high_kind} {high}; a schema.LimitRange needs "
                        "min ≤ defaultRequest ≤ default ≤ max",
                    )


def _name_prefix(path: str, value: Any, kind: schema.NamePrefix) -> str:
    prefix = _str(path, value, kind.pattern, kind.max_length)
    if prefix.startswith(kind.reserved_prefixes):
        raise ConfigError(
            path, f"{prefix!r} uses a reserved prefix ({', '.join(kind.reserved_prefixes)})"
        )
    return prefix


def validate_mount_path(path: str, value: Any, kind: schema.MountPath = _MOUNT_PATH) -> str:
    text = _str(path, value, limit=kind.max_length)
    if not re.fullmatch(f"(/{kind.segment})+", text) or re.search(kind.dot_segment, text):
        raise ConfigError(
            path, f"{text!r} must be a normalized absolute path of [A-Za-z0-9._-] segments"
        )
    if text.count("/") < kind.min_depth:
        raise ConfigError(path, f"{text!r} must be at least two levels deep, e.g. /etc/my-claim")
    for root in kind.reserved_roots:
        if text == root or text.startswith(root + "/"):
            raise ConfigError(path, f"{text!r} is under the reserved path {root}")
    return text


def typename(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def safe_key(key: Any) -> str:
    text = str(key)
    return text if text and len(text) <= 64 and text.isprintable() else repr(text[:64])


def unknown_field(key: Any, known: Mapping[str, Any]) -> str:
    return f"unknown field {safe_key(key)!r}; known fields are {', '.join(sorted(known))}"

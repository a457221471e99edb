"""NamespaceConfig: the opaque parameters of our driver, parsed strictly.

An admin puts a NamespaceConfig with a ``policy`` section into the DeviceClass;
users may put a NamespaceConfig without ``policy`` into their claim to ask for a
role, quota, Pod Security level and so on. The allocation lists both (class
configs first), later entries override earlier ones field by field, and the result
must lie within the policy. Every rejection names the field and what to change,
because the message ends up in a ``NamespaceFailed`` condition a user reads.

The controller and the kubelet plugin both call :func:`resolve`, so a claim is
judged the same way on both sides.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from space_dra.contract import CONFIG_API_VERSION, CONFIG_KIND
from space_dra.quantity import parse_quantity

SOURCE_CLASS: Final = "FromClass"
SOURCE_CLAIM: Final = "FromClaim"

POD_SECURITY_LEVELS: Final = ("privileged", "baseline", "restricted")
NETWORK_POLICIES: Final = ("none", "deny-ingress", "deny-all")
LIMIT_RANGE_KINDS: Final = ("default", "defaultRequest", "max", "min")

# The API server refuses TokenRequests below 10 minutes.
MIN_TOKEN_SECONDS: Final = 600
MAX_TOKEN_SECONDS: Final = 7 * 24 * 3600

_DNS_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ROLE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$")
_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9./]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MOUNT_PATH = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
# Mounting over these would break the container or shadow its own credentials.
_RESERVED_MOUNT_ROOTS: Final = ("/proc", "/sys", "/dev", "/run/secrets", "/var/run/secrets")
# generateName leaves room for the 5 random characters in a 63-character name.
MAX_PREFIX_LENGTH: Final = 58
RESERVED_NAME_PREFIXES: Final = ("kube-",)


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


@dataclass(frozen=True)
class Policy:
    """Admin policy, only settable from a DeviceClass."""

    allowed_roles: tuple[str, ...] = ("admin", "edit", "view")
    min_pod_security: str = "baseline"
    max_quota: Mapping[str, str] = field(default_factory=dict)
    min_token_expiration_seconds: int = MIN_TOKEN_SECONDS
    max_token_expiration_seconds: int = 24 * 3600
    allowed_name_prefixes: tuple[str, ...] = ()
    allowed_network_policies: tuple[str, ...] = NETWORK_POLICIES
    allow_admin_access: bool = False


@dataclass(frozen=True)
class Settings:
    """The effective request for one namespace, after merging and policy checks."""

    generate_name: str = "ephemeral-ns-"
    role: str = "admin"
    pod_security: str = "baseline"
    quota: Mapping[str, str] = field(default_factory=dict)
    limit_range: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    network_policy: str = "none"
    token_expiration_seconds: int = 3600
    env_prefix: str | None = None
    mount_path: str | None = None


@dataclass(frozen=True)
class Resolved:
    settings: Settings
    policy: Policy


# Field name in the document -> (attribute, parser). Parsers raise ConfigError
# with the path relative to the field.
_SETTINGS_FIELDS: Final = {
    "generateName": "generate_name",
    "role": "role",
    "podSecurity": "pod_security",
    "quota": "quota",
    "limitRange": "limit_range",
    "networkPolicy": "network_policy",
    "tokenExpirationSeconds": "token_expiration_seconds",
    "envPrefix": "env_prefix",
    "mountPath": "mount_path",
}
_POLICY_FIELDS: Final = {
    "allowedRoles": "allowed_roles",
    "minPodSecurity": "min_pod_security",
    "maxQuota": "max_quota",
    "minTokenExpirationSeconds": "min_token_expiration_seconds",
    "maxTokenExpirationSeconds": "max_token_expiration_seconds",
    "allowedNamePrefixes": "allowed_name_prefixes",
    "allowedNetworkPolicies": "allowed_network_policies",
    "allowAdminAccess": "allow_admin_access",
}


def _str(path: str, value: Any, pattern: re.Pattern[str] | None = None, limit: int = 253) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string, got {_typename(value)}")
    if not value or len(value) > limit:
        raise ConfigError(path, f"must be 1 to {limit} characters long")
    if pattern is not None and not pattern.match(value):
        raise ConfigError(path, f"{value!r} is not allowed here (must match {pattern.pattern})")
    return value


def _int(path: str, value: Any) -> int:
    # bool is an int in Python but not in JSON.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, got {_typename(value)}")
    return value


def _bool(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {_typename(value)}")
    return value


def _choice(path: str, value: Any, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if value not in options:
        raise ConfigError(path, f"must be one of {', '.join(options)}; got {value!r}")
    return str(value)


def _str_list(path: str, value: Any, pattern: re.Pattern[str]) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a list of strings, got {_typename(value)}")
    if len(value) > 64:
        raise ConfigError(path, "must have at most 64 entries")
    return tuple(_str(f"{path}[{i}]", item, pattern) for i, item in enumerate(value))


def _resources(path: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(
            path, f"must be a map of resource name to quantity, got {_typename(value)}"
        )
    if len(value) > 64:
        raise ConfigError(path, "must have at most 64 entries")
    result = {}
    for key, quantity in value.items():
        name = _str(f"{path}", key, _RESOURCE_NAME)
        as_text = (
            str(quantity)
            if isinstance(quantity, int) and not isinstance(quantity, bool)
            else quantity
        )
        text = _str(f"{path}.{name}", as_text, limit=64)
        try:
            value = parse_quantity(text)
        except ValueError:
            raise ConfigError(
                f"{path}.{name}", f"{text!r} is not a quantity (e.g. 500m, 2Gi, 10)"
            ) from None
        if value < 0:
            raise ConfigError(f"{path}.{name}", "must not be negative")
        result[name] = text
    return result


def _limit_range(path: str, value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be an object, got {_typename(value)}")
    result = {}
    for key, resources in value.items():
        kind = _choice(f"{path}", key, LIMIT_RANGE_KINDS)
        result[kind] = _resources(f"{path}.{kind}", resources)
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
                        f"{low} is more than {high_kind} {high}; a LimitRange needs "
                        "min ≤ defaultRequest ≤ default ≤ max",
                    )


def _generate_name(path: str, value: Any) -> str:
    prefix = _str(path, value, _DNS_LABEL_PREFIX, MAX_PREFIX_LENGTH)
    if any(prefix.startswith(reserved) for reserved in RESERVED_NAME_PREFIXES):
        raise ConfigError(
            path, f"{prefix!r} uses a reserved prefix ({', '.join(RESERVED_NAME_PREFIXES)})"
        )
    return prefix


def validate_mount_path(path: str, value: Any) -> str:
    text = _str(path, value, limit=255)
    normalized = posixpath.normpath(text)
    if normalized != text or not _MOUNT_PATH.match(text) or "/.." in text or "/./" in text:
        raise ConfigError(
            path, f"{text!r} must be a normalized absolute path of [A-Za-z0-9._-] segments"
        )
    if text.count("/") < 2:
        raise ConfigError(path, f"{text!r} must be at least two levels deep, e.g. /etc/my-claim")
    for root in _RESERVED_MOUNT_ROOTS:
        if text == root or text.startswith(root + "/"):
            raise ConfigError(path, f"{text!r} is under the reserved path {root}")
    return text


def _parse_setting(name: str, value: Any) -> Any:
    path = name
    match name:
        case "generateName":
            return _generate_name(path, value)
        case "role":
            return _str(path, value, _ROLE_NAME)
        case "podSecurity":
            return _choice(path, value, POD_SECURITY_LEVELS)
        case "quota":
            return _resources(path, value)
        case "limitRange":
            return _limit_range(path, value)
        case "networkPolicy":
            return _choice(path, value, NETWORK_POLICIES)
        case "tokenExpirationSeconds":
            return _int(path, value)
        case "envPrefix":
            return _str(path, value, _ENV_NAME, 128)
        case "mountPath":
            return validate_mount_path(path, value)
    raise AssertionError(name)


def _parse_policy_field(name: str, value: Any) -> Any:
    path = f"policy.{name}"
    match name:
        case "allowedRoles":
            return _str_list(path, value, _ROLE_NAME)
        case "minPodSecurity":
            return _choice(path, value, POD_SECURITY_LEVELS)
        case "maxQuota":
            return _resources(path, value)
        case "minTokenExpirationSeconds" | "maxTokenExpirationSeconds":
            return _int(path, value)
        case "allowedNamePrefixes":
            return tuple(
                _generate_name(f"{path}[{i}]", item)
                for i, item in enumerate(_str_list(path, value, _DNS_LABEL_PREFIX))
            )
        case "allowedNetworkPolicies":
            return tuple(
                _choice(f"{path}[{i}]", item, NETWORK_POLICIES)
                for i, item in enumerate(_str_list(path, value, _DNS_LABEL))
            )
        case "allowAdminAccess":
            return _bool(path, value)
    raise AssertionError(name)


@dataclass(frozen=True)
class _Document:
    settings: dict[str, Any]
    policy: dict[str, Any]


def parse_document(parameters: Any, source: str) -> _Document:
    """Parse one opaque config; unknown fields and wrong types are errors."""
    try:
        if not isinstance(parameters, dict):
            raise ConfigError("", f"parameters must be an object, got {_typename(parameters)}")
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
                settings[_SETTINGS_FIELDS[key]] = _parse_setting(key, value)
            elif key == "policy":
                if source != SOURCE_CLASS:
                    raise ConfigError(
                        "policy", "only a DeviceClass may set policy; remove it from the claim"
                    )
                if not isinstance(value, dict):
                    raise ConfigError("policy", f"must be an object, got {_typename(value)}")
                for pkey, pvalue in value.items():
                    if pkey not in _POLICY_FIELDS:
                        raise ConfigError(f"policy.{_safe(pkey)}", _unknown(pkey, _POLICY_FIELDS))
                    policy[_POLICY_FIELDS[pkey]] = _parse_policy_field(pkey, pvalue)
            else:
                raise ConfigError(_safe(key), _unknown(key, {**_SETTINGS_FIELDS, "policy": ""}))
        return _Document(settings, policy)
    except ConfigError as exc:
        raise ConfigError(exc.path, exc.message, source) from None


def resolve(
    documents: Iterable[tuple[str, Any]],
    admin_access: bool = False,
    defaults: Settings | None = None,
) -> Resolved:
    """Merge (source, parameters) pairs in order and check the result against policy.

    ``defaults`` are the component's own defaults, used where no config sets a field.
    """
    settings = defaults or Settings()
    policy = Policy()
    claim_set: set[str] = set()
    for source, parameters in documents:
        document = parse_document(parameters, source)
        settings = replace(settings, **document.settings)
        policy = replace(policy, **document.policy)
        if source == SOURCE_CLAIM:
            claim_set.update(document.settings)
    _check_policy_consistent(policy)
    settings = _apply_policy_defaults(settings, policy, claim_set)
    _check_within_policy(settings, policy, admin_access)
    return Resolved(settings, policy)


def _check_policy_consistent(policy: Policy) -> None:
    def fail(path: str, message: str) -> ConfigError:
        return ConfigError(f"policy.{path}", message, SOURCE_CLASS)

    lo, hi = policy.min_token_expiration_seconds, policy.max_token_expiration_seconds
    if not MIN_TOKEN_SECONDS <= lo <= hi <= MAX_TOKEN_SECONDS:
        raise fail(
            "minTokenExpirationSeconds",
            f"token bounds must satisfy {MIN_TOKEN_SECONDS} <= min <= max <= {MAX_TOKEN_SECONDS}; "
            f"got min={lo}, max={hi}",
        )
    if not policy.allowed_roles:
        raise fail("allowedRoles", "must name at least one ClusterRole")
    if not policy.allowed_network_policies:
        raise fail("allowedNetworkPolicies", "must allow at least one value")


def _apply_policy_defaults(settings: Settings, policy: Policy, claim_set: set[str]) -> Settings:
    """Fill what the claim left open from policy, so the defaults are always allowed."""
    updates: dict[str, Any] = {}
    if "quota" not in claim_set and policy.max_quota:
        updates["quota"] = {**policy.max_quota, **settings.quota}
    if "token_expiration_seconds" not in claim_set:
        updates["token_expiration_seconds"] = min(
            max(settings.token_expiration_seconds, policy.min_token_expiration_seconds),
            policy.max_token_expiration_seconds,
        )
    if "role" not in claim_set and settings.role not in policy.allowed_roles:
        updates["role"] = policy.allowed_roles[0]
    if "pod_security" not in claim_set and _level(settings.pod_security) < _level(
        policy.min_pod_security
    ):
        updates["pod_security"] = policy.min_pod_security
    if "network_policy" not in claim_set and (
        settings.network_policy not in policy.allowed_network_policies
    ):
        updates["network_policy"] = policy.allowed_network_policies[0]
    return replace(settings, **updates)


def _check_within_policy(settings: Settings, policy: Policy, admin_access: bool) -> None:
    def fail(path: str, message: str) -> ConfigError:
        return ConfigError(path, message, SOURCE_CLAIM)

    if admin_access and not policy.allow_admin_access:
        raise fail(
            "",
            "the request uses adminAccess, which this DeviceClass's policy does not allow "
            "(policy.allowAdminAccess); remove adminAccess from the claim",
        )
    if settings.role not in policy.allowed_roles:
        raise fail(
            "role",
            f"{settings.role!r} is not allowed; choose one of {', '.join(policy.allowed_roles)}",
        )
    if _level(settings.pod_security) < _level(policy.min_pod_security):
        raise fail(
            "podSecurity",
            f"{settings.pod_security!r} is below the policy minimum {policy.min_pod_security!r}",
        )
    if settings.network_policy not in policy.allowed_network_policies:
        raise fail(
            "networkPolicy",
            f"{settings.network_policy!r} is not allowed; choose one of "
            f"{', '.join(policy.allowed_network_policies)}",
        )
    lo, hi = policy.min_token_expiration_seconds, policy.max_token_expiration_seconds
    if not lo <= settings.token_expiration_seconds <= hi:
        raise fail(
            "tokenExpirationSeconds",
            f"{settings.token_expiration_seconds} is outside the allowed range {lo}..{hi}",
        )
    if policy.allowed_name_prefixes and not any(
        settings.generate_name.startswith(prefix) for prefix in policy.allowed_name_prefixes
    ):
        raise fail(
            "generateName",
            f"{settings.generate_name!r} must start with one of "
            f"{', '.join(policy.allowed_name_prefixes)}",
        )
    for name, cap in policy.max_quota.items():
        requested = settings.quota.get(name)
        if requested is None:
            raise fail(f"quota.{name}", f"is required by policy and must be at most {cap}")
        if parse_quantity(requested) > parse_quantity(cap):
            raise fail(f"quota.{name}", f"{requested} exceeds the policy maximum {cap}")


def _level(level: str) -> int:
    return POD_SECURITY_LEVELS.index(level)


def _typename(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _safe(key: Any) -> str:
    text = str(key)
    return text if text and len(text) <= 64 and text.isprintable() else repr(text[:64])


def _unknown(key: Any, known: Mapping[str, Any]) -> str:
    return f"unknown field {_safe(key)!r}; known fields are {', '.join(sorted(known))}"

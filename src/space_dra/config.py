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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

import yaml

from space_dra import schema
from space_dra.contract import CONFIG_API_VERSION, CONFIG_KIND
from space_dra.quantity import parse_quantity
from space_dra.schema import (
    MAX_LIFETIME_SECONDS,
    MAX_TOKEN_SECONDS,
    MIN_LIFETIME_SECONDS,
    MIN_TOKEN_SECONDS,
    POD_SECURITY_LEVELS,
)
from space_dra.schema_parse import (
    SOURCE_CLAIM,
    SOURCE_CLASS,
    ConfigError,
    parse_document,
    rule,
    validate_mount_path,
)

__all__ = [
    "SOURCE_CLAIM",
    "SOURCE_CLASS",
    "ConfigError",
    "Policy",
    "Resolved",
    "Settings",
    "load_policy",
    "load_policy_file",
    "narrow",
    "parse_document",
    "resolve",
    "validate_mount_path",
]


def _dataclass_default(item: schema.Field) -> Any:
    """The schema's default as a dataclass field: lists become tuples, maps are copied."""
    value = item.default
    if isinstance(value, dict):
        return field(default_factory=lambda: dict(value))
    return field(default=tuple(value) if isinstance(value, list) else value)


_POLICY_DEFAULTS: Final = {item.attr: _dataclass_default(item) for item in schema.POLICY}
_SETTING_DEFAULTS: Final = {item.attr: _dataclass_default(item) for item in schema.SETTINGS}


# The two dataclasses are the typed views of schema.POLICY and schema.SETTINGS: names and
# Python types here, everything else (defaults, constraints) there; checked at import.
@dataclass(frozen=True)
class Policy:
    """Admin policy, only settable from a DeviceClass."""

    allowed_roles: tuple[str, ...] = _POLICY_DEFAULTS["allowed_roles"]
    min_pod_security: str = _POLICY_DEFAULTS["min_pod_security"]
    max_quota: Mapping[str, str] = _POLICY_DEFAULTS["max_quota"]
    min_token_expiration_seconds: int = _POLICY_DEFAULTS["min_token_expiration_seconds"]
    max_token_expiration_seconds: int = _POLICY_DEFAULTS["max_token_expiration_seconds"]
    max_lifetime_seconds: int | None = _POLICY_DEFAULTS["max_lifetime_seconds"]
    default_lifetime_seconds: int | None = _POLICY_DEFAULTS["default_lifetime_seconds"]
    allowed_name_prefixes: tuple[str, ...] = _POLICY_DEFAULTS["allowed_name_prefixes"]
    allowed_network_policies: tuple[str, ...] = _POLICY_DEFAULTS["allowed_network_policies"]
    max_devices_per_claim: int = _POLICY_DEFAULTS["max_devices_per_claim"]
    allow_nested_claims: bool = _POLICY_DEFAULTS["allow_nested_claims"]
    allowed_templates: tuple[str, ...] = _POLICY_DEFAULTS["allowed_templates"]


@dataclass(frozen=True)
class Settings:
    """The effective request for one namespace, after merging and policy checks."""

    generate_name: str = _SETTING_DEFAULTS["generate_name"]
    role: str = _SETTING_DEFAULTS["role"]
    pod_security: str = _SETTING_DEFAULTS["pod_security"]
    quota: Mapping[str, str] = _SETTING_DEFAULTS["quota"]
    limit_range: Mapping[str, Mapping[str, str]] = _SETTING_DEFAULTS["limit_range"]
    network_policy: str = _SETTING_DEFAULTS["network_policy"]
    token_expiration_seconds: int = _SETTING_DEFAULTS["token_expiration_seconds"]
    lifetime_seconds: int | None = _SETTING_DEFAULTS["lifetime_seconds"]
    env_prefix: str | None = _SETTING_DEFAULTS["env_prefix"]
    mount_path: str | None = _SETTING_DEFAULTS["mount_path"]
    template: str | None = _SETTING_DEFAULTS["template"]


def _check_declared(view: Any, declared: tuple[schema.Field, ...]) -> None:
    have = [item.name for item in fields(view)]
    want = [item.attr for item in declared]
    if have != want:
        raise TypeError(f"{view.__name__} has fields {have}; the schema declares {want}")


_check_declared(Policy, schema.POLICY)
_check_declared(Settings, schema.SETTINGS)


@dataclass(frozen=True)
class Resolved:
    settings: Settings
    policy: Policy


def resolve(
    documents: Iterable[tuple[str, Any]],
    admin_access: bool = False,
    defaults: Settings | None = None,
    installation: Policy | None = None,
) -> Resolved:
    """Merge (source, parameters) pairs in order and check the result against policy.

    ``defaults`` are the component's own defaults, used where no config sets a field.
    ``installation`` is the installation's policy (the chart's ``policy`` values): it
    applies whatever DeviceClass a claim names, and a class's policy can only narrow it,
    so a class made without our config, or by another admin, fails closed.
    """
    settings = defaults or Settings()
    policy = installation or Policy()
    claim_set: set[str] = set()
    for source, parameters in documents:
        document = parse_document(parameters, source)
        settings = replace(settings, **document.settings)
        policy = narrow(policy, document.policy)
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
    for item in schema.POLICY:
        value = getattr(policy, item.attr)
        if (
            isinstance(item.kind, schema.Integer)
            and value is not None
            and not (item.kind.minimum <= value <= item.kind.maximum)
        ):
            raise fail(item.name, f"must be {rule(item.kind)}, got {value}")
    default, cap = policy.default_lifetime_seconds, policy.max_lifetime_seconds
    if default is not None and cap is not None and default > cap:
        raise fail("defaultLifetimeSeconds", f"{default} is above maxLifetimeSeconds {cap}")


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
    if "lifetime_seconds" not in claim_set:
        lifetime = settings.lifetime_seconds or policy.default_lifetime_seconds
        cap = policy.max_lifetime_seconds
        updates["lifetime_seconds"] = min(lifetime or cap, cap) if cap else lifetime
    if (
        "generate_name" not in claim_set
        and policy.allowed_name_prefixes
        and not settings.generate_name.startswith(policy.allowed_name_prefixes)
    ):
        updates["generate_name"] = policy.allowed_name_prefixes[0]
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

    if admin_access:
        # Why a namespace device has no admin access: docs/security.md, "Admin access".
        raise fail(
            "",
            "the request uses adminAccess, which this driver does not support: a namespace "
            "slot has no read-only view to share, and a namespace of its own would escape the "
            "pool's limit (docs/security.md, 'Admin access'); remove adminAccess from the claim",
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
    lifetime, longest = settings.lifetime_seconds, policy.max_lifetime_seconds
    if lifetime is not None and not MIN_LIFETIME_SECONDS <= lifetime <= (
        longest or MAX_LIFETIME_SECONDS
    ):
        raise fail(
            "lifetimeSeconds",
            f"{lifetime} is outside the allowed range {MIN_LIFETIME_SECONDS}.."
            f"{longest or MAX_LIFETIME_SECONDS}"
            + (" (policy.maxLifetimeSeconds)" if longest else ""),
        )
    if policy.allowed_name_prefixes and not any(
        settings.generate_name.startswith(prefix) for prefix in policy.allowed_name_prefixes
    ):
        raise fail(
            "generateName",
            f"{settings.generate_name!r} must start with one of "
            f"{', '.join(policy.allowed_name_prefixes)}",
        )
    if settings.template is not None and settings.template not in policy.allowed_templates:
        allowed = ", ".join(policy.allowed_templates)
        raise fail(
            "template",
            f"{settings.template!r} is not allowed; "
            + (f"choose one of {allowed}" if allowed else "the policy allows no template")
            + " (policy.allowedTemplates)",
        )
    for name, cap in policy.max_quota.items():
        requested = settings.quota.get(name)
        if requested is None:
            raise fail(f"quota.{name}", f"is required by policy and must be at most {cap}")
        if parse_quantity(requested) > parse_quantity(cap):
            raise fail(f"quota.{name}", f"{requested} exceeds the policy maximum {cap}")


def _level(level: str) -> int:
    return POD_SECURITY_LEVELS.index(level)


def load_policy(data: Any) -> Policy:
    """The installation's policy from the ``policy`` section of the chart's values.

    Unlike a DeviceClass's policy it may widen the built-in defaults (it is the
    admin's own choice); everything else about it is checked as strictly.
    """
    document = parse_document(
        {"apiVersion": CONFIG_API_VERSION, "kind": CONFIG_KIND, schema.POLICY_FIELD: data or {}},
        SOURCE_CLASS,
    )
    policy = replace(Policy(), **document.policy)
    _check_policy_consistent(policy)
    return policy


def load_policy_file(path: str) -> Policy:
    """:func:`load_policy` from a YAML file (the chart mounts its ``policy`` values);
    the built-in defaults when ``path`` is empty. Raises ValueError naming the problem."""
    if not path:
        return Policy()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read the policy file {path}: {exc}") from None
    try:
        return load_policy(data)
    except ConfigError as exc:
        raise ValueError(f"{path}: {exc}") from None


def narrow(base: Policy, requested: Mapping[str, Any]) -> Policy:
    """``base`` tightened by a DeviceClass's policy fields (attribute -> parsed value).

    Each field becomes the stricter of the two, so a class can never allow what the
    installation does not; a class that leaves nothing allowed is an error naming it.
    """

    def fail(path: str, message: str) -> ConfigError:
        return ConfigError(f"policy.{path}", message, SOURCE_CLASS)

    # Values that could never be valid are reported, not narrowed away.
    _check_policy_consistent(replace(Policy(), **requested))
    updates: dict[str, Any] = {}
    for attr, value in requested.items():
        current = getattr(base, attr)
        match attr:
            case "allowed_roles" | "allowed_network_policies":
                kept = tuple(v for v in value if v in current)
                if not kept:
                    name = "allowedRoles" if attr == "allowed_roles" else "allowedNetworkPolicies"
                    raise fail(
                        name,
                        f"allows none of {', '.join(current)} (the installation's policy)",
                    )
                updates[attr] = kept
            case "allowed_name_prefixes":
                if not current:
                    updates[attr] = tuple(value)
                elif value:
                    kept = tuple(v for v in value if any(v.startswith(c) for c in current))
                    if not kept:
                        raise fail(
                            "allowedNamePrefixes",
                            f"none starts with {', '.join(current)} (the installation's policy)",
                        )
                    updates[attr] = kept
            case "min_pod_security":
                updates[attr] = max(current, value, key=_level)
            case "max_quota":
                merged = dict(current)
                for name, cap in value.items():
                    if name not in merged or parse_quantity(cap) < parse_quantity(merged[name]):
                        merged[name] = cap
                updates[attr] = merged
            case "min_token_expiration_seconds":
                updates[attr] = max(current, value)
            case "max_token_expiration_seconds" | "max_devices_per_claim":
                updates[attr] = min(current, value)
            case "max_lifetime_seconds" | "default_lifetime_seconds":
                # Unset is no limit: any value is stricter.
                updates[attr] = value if current is None else min(current, value)
            case "allow_nested_claims":
                updates[attr] = current and value
            case "allowed_templates":
                # Nothing left is fine: a class may allow no template at all.
                updates[attr] = tuple(v for v in value if v in current)
            case _:
                raise AssertionError(f"no narrowing rule for policy field {attr}")
    narrowed = replace(base, **updates)
    cap = narrowed.max_lifetime_seconds
    if cap is not None and (narrowed.default_lifetime_seconds or 0) > cap:
        return replace(narrowed, default_lifetime_seconds=cap)  # a class lowered the cap
    return narrowed

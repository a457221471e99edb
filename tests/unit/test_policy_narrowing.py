"""The installation's policy applies to every claim, and a DeviceClass can only narrow it.

A DeviceClass made by another admin (or the chart's with ``deviceClass.create=false``)
must not hand out what the chart's ``policy`` values forbid: policy fails closed.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from space_dra.config import (
    SOURCE_CLAIM,
    SOURCE_CLASS,
    ConfigError,
    Policy,
    load_policy,
    narrow,
    resolve,
)
from space_dra.quantity import parse_quantity
from space_dra.schema import POD_SECURITY_LEVELS
from tests.support.claims import namespace_config as doc

STRICT = load_policy(
    {
        "allowedRoles": ["edit", "view"],
        "minPodSecurity": "restricted",
        "maxQuota": {"pods": "10"},
        "maxTokenExpirationSeconds": 3600,
        "allowedNamePrefixes": ["team-"],
        "allowedNetworkPolicies": ["deny-all"],
        "maxDevicesPerClaim": 2,
        "allowedTemplates": ["team-defaults", "ci-defaults"],
    }
)


def klass(**policy: Any) -> tuple[str, dict[str, Any]]:
    return (SOURCE_CLASS, doc(policy=policy))


def claim(**fields: Any) -> tuple[str, dict[str, Any]]:
    return (SOURCE_CLAIM, doc(**fields))


def test_a_class_without_our_config_gets_the_installation_policy() -> None:
    resolved = resolve([], installation=STRICT)
    assert resolved.policy == STRICT
    assert resolved.settings.role == "edit"  # the built-in default (admin) is not allowed
    assert resolved.settings.pod_security == "restricted"
    assert resolved.settings.network_policy == "deny-all"
    assert resolved.settings.quota == {"pods": "10"}
    with pytest.raises(ConfigError, match="role"):
        resolve([claim(role="admin")], installation=STRICT)


def test_a_class_cannot_widen_any_field() -> None:
    widening = klass(
        allowedRoles=["admin", "edit", "cluster-admin"],
        minPodSecurity="privileged",
        maxQuota={"pods": "1000"},
        maxTokenExpirationSeconds=86400,
        allowedNamePrefixes=["team-a-", "other-"],
        allowedNetworkPolicies=["none", "deny-all"],
        maxDevicesPerClaim=32,
        allowNestedClaims=True,
        allowedTemplates=["ci-defaults", "kube-system"],
    )
    policy = resolve([widening], installation=STRICT).policy
    assert policy.allowed_roles == ("edit",)
    assert policy.min_pod_security == "restricted"
    assert policy.max_quota == {"pods": "10"}
    assert policy.max_token_expiration_seconds == 3600
    assert policy.allowed_name_prefixes == ("team-a-",)
    assert policy.allowed_network_policies == ("deny-all",)
    assert policy.max_devices_per_claim == 2
    assert not policy.allow_nested_claims
    assert policy.allowed_templates == ("ci-defaults",)
    for request in (
        claim(template="kube-system"),
        claim(template="team-defaults"),
        claim(role="admin"),
        claim(podSecurity="baseline"),
        claim(quota={"pods": "11"}),
        claim(tokenExpirationSeconds=7200),
        claim(generateName="other-"),
        claim(networkPolicy="none"),
    ):
        with pytest.raises(ConfigError):
            resolve([widening, request], installation=STRICT)
    with pytest.raises(ConfigError, match="adminAccess"):
        resolve([widening], admin_access=True, installation=STRICT)


def test_templates_are_the_intersection_and_a_class_may_allow_none() -> None:
    assert resolve([], installation=STRICT).policy.allowed_templates == (
        "team-defaults",
        "ci-defaults",
    )
    chosen = resolve(
        [klass(allowedTemplates=["ci-defaults"]), claim(template="ci-defaults")],
        installation=STRICT,
    )
    assert chosen.settings.template == "ci-defaults"
    assert chosen.policy.allowed_templates == ("ci-defaults",)
    # A class that allows none of the installation's is not an error: it allows no template.
    nothing = resolve([klass(allowedTemplates=["elsewhere"])], installation=STRICT)
    assert nothing.policy.allowed_templates == ()
    with pytest.raises(ConfigError) as caught:
        resolve(
            [klass(allowedTemplates=["elsewhere"]), claim(template="elsewhere")],
            installation=STRICT,
        )
    assert caught.value.path == "template"
    assert "allows no template" in str(caught.value)
    assert "policy.allowedTemplates" in str(caught.value)
    # The built-in policy allows none: an installation must name its templates.
    with pytest.raises(ConfigError, match="template"):
        resolve([claim(template="team-defaults")])


def test_a_class_may_narrow_further() -> None:
    policy = resolve(
        [klass(allowedRoles=["view"], maxQuota={"pods": "5", "requests.cpu": "1"})],
        installation=STRICT,
    ).policy
    assert policy.allowed_roles == ("view",)
    assert policy.max_quota == {"pods": "5", "requests.cpu": "1"}


@pytest.mark.parametrize(
    ("class_policy", "field"),
    [
        ({"allowedRoles": ["admin"]}, "policy.allowedRoles"),
        ({"allowedNetworkPolicies": ["none"]}, "policy.allowedNetworkPolicies"),
        ({"allowedNamePrefixes": ["other-"]}, "policy.allowedNamePrefixes"),
        ({"minTokenExpirationSeconds": 7200}, "policy.minTokenExpirationSeconds"),
    ],
)
def test_a_class_that_leaves_nothing_allowed_is_refused_naming_the_field(
    class_policy: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve([klass(**class_policy)], installation=STRICT)
    assert caught.value.path == field
    assert "DeviceClass" in str(caught.value)


def test_the_installation_policy_is_parsed_strictly() -> None:
    assert load_policy(None) == Policy()
    with pytest.raises(ConfigError, match=r"policy\.allowAdminAccess: removed"):
        load_policy({"allowAdminAccess": False})
    with pytest.raises(ConfigError, match=r"policy\.surprise"):
        load_policy({"surprise": 1})
    with pytest.raises(ConfigError, match="maxDevicesPerClaim"):
        load_policy({"maxDevicesPerClaim": 0})


LEVELS = st.sampled_from(POD_SECURITY_LEVELS)
ROLES = st.lists(st.sampled_from(["admin", "edit", "view", "x"]), min_size=1, unique=True)
POLICIES = st.fixed_dictionaries(
    {},
    optional={
        "allowedRoles": ROLES,
        "minPodSecurity": LEVELS,
        "maxQuota": st.dictionaries(
            st.sampled_from(["pods", "requests.cpu"]), st.sampled_from(["1", "5", "10"])
        ),
        "minTokenExpirationSeconds": st.sampled_from([600, 1800]),
        "maxTokenExpirationSeconds": st.sampled_from([3600, 86400]),
        "maxDevicesPerClaim": st.integers(1, 32),
        "maxLifetimeSeconds": st.sampled_from([60, 3600]),
        "defaultLifetimeSeconds": st.sampled_from([30, 600, 7200]),
        "allowNestedClaims": st.booleans(),
        "allowedTemplates": st.lists(st.sampled_from(["a", "b", "c"]), unique=True),
    },
)


@settings(max_examples=200, deadline=None)
@given(installation=POLICIES, requested=POLICIES)
def test_narrowing_never_allows_more_than_the_installation(
    installation: dict[str, Any], requested: dict[str, Any]
) -> None:
    try:
        base = load_policy(installation)
    except ConfigError:
        return  # an installation default above its own cap is refused at start
    try:
        policy = resolve([klass(**requested)], installation=base).policy
    except ConfigError:
        return  # refusing is always within the installation's policy
    assert set(policy.allowed_roles) <= set(base.allowed_roles)
    level = POD_SECURITY_LEVELS.index
    assert level(policy.min_pod_security) >= level(base.min_pod_security)
    for name, cap in base.max_quota.items():
        assert parse_quantity(policy.max_quota[name]) <= parse_quantity(cap)
    assert policy.min_token_expiration_seconds >= base.min_token_expiration_seconds
    assert policy.max_token_expiration_seconds <= base.max_token_expiration_seconds
    assert policy.max_devices_per_claim <= base.max_devices_per_claim
    if base.max_lifetime_seconds is not None:
        assert policy.max_lifetime_seconds is not None
        assert policy.max_lifetime_seconds <= base.max_lifetime_seconds
    if policy.max_lifetime_seconds is not None and policy.default_lifetime_seconds is not None:
        assert policy.default_lifetime_seconds <= policy.max_lifetime_seconds
    assert policy.allow_nested_claims <= base.allow_nested_claims
    assert set(policy.allowed_templates) <= set(base.allowed_templates)
    assert narrow(policy, {}) == policy

"""NamespaceConfig parsing, merging and policy checks (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest

from space_dra.config import (
    SOURCE_CLAIM,
    SOURCE_CLASS,
    ConfigError,
    Policy,
    Settings,
    parse_document,
    resolve,
)
from tests.support.claims import namespace_config as doc


def claim(**fields: Any) -> tuple[str, dict[str, Any]]:
    return SOURCE_CLAIM, doc(**fields)


def klass(**fields: Any) -> tuple[str, dict[str, Any]]:
    return SOURCE_CLASS, doc(**fields)


def test_defaults_without_any_config() -> None:
    resolved = resolve([])
    assert resolved.settings == Settings()
    assert resolved.settings.generate_name == "ephemeral-ns-"
    assert resolved.settings.role == "admin"
    assert resolved.policy == Policy()


def test_claim_overrides_class_defaults_field_by_field() -> None:
    resolved = resolve(
        [klass(role="view", podSecurity="restricted", generateName="team-"), claim(role="edit")]
    )
    assert resolved.settings.role == "edit"
    assert resolved.settings.pod_security == "restricted"
    assert resolved.settings.generate_name == "team-"


def test_class_policy_defaults_fill_what_the_claim_leaves_open() -> None:
    policy = {"allowedRoles": ["view"], "minPodSecurity": "restricted", "maxQuota": {"pods": "10"}}
    resolved = resolve([klass(policy=policy)])
    assert resolved.settings.role == "view"
    assert resolved.settings.pod_security == "restricted"
    assert resolved.settings.quota == {"pods": "10"}


@pytest.mark.parametrize(
    ("documents", "path", "words"),
    [
        ([claim(colour="blue")], "colour", "unknown field"),
        ([claim(role=3)], "role", "must be a string"),
        ([claim(tokenExpirationSeconds=True)], "tokenExpirationSeconds", "must be an integer"),
        ([claim(tokenExpirationSeconds="3600")], "tokenExpirationSeconds", "must be an integer"),
        ([claim(podSecurity="lax")], "podSecurity", "must be one of"),
        ([claim(quota={"pods": "ten"})], "quota.pods", "is not a quantity"),
        ([claim(quota={"pods": "-1"})], "quota.pods", "must not be negative"),
        ([claim(quota=["pods"])], "quota", "must be a map"),
        ([claim(generateName="Upper-")], "generateName", "is not allowed"),
        ([claim(generateName="kube-x-")], "generateName", "reserved prefix"),
        ([claim(generateName="a" * 59)], "generateName", "1 to 58 characters"),
        ([claim(mountPath="/etc/../root")], "mountPath", "normalized"),
        ([claim(mountPath="/etc")], "mountPath", "two levels deep"),
        ([claim(mountPath="/proc/x")], "mountPath", "reserved path"),
        ([claim(mountPath="relative/x")], "mountPath", "normalized absolute"),
        ([claim(envPrefix="1BAD")], "envPrefix", "is not allowed"),
        ([claim(policy={"allowedRoles": ["cluster-admin"]})], "policy", "only a DeviceClass"),
        ([klass(policy={"allowedRoles": "admin"})], "policy.allowedRoles", "must be a list"),
        ([klass(policy={"surprise": 1})], "policy.surprise", "unknown field"),
        ([klass(policy={"allowedRoles": []})], "policy.allowedRoles", "at least one"),
        (
            [klass(policy={"minTokenExpirationSeconds": 60})],
            "policy.minTokenExpirationSeconds",
            "600 <= min",
        ),
        ([klass(policy={"allowedRoles": ["view"]}), claim(role="admin")], "role", "is not allowed"),
        (
            [klass(policy={"minPodSecurity": "restricted"}), claim(podSecurity="baseline")],
            "podSecurity",
            "below",
        ),
        (
            [
                klass(policy={"maxQuota": {"requests.cpu": "2"}}),
                claim(quota={"requests.cpu": "2500m"}),
            ],
            "quota.requests.cpu",
            "exceeds",
        ),
        (
            [klass(policy={"maxQuota": {"pods": "5"}}), claim(quota={"configmaps": "1"})],
            "quota.pods",
            "required by policy",
        ),
        (
            [claim(tokenExpirationSeconds=10 * 86400)],
            "tokenExpirationSeconds",
            "outside the allowed range",
        ),
        (
            [klass(policy={"allowedNamePrefixes": ["ci-"]}), claim(generateName="mine-")],
            "generateName",
            "must start with",
        ),
        (
            [klass(policy={"allowedNetworkPolicies": ["deny-all"]}), claim(networkPolicy="none")],
            "networkPolicy",
            "not allowed",
        ),
        ([claim(template="team-defaults")], "template", "policy.allowedTemplates"),
    ],
)
def test_rejections_name_the_field_and_what_to_change(
    documents: list[tuple[str, Any]], path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(documents)
    assert caught.value.path == path
    assert words in str(caught.value)
    assert path in str(caught.value)


def test_quota_within_policy_compares_quantities_not_strings() -> None:
    policy = {"maxQuota": {"requests.memory": "1Gi", "requests.cpu": "2"}}
    resolved = resolve(
        [klass(policy=policy), claim(quota={"requests.memory": "512Mi", "requests.cpu": "1500m"})]
    )
    assert resolved.settings.quota == {"requests.memory": "512Mi", "requests.cpu": "1500m"}


def test_wrong_kind_or_version_is_rejected() -> None:
    with pytest.raises(ConfigError, match="apiVersion/kind must be"):
        parse_document({"apiVersion": "v1", "kind": "ConfigMap"}, SOURCE_CLAIM)
    with pytest.raises(ConfigError, match="must be an object"):
        parse_document("role: admin", SOURCE_CLAIM)


def test_admin_access_is_always_refused() -> None:
    """docs/security.md, 'Admin access': a namespace device has no meaning for it."""
    with pytest.raises(ConfigError) as caught:
        resolve([klass(), claim()], admin_access=True)
    assert "adminAccess" in str(caught.value) and "does not support" in str(caught.value)
    assert "from the claim" in str(caught.value)
    # The policy field that used to allow it names why it went.
    with pytest.raises(ConfigError) as caught:
        resolve([klass(policy={"allowAdminAccess": True})])
    assert caught.value.path == "policy.allowAdminAccess"
    assert "removed" in str(caught.value) and "refuses adminAccess" in str(caught.value)


def test_token_lifetime_defaults_are_clamped_into_policy_bounds() -> None:
    bounds = {"minTokenExpirationSeconds": 7200, "maxTokenExpirationSeconds": 9000}
    assert resolve([klass(policy=bounds)]).settings.token_expiration_seconds == 7200
    component_default = Settings(token_expiration_seconds=600)
    assert (
        resolve(
            [klass(policy=bounds)], defaults=component_default
        ).settings.token_expiration_seconds
        == 7200
    )


def test_error_message_says_where_the_config_came_from() -> None:
    with pytest.raises(ConfigError, match=r"NamespaceConfig \(from the claim\): role"):
        resolve([claim(role=1)])
    with pytest.raises(
        ConfigError, match=r"NamespaceConfig \(from the DeviceClass\): policy.allowedRoles"
    ):
        resolve([klass(policy={"allowedRoles": 1})])


@pytest.mark.parametrize(
    ("limit_range", "path"),
    [
        ({"min": {"cpu": "2"}, "max": {"cpu": "1"}}, "limitRange.min.cpu"),
        ({"default": {"memory": "2Gi"}, "max": {"memory": "1Gi"}}, "limitRange.default.memory"),
        (
            {"defaultRequest": {"cpu": "1"}, "default": {"cpu": "500m"}},
            "limitRange.defaultRequest.cpu",
        ),
        # default is filled from max, so a defaultRequest above max is refused too.
        ({"defaultRequest": {"cpu": "2"}, "max": {"cpu": "1"}}, "limitRange.defaultRequest.cpu"),
    ],
)
def test_limit_range_out_of_order_is_rejected_like_the_api_server_would(
    limit_range: dict[str, dict[str, str]], path: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve([claim(limitRange=limit_range)])
    assert caught.value.path == path
    assert "min ≤ defaultRequest ≤ default ≤ max" in str(caught.value)


def test_limit_range_in_order_is_accepted_with_quantities_compared_by_value() -> None:
    limit_range = {
        "min": {"cpu": "100m", "memory": "64Mi"},
        "defaultRequest": {"cpu": "0.25"},
        "default": {"cpu": "500m", "memory": "1Gi"},
        "max": {"cpu": "1", "memory": "1Gi"},
    }
    assert resolve([claim(limitRange=limit_range)]).settings.limit_range == limit_range


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        # A pattern matches the whole string: Python's $ also matched before a final newline.
        ({"role": "admin\n"}, "role"),
        ({"envPrefix": "WORK\n"}, "envPrefix"),
        ({"generateName": "team-\n"}, "generateName"),
        ({"quota": {"pods": "5\n"}}, "quota.pods"),
        # The API server knows ASCII digits only.
        ({"quota": {"pods": "\u0663"}}, "quota.pods"),
        # A segment starting with ".." was always refused; admission now agrees.
        ({"mountPath": "/etc/..data"}, "mountPath"),
    ],
)
def test_values_the_api_server_would_refuse_are_refused_here(
    fields: dict[str, Any], path: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_document(doc(**fields), SOURCE_CLAIM)
    assert caught.value.path == path


def test_an_empty_policy_list_is_refused_while_parsing() -> None:
    with pytest.raises(ConfigError, match="at least one entry") as caught:
        parse_document(doc(policy={"allowedNetworkPolicies": []}), SOURCE_CLASS)
    assert caught.value.path == "policy.allowedNetworkPolicies"

"""NamespaceConfig parsing never crashes: always a usable config or a clear, named error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from space_dra.config import SOURCE_CLAIM, SOURCE_CLASS, ConfigError, resolve
from space_dra.contract import CONFIG_API_VERSION, CONFIG_KIND
from tests.badinput.conftest import TALLY

pytestmark = pytest.mark.badinput

FIELDS = [
    "generateName",
    "role",
    "podSecurity",
    "quota",
    "limitRange",
    "networkPolicy",
    "tokenExpirationSeconds",
    "lifetimeSeconds",
    "envPrefix",
    "mountPath",
    "policy",
]
POLICY_FIELDS = [
    "allowedRoles",
    "minPodSecurity",
    "maxQuota",
    "minTokenExpirationSeconds",
    "maxTokenExpirationSeconds",
    "allowedNamePrefixes",
    "allowedNetworkPolicies",
    "maxLifetimeSeconds",
    "defaultLifetimeSeconds",
    "allowNestedClaims",
    # Removed; still refused with its reason.
    "allowAdminAccess",
]
hostile_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "../../etc",
            "/proc/self",
            "admin",
            "cluster-admin",
            "kube-",
            "\x00",
            "a" * 300,
            "ünïcødé-",
            "restricted",
            "deny-all",
            "2Gi",
            "-1",
            "1e308",
            "/etc/x/../..",
            "$(id)",
        ]
    ),
)
json_value: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), hostile_text),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)


# Plausible values, so that a fair share of documents gets past parsing and
# exercises the policy checks too.
VALID: dict[str, st.SearchStrategy[Any]] = {
    "generateName": st.sampled_from(["ephemeral-ns-", "team-", "ci-run-", "x"]),
    "role": st.sampled_from(["admin", "edit", "view", "cluster-admin"]),
    "podSecurity": st.sampled_from(["privileged", "baseline", "restricted"]),
    "quota": st.dictionaries(
        st.sampled_from(["pods", "requests.cpu", "requests.memory"]),
        st.sampled_from(["1", "10", "500m", "2Gi", "100"]),
        max_size=3,
    ),
    "limitRange": st.fixed_dictionaries({"default": st.just({"cpu": "500m"})}),
    "networkPolicy": st.sampled_from(["none", "deny-ingress", "deny-all"]),
    "tokenExpirationSeconds": st.integers(0, 10 * 86400),
    "lifetimeSeconds": st.integers(0, 400 * 86400),
    "envPrefix": st.sampled_from(["WORK", "_X", "A1"]),
    "mountPath": st.sampled_from(["/etc/space", "/var/run/x", "/work/a/b"]),
}
VALID_POLICY: dict[str, st.SearchStrategy[Any]] = {
    "allowedRoles": st.lists(st.sampled_from(["admin", "edit", "view"]), min_size=1, max_size=3),
    "minPodSecurity": st.sampled_from(["privileged", "baseline", "restricted"]),
    "maxQuota": st.dictionaries(
        st.sampled_from(["pods", "requests.cpu"]), st.sampled_from(["5", "1", "2"]), max_size=2
    ),
    "minTokenExpirationSeconds": st.integers(600, 3600),
    "maxTokenExpirationSeconds": st.integers(3600, 86400),
    "allowedNamePrefixes": st.lists(st.sampled_from(["ephemeral-", "team-"]), max_size=2),
    "allowedNetworkPolicies": st.lists(
        st.sampled_from(["none", "deny-ingress", "deny-all"]), min_size=1, max_size=3
    ),
    "maxLifetimeSeconds": st.integers(0, 400 * 86400),
    "defaultLifetimeSeconds": st.integers(0, 400 * 86400),
    "allowNestedClaims": st.booleans(),
    "allowAdminAccess": st.booleans(),
}


def value_for(table: dict[str, st.SearchStrategy[Any]], name: str) -> st.SearchStrategy[Any]:
    valid = table.get(name)
    return st.one_of(valid, valid, valid, json_value) if valid is not None else json_value


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": CONFIG_API_VERSION, "kind": CONFIG_KIND}
    if draw(st.integers(0, 9)) == 0:
        doc["kind"] = draw(hostile_text)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=5, unique=True)):
        if name == "policy":
            keys = draw(
                st.lists(st.sampled_from([*POLICY_FIELDS, "bogus"]), max_size=4, unique=True)
            )
            doc["policy"] = {key: draw(value_for(VALID_POLICY, key)) for key in keys}
        else:
            doc[name] = draw(value_for(VALID, name))
    if draw(st.integers(0, 4)) == 0:
        doc[draw(hostile_text)] = draw(json_value)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(class_doc=documents(), claim_doc=documents(), admin_access=st.booleans())
def test_parser_never_crashes_and_errors_name_a_field(
    class_doc: dict[str, Any], claim_doc: dict[str, Any], admin_access: bool
) -> None:
    TALLY["config documents tried"] += 2
    try:
        resolved = resolve([(SOURCE_CLASS, class_doc), (SOURCE_CLAIM, claim_doc)], admin_access)
    except ConfigError as exc:
        TALLY["config documents rejected (clear error)"] += 1
        text = str(exc)
        assert text.startswith("NamespaceConfig")
        assert len(text) < 2000
        assert (
            exc.path or "apiVersion/kind" in text or "adminAccess" in text or "parameters" in text
        )
        return
    TALLY["config document pairs accepted"] += 1
    settings_ = resolved.settings
    assert settings_.role in resolved.policy.allowed_roles
    assert 600 <= settings_.token_expiration_seconds <= 7 * 86400
    cap = resolved.policy.max_lifetime_seconds
    if settings_.lifetime_seconds is not None:
        assert 10 <= settings_.lifetime_seconds <= (cap or 366 * 86400)
    else:
        assert cap is None
    assert not settings_.generate_name.startswith("kube-")
    if settings_.mount_path:
        assert ".." not in settings_.mount_path.split("/")
    assert not admin_access, "adminAccess is always refused"


@settings(max_examples=200, deadline=None)
@given(parameters=json_value)
def test_any_json_as_parameters_is_handled(parameters: Any) -> None:
    TALLY["raw parameters tried"] += 1
    with pytest.raises(ConfigError):
        resolve([(SOURCE_CLAIM, parameters)])
    TALLY["raw parameters rejected"] += 1

"""The chart refuses bad values by name and renders what the schema says (needs only helm).

Skipped when no helm binary is found (``$SPACE_DRA_HELM``, the local cluster's build in
``~/.cache/space-dra``, or PATH); the cluster suite runs the same cases with the cluster's
helm, so CI always runs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import releases
from space_dra import schema_cel
from space_dra.config import SOURCE_CLASS, Policy, Settings, resolve
from space_dra.contract import DEFAULT_DRIVER_NAME
from tests.support.chartvalues import BAD_VALUES, GOOD_VALUES
from tests.support.helmrender import KUBE_VERSION, helm, needs_helm, render, the
from tests.support.hostdriver import CHART

pytestmark = needs_helm


@pytest.mark.parametrize("values", list(GOOD_VALUES), ids=list(GOOD_VALUES))
def test_lint_strict_passes(values: str) -> None:
    result = helm("lint", "--strict", str(CHART), *KUBE_VERSION, *GOOD_VALUES[values])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("args", "where", "words"), BAD_VALUES, ids=[" ".join(case[0][1:]) for case in BAD_VALUES]
)
def test_lint_and_install_refuse_a_bad_value_naming_it(
    args: list[str], where: str, words: str
) -> None:
    linted = helm("lint", "--strict", str(CHART), *KUBE_VERSION, *args)
    assert linted.returncode != 0
    assert where in linted.stdout, linted.stdout
    assert words in linted.stdout, linted.stdout
    # `helm template` validates exactly as `helm install` and `helm upgrade` do.
    rendered = helm("template", "x", str(CHART), *KUBE_VERSION, *args)
    assert rendered.returncode != 0
    assert where in rendered.stderr, rendered.stderr
    assert words in rendered.stderr, rendered.stderr


def test_device_class_carries_the_schema_defaults() -> None:
    device_class = the(render(), "DeviceClass")
    [config] = device_class["spec"]["config"]
    parameters = config["opaque"]["parameters"]
    assert resolve([(SOURCE_CLASS, parameters)]).settings == Settings()
    assert resolve([(SOURCE_CLASS, parameters)]).policy == Policy()


def test_device_class_carries_set_values_with_their_types() -> None:
    device_class = the(render(*GOOD_VALUES["tuned"]), "DeviceClass")
    parameters = device_class["spec"]["config"][0]["opaque"]["parameters"]
    resolved = resolve([(SOURCE_CLASS, parameters)])
    assert resolved.policy.max_quota == {"pods": "10"}
    assert resolved.settings.quota == {"pods": "5"}


def test_rendered_admission_policy_is_the_generated_one() -> None:
    """tests/unit/test_admission_cel.py runs schema_cel's checks; these are what ships."""
    policy = the(render(), "ValidatingAdmissionPolicy", "-namespace-config")["spec"]
    assert policy["variables"] == [
        {"name": v.name, "expression": v.expression}
        for v in schema_cel.variables(DEFAULT_DRIVER_NAME)
    ]
    assert policy["validations"] == [
        {"expression": v.expression, "message": v.message, "reason": v.reason}
        for v in schema_cel.validations(DEFAULT_DRIVER_NAME)
    ]


def test_chart_directory_is_the_one_the_generator_writes() -> None:
    assert (CHART / "values.schema.json").is_file()
    assert Path(CHART, "templates", "_namespaceconfig.tpl").is_file()


def test_rendering_twice_gives_the_same_manifests_and_no_key() -> None:
    """The ownership key is not rendered: helm template, --dry-run or a GitOps tool must not
    rotate it (which would make every existing namespace unverifiable, never collected)."""
    first, second = render(), render()
    assert first == second
    assert not [doc for doc in first if doc["kind"] == "Secret"]


def test_tenancy_policies_name_the_release_identities() -> None:
    docs = render()
    policies = {
        doc["metadata"]["name"]: yaml.safe_dump(doc["spec"])
        for doc in docs
        if doc["kind"] == "ValidatingAdmissionPolicy"
    }
    assert {
        "schema-space-dra-tokens",
        "schema-space-dra-managed-objects",
        "schema-space-dra-claim-shape",
    } <= set(policies)
    assert (
        "system:serviceaccount:space-dra:schema-space-dra-kubelet-plugin"
        in policies["schema-space-dra-tokens"]
    )
    scope = policies["schema-space-dra-controller-scope"]
    assert "system:serviceaccount:space-dra:schema-space-dra-controller" in scope
    bindings = {
        doc["spec"]["policyName"]
        for doc in docs
        if doc["kind"] == "ValidatingAdmissionPolicyBinding"
    }
    assert set(policies) == bindings


def extended_resource_name(*args: str, kube_version: str = releases.DEFAULT) -> str | None:
    device_class = the(render(*args, kube_version=kube_version), "DeviceClass")
    name: str | None = device_class["spec"].get("extendedResourceName")
    return name


@pytest.mark.parametrize(
    ("release", "named"),
    [(release, int(release.split(".")[1]) >= 36) for release in releases.SUPPORTED],
)
def test_auto_names_the_extended_resource_where_the_cluster_has_the_feature(
    release: str, named: bool
) -> None:
    """DRAExtendedResource: alpha and off in 1.34 and 1.35, beta and on in 1.36, GA in 1.37."""
    expected = f"{DEFAULT_DRIVER_NAME}/namespace" if named else None
    assert extended_resource_name(kube_version=release) == expected


def test_the_extended_resource_follows_the_driver_name_and_can_be_chosen_or_left_off() -> None:
    assert extended_resource_name("--set", "driverName=dra.example.org") == (
        "dra.example.org/namespace"
    )
    chosen = ("--set", "deviceClass.extendedResourceName=example.com/workspace")
    assert extended_resource_name(*chosen) == "example.com/workspace"
    # Set as asked even where the API server would drop it (the admin's explicit choice).
    assert extended_resource_name(*chosen, kube_version="1.35.4") == "example.com/workspace"
    assert extended_resource_name("--set", "deviceClass.extendedResourceName=") is None


def test_the_claim_shape_policy_knows_every_name_a_pod_can_ask_by() -> None:
    def names(*args: str, kube_version: str = releases.DEFAULT) -> list[str]:
        policy = the(
            render(*args, kube_version=kube_version), "ValidatingAdmissionPolicy", "-shape"
        )
        [variable] = [v for v in policy["spec"]["variables"] if v["name"] == "resourceNames"]
        found: list[str] = json.loads(variable["expression"])
        return found

    implicit = f"deviceclass.resource.kubernetes.io/{DEFAULT_DRIVER_NAME}"
    assert names() == [f"{DEFAULT_DRIVER_NAME}/namespace", implicit]
    # The implicit name exists wherever the feature is on, even with no name of our own.
    assert names("--set", "deviceClass.extendedResourceName=") == [implicit]
    assert names(kube_version="1.35.4") == [implicit]
    assert names("--set", "deviceClass.name=small") == [
        f"{DEFAULT_DRIVER_NAME}/namespace",
        "deviceclass.resource.kubernetes.io/small",
    ]


def rules_on_secrets(role: dict[str, Any]) -> list[set[str]]:
    return [
        set(rule["verbs"])
        for rule in role.get("rules", [])
        if "" in rule.get("apiGroups", []) and "secrets" in rule.get("resources", [])
    ]


def test_the_controller_reads_secrets_only_in_the_template_namespaces() -> None:
    args = ("--set-json", 'policy.allowedTemplates=["team-defaults","ci-defaults"]')
    docs = render(*args)
    readers = {
        doc["metadata"]["namespace"]: doc
        for doc in docs
        if doc["kind"] == "Role" and doc["metadata"]["name"].endswith("-template-reader")
    }
    assert set(readers) == {"team-defaults", "ci-defaults"}
    for role in readers.values():
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["list"]}
        ]
    bindings = [
        doc
        for doc in docs
        if doc["kind"] == "RoleBinding" and doc["metadata"]["name"].endswith("-template-reader")
    ]
    assert {b["metadata"]["namespace"] for b in bindings} == set(readers)
    for binding in bindings:
        assert binding["roleRef"]["name"] == readers["ci-defaults"]["metadata"]["name"]
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "schema-space-dra-controller",
                "namespace": "space-dra",
            }
        ]
    # Cluster-wide, the controller may only create ConfigMaps and Secrets (the copies).
    for cluster_role in (doc for doc in docs if doc["kind"] == "ClusterRole"):
        for verbs in rules_on_secrets(cluster_role):
            assert verbs == {"create"}, cluster_role["metadata"]["name"]
    # No template allowed: no reader anywhere.
    assert not [doc for doc in render() if doc["metadata"]["name"].endswith("-template-reader")]


def test_copies_are_protected_like_everything_the_controller_puts_in_a_namespace() -> None:
    policy = the(render(), "ValidatingAdmissionPolicy", "-managed-objects")["spec"]
    core = [r for r in policy["matchConstraints"]["resourceRules"] if r["apiGroups"] == [""]]
    assert [set(r["resources"]) >= {"configmaps", "secrets"} for r in core] == [True]
    assert set(core[0]["operations"]) == {"CREATE", "UPDATE", "DELETE"}

"""The chart refuses bad values by name and renders what the schema says (needs only helm).

Skipped when no helm binary is found (``$SPACE_DRA_HELM``, the local cluster's build in
``~/.cache/space-dra``, or PATH); the cluster suite runs the same cases with the cluster's
helm, so CI always runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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

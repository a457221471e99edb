"""The chart's claim-shape admission policy, as rendered, judging pods by the API server's code.

A pod that asks for the DeviceClass's extended resource gets a claim the scheduler
generates, so the policy that caps and refuses claims must judge such pods too: nested
namespaces, and more devices than ``policy.maxDevicesPerClaim``. ``tests/vapcheck`` (Go,
k8s.io/apiserver) compiles the rendered CEL as the API server does and evaluates it with
the pod's namespace as ``namespaceObject``. The policy runs on every pod the cluster
creates and fails closed, so pods that do not ask for a namespace must pass, whatever
they hold. Skipped without helm or the Go toolchain.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from space_dra.contract import DEFAULT_DRIVER_NAME, ManagementLabels
from tests.support.gotools import REPO, build
from tests.support.helmrender import needs_helm, render, the

pytestmark = [needs_helm, pytest.mark.timeout(1500)]

NAME = f"{DEFAULT_DRIVER_NAME}/namespace"
IMPLICIT = f"deviceclass.resource.kubernetes.io/{DEFAULT_DRIVER_NAME}"
LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)
MANAGED = {"metadata": {"name": "ephemeral-ns-abcde", "labels": LABELS.managed}}
PLAIN = {"metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}}}

Case = tuple[dict[str, Any], dict[str, Any] | None]
Judge = Callable[[list[Case]], list[list[str]]]


@pytest.fixture(scope="module")
def vapcheck() -> Any:
    if shutil.which("go") is None:
        pytest.skip("the Go toolchain is needed to build tests/vapcheck")
    return build(REPO / "tests" / "vapcheck", "vapcheck")


def judge_with(vapcheck: Any, *helm_args: str) -> Judge:
    policy = the(render(*helm_args), "ValidatingAdmissionPolicy", "-claim-shape")["spec"]

    def judge(cases: list[Case]) -> list[list[str]]:
        spec = {
            "variables": policy["variables"],
            "validations": policy["validations"],
            "objects": [obj for obj, _ in cases],
            "namespaces": [namespace for _, namespace in cases],
        }
        result = subprocess.run(
            [str(vapcheck)], input=json.dumps(spec), capture_output=True, text=True, check=True
        )
        output = json.loads(result.stdout)
        assert output["compileErrors"] == []
        return [r["denied"] for r in output["results"]]

    return judge


@pytest.fixture(scope="module")
def judge(vapcheck: Any) -> Judge:
    return judge_with(vapcheck)


def container(name: str, limits: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "image": "busybox", **extra}
    if limits is not None:
        # As the API server stores it: requests defaulted from limits.
        spec["resources"] = {"limits": limits, "requests": dict(limits)}
    return spec


def pod(
    namespace: dict[str, Any],
    containers: list[dict[str, Any]],
    init: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": containers}
    if init is not None:
        spec["initContainers"] = init
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": namespace["metadata"]["name"]},
        "spec": spec,
    }


def denials(judge: Judge, *cases: Case) -> list[list[str]]:
    return judge(list(cases))


def test_pods_that_ask_for_no_namespace_pass_whatever_they_hold(judge: Judge) -> None:
    other = {"cpu": "500m", "memory": "1Gi", "example.com/gpu": "8"}
    assert (
        denials(
            judge,
            (pod(PLAIN, [container("a")]), PLAIN),
            (pod(MANAGED, [container("a")]), MANAGED),
            (pod(MANAGED, [container("a", other)]), MANAGED),
            (
                pod(MANAGED, [container("a", {"cpu": "1"})], [container("i", {"memory": "1"})]),
                MANAGED,
            ),
            # A fraction of the implicit name gets no device from the scheduler.
            (pod(MANAGED, [container("a", {IMPLICIT: "500m"})]), MANAGED),
            # No namespace object (a pod always has one): nothing fails either.
            (pod(PLAIN, [container("a", {NAME: "1"})]), None),
        )
        == [[]] * 6
    )


def test_a_pod_in_a_provisioned_namespace_cannot_ask_for_another(judge: Judge) -> None:
    sidecar = container("s", {NAME: "1"}, restartPolicy="Always")
    results = denials(
        judge,
        (pod(MANAGED, [container("a", {NAME: "1"})]), MANAGED),
        (pod(MANAGED, [container("a", {IMPLICIT: "1"})]), MANAGED),
        (pod(MANAGED, [container("a")], init=[sidecar]), MANAGED),
        (pod(MANAGED, [container("a")], init=[container("i", {NAME: "1"})]), MANAGED),
        (pod(PLAIN, [container("a", {NAME: "1"})], init=[sidecar]), PLAIN),
    )
    for denied in results[:4]:
        assert len(denied) == 1, denied
        assert "cannot ask for another namespace" in denied[0]
        assert f"({NAME}, {IMPLICIT})" in denied[0]
        assert "policy.allowNestedClaims" in denied[0]
    assert results[4] == [], "the same pod in a tenant's namespace is fine"


def test_a_pod_may_ask_for_at_most_max_devices_per_claim(judge: Judge) -> None:
    def asking(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None) -> Any:
        return (pod(PLAIN, list(containers), init), PLAIN)

    results = denials(
        judge,
        asking(container("a", {NAME: "4"})),
        asking(container("a", {NAME: "5"})),
        asking(container("a", {NAME: "2"}), container("b", {IMPLICIT: "2"})),
        asking(container("a", {NAME: "3"}), container("b", {NAME: "2"})),
        # Both names in one container add up.
        asking(container("a", {NAME: "3", IMPLICIT: "2"})),
        # Sidecars add up; plain init containers count their largest.
        asking(
            container("a", {NAME: "3"}), init=[container("s", {NAME: "2"}, restartPolicy="Always")]
        ),
        asking(
            container("a", {NAME: "2"}),
            init=[container("i", {NAME: "2"}), container("j", {NAME: "1"})],
        ),
        asking(container("a", {NAME: "2"}), init=[container("i", {NAME: "3"})]),
        # Only limits (as a client may send before defaulting) count the same.
        (pod(PLAIN, [{"name": "a", "image": "b", "resources": {"limits": {NAME: "9"}}}]), PLAIN),
    )
    allowed = [0, 2, 6]
    for index, denied in enumerate(results):
        if index in allowed:
            assert denied == [], (index, denied)
        else:
            assert len(denied) == 1, (index, denied)
            assert "a pod may ask for at most 4 namespace devices" in denied[0]
            assert "(policy.maxDevicesPerClaim)" in denied[0]
    assert "this one asks for 5" in results[1][0]
    assert "this one asks for 9" in results[8][0]


def test_the_policy_values_decide(vapcheck: Any) -> None:
    judge = judge_with(
        vapcheck,
        *("--set", "policy.allowNestedClaims=true", "--set", "policy.maxDevicesPerClaim=8"),
    )
    nested, eight, nine = denials(
        judge,
        (pod(MANAGED, [container("a", {NAME: "1"})]), MANAGED),
        (pod(PLAIN, [container("a", {NAME: "8"})]), PLAIN),
        (pod(PLAIN, [container("a", {NAME: "9"})]), PLAIN),
    )
    assert nested == [] and eight == []
    assert len(nine) == 1 and "at most 8" in nine[0]


def test_claims_are_judged_as_before(judge: Judge) -> None:
    def claim(namespace: dict[str, Any], device_class: str, count: int) -> dict[str, Any]:
        request = {"deviceClassName": device_class, "allocationMode": "ExactCount", "count": count}
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": "c", "namespace": namespace["metadata"]["name"]},
            "spec": {"devices": {"requests": [{"name": "r", "exactly": request}]}},
        }

    ours, foreign, too_many, nested = denials(
        judge,
        (claim(PLAIN, DEFAULT_DRIVER_NAME, 1), PLAIN),
        (claim(MANAGED, "gpu.example.com", 9), MANAGED),
        (claim(PLAIN, DEFAULT_DRIVER_NAME, 5), PLAIN),
        (claim(MANAGED, DEFAULT_DRIVER_NAME, 1), MANAGED),
    )
    assert ours == [] and foreign == []
    assert len(too_many) == 1 and "a claim may ask for at most 4" in too_many[0]
    assert len(nested) == 1 and "cannot claim another namespace" in nested[0]


def test_admin_access_is_refused_for_our_class_only(judge: Judge) -> None:
    """docs/security.md, "Admin access"; the controller refuses it for any class too."""

    def claim(device_class: str, admin: bool, template: bool = False) -> dict[str, Any]:
        request = {"deviceClassName": device_class, "adminAccess": admin}
        spec = {"devices": {"requests": [{"name": "r", "exactly": request}]}}
        kind = "ResourceClaimTemplate" if template else "ResourceClaim"
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": "c", "namespace": "team-a"},
            "spec": {"spec": spec} if template else spec,
        }

    ours, in_template, plain, foreign = denials(
        judge,
        (claim(DEFAULT_DRIVER_NAME, True), PLAIN),
        (claim(DEFAULT_DRIVER_NAME, True, template=True), PLAIN),
        (claim(DEFAULT_DRIVER_NAME, False), PLAIN),
        (claim("gpu.example.com", True), PLAIN),
    )
    assert len(ours) == 1 and "adminAccess is not supported" in ours[0]
    assert in_template == ours
    assert plain == [] and foreign == []

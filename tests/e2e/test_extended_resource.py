"""A namespace asked for like any other resource: ``<driver>/namespace: 1`` in a pod's limits.

Kubernetes 1.36 (DRAExtendedResource beta) and 1.37 (GA): the chart's DeviceClass names
the extended resource, the scheduler generates a claim for a pod that asks for it, and
the pod gets its own namespace with the fixed names ``SPACE_*`` and ``/etc/space``; the
namespace goes with the pod. Before 1.36 the chart leaves the field out (tested too).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from localcluster import ClusterHandle, releases
from space_dra.contract import (
    DEFAULT_DRIVER_NAME,
    EXTENDED_RESOURCE_CLAIM_ANNOTATION,
    ManagementLabels,
)
from tests.support.chart import ChartRelease
from tests.support.workloads import (
    exec_in,
    managed_namespaces,
    namespace_state,
    wait_claim_ready,
    wait_namespace_released,
)

pytestmark = pytest.mark.e2e

RESOURCE = f"{DEFAULT_DRIVER_NAME}/namespace"
LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)


def has_the_feature(cluster: ClusterHandle) -> bool:
    """DRAExtendedResource is on by default from 1.36 (beta) and locked on in 1.37 (GA)."""
    return releases.resolve(cluster.kubernetes_version).minor >= 36


@pytest.fixture
def feature(local_cluster: ClusterHandle) -> None:
    if not has_the_feature(local_cluster):
        pytest.skip(
            f"Kubernetes {local_cluster.kubernetes_version} has no DRAExtendedResource by "
            "default (alpha before 1.36): the chart leaves extendedResourceName off"
        )


def extended_pod(namespace: str, name: str, image: str, count: int = 1) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [
                    {
                        "name": "ctr",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"],
                        "resources": {"limits": {RESOURCE: str(count)}},
                    }
                ],
            },
        }
    )


def generated_claim(cluster: ClusterHandle, namespace: str, pod: str) -> str:
    """The name of the claim the scheduler made for ``pod`` (in its status)."""
    found: dict[str, Any] = cluster.kubectl_json("get", "pod", pod, "-n", namespace)
    status = found["status"].get("extendedResourceClaimStatus") or {}
    name: str = status.get("resourceClaimName", "")
    assert name, f"pod {namespace}/{pod} has no extendedResourceClaimStatus: {found['status']}"
    return name


def printenv(cluster: ClusterHandle, namespace: str, pod: str) -> dict[str, str]:
    out = exec_in(cluster, namespace, pod, "printenv")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_the_device_class_names_the_resource_exactly_where_the_cluster_has_it(
    local_cluster: ClusterHandle, chart: ChartRelease
) -> None:
    device_class = local_cluster.kubectl_json("get", "deviceclass", DEFAULT_DRIVER_NAME)
    named = device_class["spec"].get("extendedResourceName")
    assert named == (RESOURCE if has_the_feature(local_cluster) else None)


def test_a_plain_pod_with_the_limit_gets_its_own_namespace_which_goes_with_it(
    local_cluster: ClusterHandle, chart: ChartRelease, workspace: str, feature: None
) -> None:
    local_cluster.apply(extended_pod(workspace, "solo", local_cluster.testbox_image))
    local_cluster.wait_pod_ready(workspace, "solo", timeout=150)
    claim = generated_claim(local_cluster, workspace, "solo")
    assert claim.startswith("solo-extended-resources-")
    stored = local_cluster.kubectl_json("get", "resourceclaim", claim, "-n", workspace)
    assert stored["metadata"]["annotations"][EXTENDED_RESOURCE_CLAIM_ANNOTATION] == "true"
    [namespace] = wait_claim_ready(local_cluster, workspace, claim)

    env = printenv(local_cluster, workspace, "solo")
    assert env["SPACE_NAMESPACE"] == namespace
    assert env["SPACE_CLUSTER"] == "https://kubernetes.default.svc"
    assert env["SPACE_KUBECONFIG"] == "/etc/space/kubeconfig"
    assert not [key for key in env if key.startswith("SOLO_")], env
    assert exec_in(local_cluster, workspace, "solo", "cat /etc/space/namespace") == namespace
    # The kubeconfig works, in its namespace only.
    kubectl = "KUBECONFIG=$SPACE_KUBECONFIG kubectl"
    exec_in(
        local_cluster, workspace, "solo", f"{kubectl} create configmap probe --from-literal=k=v"
    )
    assert "probe" in exec_in(local_cluster, workspace, "solo", f"{kubectl} get configmaps")
    denied = local_cluster.kubectl_result(
        "exec", "-n", workspace, "solo", "--", "sh", "-c", f"{kubectl} get pods -n {workspace} 2>&1"
    )
    assert denied.returncode != 0 and "forbidden" in denied.stdout.lower(), denied.stdout

    local_cluster.kubectl("delete", "pod", "solo", "-n", workspace, "--wait=true", timeout=120)
    wait_namespace_released(local_cluster, namespace, timeout=90)
    local_cluster.wait_for(
        "namespace gone", lambda: namespace_state(local_cluster, namespace) == "gone", 120
    )
    local_cluster.wait_for(
        "generated claim gone",
        lambda: (
            local_cluster.kubectl_result("get", "resourceclaim", claim, "-n", workspace).returncode
            != 0
        ),
        60,
    )


def test_two_namespaces_for_one_pod_are_numbered(
    local_cluster: ClusterHandle, chart: ChartRelease, workspace: str, feature: None
) -> None:
    local_cluster.apply(extended_pod(workspace, "pair", local_cluster.testbox_image, count=2))
    local_cluster.wait_pod_ready(workspace, "pair", timeout=150)
    claim = generated_claim(local_cluster, workspace, "pair")
    namespaces = wait_claim_ready(local_cluster, workspace, claim)
    assert len(set(namespaces)) == 2
    env = printenv(local_cluster, workspace, "pair")
    assert [env["SPACE_0_NAMESPACE"], env["SPACE_1_NAMESPACE"]] == namespaces
    assert env["SPACE_1_KUBECONFIG"] == "/etc/space-1/kubeconfig"
    assert "SPACE_NAMESPACE" not in env


def test_admission_refuses_a_pod_asking_from_inside_a_provisioned_namespace_or_too_many(
    local_cluster: ClusterHandle, chart: ChartRelease, workspace: str, feature: None
) -> None:
    too_many = local_cluster.kubectl_result(
        "apply", "-f", "-", input=extended_pod(workspace, "greedy", "busybox", count=5)
    )
    assert too_many.returncode != 0
    assert "(policy.maxDevicesPerClaim)" in too_many.stderr, too_many.stderr

    local_cluster.apply(extended_pod(workspace, "parent", local_cluster.testbox_image))
    local_cluster.wait_pod_ready(workspace, "parent", timeout=150)
    [inner] = wait_claim_ready(
        local_cluster, workspace, generated_claim(local_cluster, workspace, "parent")
    )
    assert inner in {ns["metadata"]["name"] for ns in managed_namespaces(local_cluster)}
    nested = local_cluster.kubectl_result(
        "apply", "-f", "-", input=extended_pod(inner, "child", "busybox")
    )
    assert nested.returncode != 0
    assert "(policy.allowNestedClaims)" in nested.stderr, nested.stderr

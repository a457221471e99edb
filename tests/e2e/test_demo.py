"""The user-visible contract, end to end: chart-installed driver, real pods, real credentials."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from localcluster import ClusterHandle
from space_dra.contract import DEFAULT_DRIVER_NAME
from tests.support.chart import ChartRelease
from tests.support.workloads import (
    claim_json,
    claim_manifest,
    exec_in,
    namespace_state,
    pod_manifest,
    wait_claim_ready,
    wait_namespace_released,
)

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[2] / "demo"


def printenv(cluster: ClusterHandle, namespace: str, pod: str) -> dict[str, str]:
    out = exec_in(cluster, namespace, pod, "printenv")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_demo_two_pods_share_one_fresh_namespace(
    local_cluster: ClusterHandle, chart: ChartRelease
) -> None:
    manifest = (DEMO / "namespace-test.yaml").read_text()
    local_cluster.apply(manifest)
    try:
        for pod in ("pod0", "pod1"):
            local_cluster.wait_pod_ready("namespace-test", pod, timeout=120)
        env0 = printenv(local_cluster, "namespace-test", "pod0")
        env1 = printenv(local_cluster, "namespace-test", "pod1")
        namespace = env0["TEST_CLAIM_NAMESPACE"]
        assert namespace.startswith("ephemeral-ns-")
        assert env1["TEST_CLAIM_NAMESPACE"] == namespace
        for env in (env0, env1):
            assert env["DRA_RESOURCE_DRIVER_NAME"] == DEFAULT_DRIVER_NAME
            assert env["TEST_CLAIM_CLUSTER"] == "https://kubernetes.default.svc"
            assert env["TEST_CLAIM_KUBECONFIG"] == "/etc/test-claim/kubeconfig"
        assert namespace_state(local_cluster, namespace) == "Active"
        kubeconfig = exec_in(local_cluster, "namespace-test", "pod0", "cat $TEST_CLAIM_KUBECONFIG")
        assert 'server: "https://kubernetes.default.svc"' in kubeconfig
        assert f'namespace: "{namespace}"' in kubeconfig
        assert 'tokenFile: "/etc/test-claim/token"' in kubeconfig
        same = exec_in(local_cluster, "namespace-test", "pod1", "cat /etc/test-claim/namespace")
        assert same == namespace
    finally:
        started = time.monotonic()
        local_cluster.kubectl("delete", "-f", "-", "--wait=true", input=manifest, timeout=180)
    wait_namespace_released(local_cluster, namespace, timeout=60)
    local_cluster.wait_for(
        "namespace gone", lambda: namespace_state(local_cluster, namespace) == "gone", 120
    )
    gone_after = time.monotonic() - started
    print(f"ephemeral namespace gone {gone_after:.1f}s after deleting demo/namespace-test.yaml")


def test_kubeconfig_works_in_its_namespace_and_nowhere_else(
    local_cluster: ClusterHandle, chart: ChartRelease, workspace: str
) -> None:
    local_cluster.apply(claim_manifest(workspace, "space"))
    local_cluster.apply(
        pod_manifest(workspace, "client", local_cluster.testbox_image, claim="space")
    )
    local_cluster.wait_pod_ready(workspace, "client", timeout=120)
    [namespace] = wait_claim_ready(local_cluster, workspace, "space")

    def kubectl_in_pod(args: str) -> tuple[int, str]:
        res = local_cluster.kubectl_result(
            "exec",
            "-n",
            workspace,
            "client",
            "--",
            "sh",
            "-c",
            f"KUBECONFIG=$SPACE_KUBECONFIG kubectl {args} 2>&1",
        )
        return res.returncode, res.stdout

    allowed = [
        "create configmap probe --from-literal=k=v",
        "get configmaps",
        "run probe-pod --image="
        + local_cluster.testbox_image
        + " --image-pull-policy=Never --restart=Never -- true",
        "get pods",
        "auth can-i create deployments.apps",
    ]
    for args in allowed:
        code, out = kubectl_in_pod(args)
        assert code == 0, f"kubectl {args}: {out}"
    assert "probe-pod" in kubectl_in_pod("get pods")[1]
    denied = [
        f"get pods -n {workspace}",
        "get secrets -n kube-system",
        "get configmaps -n default",
        "get nodes",
        "get namespaces",
        f"delete namespace {namespace}",
        "get clusterroles",
        "create clusterrolebinding x --clusterrole=cluster-admin --serviceaccount=default:default",
    ]
    for args in denied:
        code, out = kubectl_in_pod(args)
        assert code != 0 and "forbidden" in out.lower(), f"kubectl {args} was allowed: {out}"


def test_template_gives_each_pod_its_own_namespace(
    local_cluster: ClusterHandle, chart: ChartRelease
) -> None:
    manifest = (DEMO / "namespace-per-pod.yaml").read_text()
    local_cluster.apply(manifest)
    try:
        local_cluster.wait_for(
            "two worker pods ready",
            lambda: _ready_pods(local_cluster, "namespace-per-pod") == 2,
            timeout=150,
        )
        pods = local_cluster.kubectl_json("get", "pods", "-n", "namespace-per-pod")["items"]
        namespaces = {
            printenv(local_cluster, "namespace-per-pod", p["metadata"]["name"])[
                "WORKSPACE_NAMESPACE"
            ]
            for p in pods
        }
        assert len(namespaces) == 2
    finally:
        local_cluster.kubectl("delete", "-f", "-", "--wait=true", input=manifest, timeout=180)
    for namespace in namespaces:
        wait_namespace_released(local_cluster, namespace, timeout=60)


def test_pool_exhaustion_is_pending_with_a_reason_and_recovers(
    local_cluster: ClusterHandle, chart: ChartRelease, workspace: str
) -> None:
    image = local_cluster.testbox_image
    for i in range(4):
        local_cluster.apply(claim_manifest(workspace, f"c{i}"))
        local_cluster.apply(pod_manifest(workspace, f"p{i}", image, claim=f"c{i}"))
    for i in range(4):
        local_cluster.wait_pod_ready(workspace, f"p{i}", timeout=150)
    local_cluster.apply(claim_manifest(workspace, "fifth"))
    local_cluster.apply(pod_manifest(workspace, "waiting", image, claim="fifth"))

    def reason() -> str:
        pod = local_cluster.kubectl_json("get", "pod", "waiting", "-n", workspace)
        for condition in pod["status"].get("conditions", []):
            if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return str(condition.get("message", ""))
        return ""

    local_cluster.wait_for("fifth pod unschedulable", lambda: bool(reason()), timeout=60)
    assert "resourceclaim" in reason().lower() or "claim" in reason().lower()
    local_cluster.kubectl("delete", "pod", "p0", "-n", workspace, "--wait=true")
    local_cluster.kubectl("delete", "resourceclaim", "c0", "-n", workspace, "--wait=true")
    local_cluster.wait_pod_ready(workspace, "waiting", timeout=150)


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ({"role": "admin", "colour": "blue"}, "unknown field"),
        ({"podSecurity": "lax"}, "podSecurity must be one of"),
        ({"policy": {"allowedRoles": ["cluster-admin"]}}, "may only be set in a DeviceClass"),
        ({"tokenExpirationSeconds": 60}, "tokenExpirationSeconds must be an integer from 600"),
        ({"mountPath": "/proc/self"}, "mountPath must be a normalized absolute path"),
    ],
)
def test_invalid_config_is_rejected_at_admission(
    local_cluster: ClusterHandle,
    chart: ChartRelease,
    workspace: str,
    parameters: dict[str, object],
    words: str,
) -> None:
    config = {
        "apiVersion": "space.resource.example.com/v1alpha1",
        "kind": "NamespaceConfig",
        **parameters,
    }
    result = local_cluster.kubectl_result(
        "apply", "-f", "-", input=claim_manifest(workspace, "bad", config=config)
    )
    assert result.returncode != 0
    assert words in result.stderr, result.stderr
    assert "ValidatingAdmissionPolicy" in result.stderr
    assert (
        local_cluster.kubectl_result("get", "resourceclaim", "bad", "-n", workspace).returncode != 0
    )


def test_claim_status_names_the_namespace(
    local_cluster: ClusterHandle, chart: ChartRelease, workspace: str
) -> None:
    local_cluster.apply(claim_manifest(workspace, "named"))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="named"))
    [namespace] = wait_claim_ready(local_cluster, workspace, "named")
    described = json.dumps(claim_json(local_cluster, workspace, "named")["status"])
    assert namespace in described
    assert "eyJ" not in described, "no token in claim status"


def _ready_pods(cluster: ClusterHandle, namespace: str) -> int:
    pods = cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    return sum(
        any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
        for p in pods
    )

"""One claim used on two nodes, and a template spread over nodes, with a plugin per node."""

from __future__ import annotations

import pytest

from localcluster import ClusterHandle
from localcluster.nodes import Node
from tests.support.chart import ChartRelease
from tests.support.nodes import node_state_of_claim, plugin_pod, pod_node
from tests.support.workloads import (
    claim_json,
    claim_manifest,
    exec_in,
    namespace_state,
    pod_manifest,
    template_manifest,
    wait_claim_ready,
    wait_namespace_released,
)

pytestmark = pytest.mark.multinode

ALL = {"cdi": True, "artifacts": True, "checkpoint": True}
NONE = {"cdi": False, "artifacts": False, "checkpoint": False}


def printenv(cluster: ClusterHandle, namespace: str, pod: str) -> dict[str, str]:
    out = exec_in(cluster, namespace, pod, "printenv")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def plugin_log(cluster: ClusterHandle, chart: ChartRelease, node: str) -> str:
    pod = plugin_pod(cluster, chart.namespace, node)["metadata"]["name"]
    return cluster.kubectl("logs", "-n", chart.namespace, pod, "--tail=-1")


def kubectl_with_claim(
    cluster: ClusterHandle, namespace: str, pod: str, env: str, args: str
) -> str:
    return exec_in(cluster, namespace, pod, f"KUBECONFIG=${env} kubectl {args} 2>&1")


def test_one_claim_shared_by_pods_on_two_nodes(
    local_cluster: ClusterHandle, chart: ChartRelease, two_nodes: tuple[Node, Node], workspace: str
) -> None:
    first, second = two_nodes
    local_cluster.apply(claim_manifest(workspace, "shared"))
    image = local_cluster.testbox_image
    local_cluster.apply(pod_manifest(workspace, "a", image, claim="shared", node=first.name))
    local_cluster.apply(pod_manifest(workspace, "b", image, claim="shared", node=second.name))
    for pod in ("a", "b"):
        local_cluster.wait_pod_ready(workspace, pod, timeout=150)
    assert pod_node(local_cluster, workspace, "a") == first.name
    assert pod_node(local_cluster, workspace, "b") == second.name
    [namespace] = wait_claim_ready(local_cluster, workspace, "shared")
    uid = claim_json(local_cluster, workspace, "shared")["metadata"]["uid"]

    # Both containers see the same namespace, env and kubeconfig ...
    env_a, env_b = (printenv(local_cluster, workspace, p) for p in ("a", "b"))
    for key in ("SHARED_NAMESPACE", "SHARED_CLUSTER", "SHARED_KUBECONFIG"):
        assert env_a[key] == env_b[key], key
    assert env_a["SHARED_NAMESPACE"] == namespace
    kubeconfigs = {exec_in(local_cluster, workspace, p, "cat $SHARED_KUBECONFIG") for p in "ab"}
    assert len(kubeconfigs) == 1 and f'namespace: "{namespace}"' in kubeconfigs.pop()
    # ... and each node's own plugin prepared it: its files are on both nodes, in each node's
    # own directories, and each plugin logged the claim.
    for node in two_nodes:
        assert node_state_of_claim(node, uid) == ALL, node.name
        assert uid in plugin_log(local_cluster, chart, node.name), node.name
    out = kubectl_with_claim(
        local_cluster,
        workspace,
        "b",
        "SHARED_KUBECONFIG",
        "create configmap from-b --from-literal=k=v",
    )
    assert "created" in out
    assert "from-b" in kubectl_with_claim(
        local_cluster, workspace, "a", "SHARED_KUBECONFIG", "get cm"
    )

    # Unprepare on the second node leaves the first working.
    local_cluster.kubectl("delete", "pod", "b", "-n", workspace, "--wait=true")
    local_cluster.wait_for(
        f"claim unprepared on {second.name}",
        lambda: node_state_of_claim(second, uid) == NONE,
        timeout=60,
    )
    assert node_state_of_claim(first, uid) == ALL
    assert namespace_state(local_cluster, namespace) == "Active"
    out = kubectl_with_claim(
        local_cluster, workspace, "a", "SHARED_KUBECONFIG", "get cm from-b -o name"
    )
    assert out.strip() == "configmap/from-b"

    # The namespace goes with the last consumer (the claim is deallocated then).
    local_cluster.kubectl("delete", "pod", "a", "-n", workspace, "--wait=true")
    local_cluster.wait_for(
        f"claim unprepared on {first.name}",
        lambda: node_state_of_claim(first, uid) == NONE,
        timeout=60,
    )
    wait_namespace_released(local_cluster, namespace, timeout=60)


def test_template_spread_over_nodes_gives_each_pod_its_own_namespace(
    local_cluster: ClusterHandle, chart: ChartRelease, two_nodes: tuple[Node, Node], workspace: str
) -> None:
    local_cluster.apply(template_manifest(workspace, "per-pod"))
    image = local_cluster.testbox_image
    for i, node in enumerate(two_nodes):
        local_cluster.apply(
            pod_manifest(workspace, f"w{i}", image, template="per-pod", node=node.name)
        )
    claims: dict[str, tuple[str, str]] = {}
    for i, node in enumerate(two_nodes):
        pod = local_cluster.wait_pod_ready(workspace, f"w{i}", timeout=150)
        assert pod["spec"]["nodeName"] == node.name
        [status] = pod["status"]["resourceClaimStatuses"]
        claim = claim_json(local_cluster, workspace, status["resourceClaimName"])
        [namespace] = wait_claim_ready(local_cluster, workspace, status["resourceClaimName"])
        assert printenv(local_cluster, workspace, f"w{i}")["SPACE_NAMESPACE"] == namespace
        claims[node.name] = (claim["metadata"]["uid"], namespace)
    assert len({ns for _uid, ns in claims.values()}) == 2, "one namespace per pod"
    for node in two_nodes:
        uid = claims[node.name][0]
        other = next(n for n in two_nodes if n.name != node.name)
        # Each node's plugin serves its own pod's claim, and only that.
        assert node_state_of_claim(node, uid) == ALL
        assert node_state_of_claim(other, uid) == NONE
        log = plugin_log(local_cluster, chart, node.name)
        assert uid in log and claims[other.name][0] not in log
    for i in range(len(two_nodes)):
        local_cluster.kubectl("delete", "pod", f"w{i}", "-n", workspace, "--wait=true")
    for node in two_nodes:
        uid, namespace = claims[node.name]
        wait_namespace_released(local_cluster, namespace, timeout=90)
        _wait_clean(local_cluster, node, uid)


def _wait_clean(cluster: ClusterHandle, node: Node, uid: str) -> None:
    cluster.wait_for(f"{node.name} clean", lambda: node_state_of_claim(node, uid) == NONE, 60)

"""A node is lost while its pods hold a claim; it comes back and its driver state is reconciled.

Runs last in this package: it stops a node's kubelet, containers and containerd (as if the
machine died) and brings them back with ``up``.
"""

from __future__ import annotations

import pytest

from localcluster import ClusterHandle, LocalCluster
from localcluster.nodes import Node
from tests.support.chart import ChartRelease
from tests.support.nodes import checkpointed_claims, node_state_of_claim, plugin_pod
from tests.support.workloads import (
    claim_json,
    claim_manifest,
    exec_in,
    namespace_state,
    pod_manifest,
    wait_claim_ready,
    wait_namespace_released,
)

pytestmark = pytest.mark.multinode

NONE = {"cdi": False, "artifacts": False, "checkpoint": False}


def _node_ready(cluster: ClusterHandle, name: str) -> str:
    node = cluster.kubectl_json("get", "node", name)
    status: str = next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")
    return status


def test_lost_node_leaves_other_consumers_working_and_is_reconciled_when_back(
    local_cluster: ClusterHandle, chart: ChartRelease, two_nodes: tuple[Node, Node], workspace: str
) -> None:
    first, lost = two_nodes
    image = local_cluster.testbox_image
    local_cluster.apply(claim_manifest(workspace, "kept"))
    local_cluster.apply(pod_manifest(workspace, "stays", image, claim="kept", node=first.name))
    local_cluster.apply(pod_manifest(workspace, "lost", image, claim="kept", node=lost.name))
    for pod in ("stays", "lost"):
        local_cluster.wait_pod_ready(workspace, pod, timeout=150)
    [namespace] = wait_claim_ready(local_cluster, workspace, "kept")
    uid = claim_json(local_cluster, workspace, "kept")["metadata"]["uid"]
    assert all(node_state_of_claim(lost, uid).values())

    cluster = LocalCluster.default()
    try:
        cluster.stop_node(lost.name)
        local_cluster.wait_for(
            f"{lost.name} NotReady",
            lambda: _node_ready(local_cluster, lost.name) != "True",
            timeout=120,
        )
        # The pod on the lost node is gone for good (as an operator would do for a dead node).
        local_cluster.kubectl(
            "delete", "pod", "lost", "-n", workspace, "--force", "--grace-period=0"
        )
        # While the node is away its files stay (nobody is there to unprepare) ...
        assert all(node_state_of_claim(lost, uid).values())
        # ... and the claim's other consumer keeps working.
        out = exec_in(
            local_cluster, workspace, "stays", "KUBECONFIG=$KEPT_KUBECONFIG kubectl auth whoami"
        )
        assert "system:serviceaccount:" in out
        assert namespace_state(local_cluster, namespace) == "Active"
    finally:
        cluster.up()  # the node comes back with its disk as it was

    local_cluster.wait_for(
        f"{lost.name} Ready again", lambda: _node_ready(local_cluster, lost.name) == "True", 120
    )
    local_cluster.wait_for(
        f"the plugin on {lost.name} running again",
        lambda: bool(_plugin_or_none(local_cluster, chart, lost.name)),
        timeout=120,
    )
    # The kubelet unprepares the claim of the pod that vanished while it was away; the plugin
    # removes its CDI spec, credentials and checkpoint entry.
    local_cluster.wait_for(
        f"{lost.name} reconciled: no CDI spec, artifact or checkpoint entry of the claim",
        lambda: node_state_of_claim(lost, uid) == NONE,
        timeout=180,
    )
    assert uid not in checkpointed_claims(lost)
    # The returned node serves the claim again.
    local_cluster.apply(pod_manifest(workspace, "back", image, claim="kept", node=lost.name))
    local_cluster.wait_pod_ready(workspace, "back", timeout=150)
    assert exec_in(local_cluster, workspace, "back", "printenv KEPT_NAMESPACE").strip() == namespace
    for pod in ("stays", "back"):
        local_cluster.kubectl("delete", "pod", pod, "-n", workspace, "--wait=true")
    local_cluster.kubectl("delete", "resourceclaim", "kept", "-n", workspace, "--wait=true")
    wait_namespace_released(local_cluster, namespace, timeout=90)
    for node in two_nodes:
        _wait_clean(local_cluster, node, uid)


def _wait_clean(cluster: ClusterHandle, node: Node, uid: str) -> None:
    cluster.wait_for(f"{node.name} clean", lambda: node_state_of_claim(node, uid) == NONE, 60)


def _plugin_or_none(cluster: ClusterHandle, chart: ChartRelease, node: str) -> dict[str, object]:
    try:
        pod = plugin_pod(cluster, chart.namespace, node)
    except AssertionError:
        return {}
    statuses = pod["status"].get("containerStatuses", [])
    return pod if statuses and statuses[0].get("ready") else {}

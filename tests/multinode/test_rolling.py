"""The plugin DaemonSet rolls across the nodes while claims are in use."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from localcluster import ClusterHandle
from localcluster.nodes import Node
from tests.support.chart import ChartRelease
from tests.support.nodes import node_state_of_claim, plugin_pod
from tests.support.workloads import (
    claim_json,
    claim_manifest,
    exec_in,
    pod_manifest,
    wait_claim_ready,
)

pytestmark = pytest.mark.multinode


def _container(cluster: ClusterHandle, namespace: str, pod: str) -> dict[str, Any]:
    status: dict[str, Any] = cluster.kubectl_json("get", "pod", pod, "-n", namespace)["status"]
    [container] = status["containerStatuses"]
    return {
        "containerID": container["containerID"],
        "restartCount": container["restartCount"],
        "startedAt": container["state"]["running"]["startedAt"],
    }


def _start_pair(
    cluster: ClusterHandle, namespace: str, prefix: str, nodes: tuple[Node, ...]
) -> list[str]:
    """A claim and a pod using it on every node; returns the pod names."""
    names = []
    for i, node in enumerate(nodes):
        name = f"{prefix}{i}"
        cluster.apply(claim_manifest(namespace, name))
        cluster.apply(
            pod_manifest(namespace, name, cluster.testbox_image, claim=name, node=node.name)
        )
        names.append(name)
    return names


def _works(cluster: ClusterHandle, namespace: str, pod: str) -> None:
    env = pod.upper()
    out = exec_in(cluster, namespace, pod, f"KUBECONFIG=${env}_KUBECONFIG kubectl auth whoami 2>&1")
    assert "system:serviceaccount:" in out, out


def test_plugin_roll_keeps_running_pods_and_serves_new_ones(
    local_cluster: ClusterHandle, chart: ChartRelease, two_nodes: tuple[Node, Node], workspace: str
) -> None:
    before = _start_pair(local_cluster, workspace, "before", two_nodes)
    for pod in before:
        local_cluster.wait_pod_ready(workspace, pod, timeout=150)
        wait_claim_ready(local_cluster, workspace, pod)
    containers = {pod: _container(local_cluster, workspace, pod) for pod in before}
    old_plugins = {
        node.name: plugin_pod(local_cluster, chart.namespace, node.name)["metadata"]["uid"]
        for node in two_nodes
    }

    # A configuration change of the plugin pods: the DaemonSet rolls node by node.
    chart.values["podAnnotations.space-dra/rollout"] = uuid.uuid4().hex[:8]
    chart.install(wait=False)
    ds = local_cluster.kubectl_json(
        "get", "daemonset", chart.plugin_daemonset, "-n", chart.namespace
    )
    print(f"roll started: {ds['status']}")
    during = _start_pair(local_cluster, workspace, "during", two_nodes)
    for pod in during:
        local_cluster.wait_pod_ready(workspace, pod, timeout=180)
    local_cluster.kubectl(
        "rollout",
        "status",
        f"daemonset/{chart.plugin_daemonset}",
        "-n",
        chart.namespace,
        "--timeout=180s",
        timeout=200,
    )
    new_plugins = {
        node.name: plugin_pod(local_cluster, chart.namespace, node.name)["metadata"]["uid"]
        for node in two_nodes
    }
    assert all(new_plugins[n] != old_plugins[n] for n in old_plugins), "every node rolled"
    after = _start_pair(local_cluster, workspace, "after", two_nodes)
    for pod in after:
        local_cluster.wait_pod_ready(workspace, pod, timeout=150)

    # Running pods were not disturbed: same containers, no restart, credentials still work.
    for pod in before:
        assert _container(local_cluster, workspace, pod) == containers[pod]
    for pod in [*before, *during, *after]:
        _works(local_cluster, workspace, pod)
    for i, node in enumerate(two_nodes):
        for prefix in ("before", "during", "after"):
            uid = claim_json(local_cluster, workspace, f"{prefix}{i}")["metadata"]["uid"]
            assert all(node_state_of_claim(node, uid).values()), (node.name, prefix)

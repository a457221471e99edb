"""Pods on different nodes reach each other, cluster DNS and the API server, by plain routing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from localcluster import ClusterHandle, versions
from localcluster.nodes import Node

pytestmark = pytest.mark.multinode


def _pod(namespace: str, name: str, image: str, node: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": node},
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "imagePullPolicy": "Never",
                        # A tiny HTTP server answering with the pod's own name.
                        "command": [
                            "sh",
                            "-c",
                            f"mkdir -p /www && echo {name} > /www/index.html && "
                            "exec httpd -f -p 8080 -h /www",
                        ],
                    }
                ],
            },
        }
    )


@pytest.fixture
def pods(local_cluster: ClusterHandle, two_nodes: tuple[Node, Node]) -> Iterator[dict[str, str]]:
    """One HTTP pod per node: name -> pod IP."""
    namespace = local_cluster.create_namespace("net")
    try:
        ips: dict[str, str] = {"namespace": namespace}
        for i, node in enumerate(two_nodes):
            local_cluster.apply(_pod(namespace, f"web{i}", local_cluster.testbox_image, node.name))
        for i, node in enumerate(two_nodes):
            pod = local_cluster.wait_pod_ready(namespace, f"web{i}")
            assert pod["spec"]["nodeName"] == node.name
            ips[f"web{i}"] = pod["status"]["podIP"]
        yield ips
    finally:
        local_cluster.delete_namespace(namespace)


def _in(cluster: ClusterHandle, namespace: str, pod: str, script: str) -> str:
    return cluster.kubectl("exec", "-n", namespace, pod, "--", "sh", "-c", script)


def test_each_node_has_its_own_pod_cidr(
    local_cluster: ClusterHandle, two_nodes: tuple[Node, Node], pods: dict[str, str]
) -> None:
    import ipaddress

    for i, node in enumerate(two_nodes):
        assert ipaddress.ip_address(pods[f"web{i}"]) in ipaddress.ip_network(node.pod_cidr)
    assert two_nodes[0].pod_cidr != two_nodes[1].pod_cidr


def test_pods_on_different_nodes_reach_each_other(
    local_cluster: ClusterHandle, pods: dict[str, str]
) -> None:
    ns = pods["namespace"]
    assert (
        _in(local_cluster, ns, "web0", f"wget -qO- -T 5 http://{pods['web1']}:8080/").strip()
        == "web1"
    )
    assert (
        _in(local_cluster, ns, "web1", f"wget -qO- -T 5 http://{pods['web0']}:8080/").strip()
        == "web0"
    )


def test_service_on_another_node_through_dns(
    local_cluster: ClusterHandle, pods: dict[str, str]
) -> None:
    ns = pods["namespace"]
    local_cluster.kubectl(
        "expose", "pod", "web0", "-n", ns, "--port", "80", "--target-port", "8080"
    )
    url = f"http://web0.{ns}.svc.{versions.CLUSTER_DOMAIN}/"
    local_cluster.wait_for(
        "the service answers from the other node",
        lambda: (
            local_cluster.kubectl_result(
                "exec", "-n", ns, "web1", "--", "wget", "-qO-", "-T", "3", url
            ).stdout.strip()
            == "web0"
        ),
        timeout=30,
    )


def test_pod_on_a_further_node_reaches_the_api_server(
    local_cluster: ClusterHandle, pods: dict[str, str]
) -> None:
    ns = pods["namespace"]
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    out = _in(
        local_cluster,
        ns,
        "web1",
        "kubectl --server=https://kubernetes.default.svc"
        f" --certificate-authority={sa}/ca.crt --token=$(cat {sa}/token) auth whoami -o json",
    )
    assert (
        json.loads(out)["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:default"
    )


def test_logs_and_exec_reach_every_kubelet(
    local_cluster: ClusterHandle, pods: dict[str, str]
) -> None:
    ns = pods["namespace"]
    for pod in ("web0", "web1"):
        assert _in(local_cluster, ns, pod, "hostname").strip() == pod
        local_cluster.kubectl("logs", "-n", ns, pod)


def test_nodes_have_their_own_kubelet_directories(
    local_cluster: ClusterHandle, two_nodes: tuple[Node, Node]
) -> None:
    first, second = two_nodes
    assert first.host_path("/var/lib/kubelet") != second.host_path("/var/lib/kubelet")
    for node in two_nodes:
        # Each kubelet wrote its own pod state and device-manager checkpoints.
        assert (node.host_path("/var/lib/kubelet") / "pods").is_dir()
        assert (node.host_path("/var/lib/kubelet") / "plugins_registry").is_dir()

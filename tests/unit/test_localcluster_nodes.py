"""Node addressing and the translation of a node's paths to the machine (localcluster/nodes.py)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from localcluster import configs, releases
from localcluster.nodes import MAX_NODES, make_nodes

STATE = Path("/repo/.cluster")


def test_nodes_have_distinct_names_addresses_and_pod_cidrs() -> None:
    nodes = make_nodes("vm", 3, STATE)
    assert [n.name for n in nodes] == ["vm", "vm-2", "vm-3"]
    assert [n.ip for n in nodes] == ["10.89.0.1", "10.89.0.2", "10.89.0.3"]
    assert [n.pod_cidr for n in nodes] == ["10.88.0.0/24", "10.88.1.0/24", "10.88.2.0/24"]
    cluster = ipaddress.IPv4Network("10.88.0.0/16")
    assert all(ipaddress.IPv4Network(n.pod_cidr).subnet_of(cluster) for n in nodes)
    assert [n.bridge_ip for n in nodes] == ["10.88.0.1", "10.88.1.1", "10.88.2.1"]
    assert len({n.cgroup_root for n in nodes}) == 3
    assert all(n.cgroup_root.startswith("/space-dra/") for n in nodes)


def test_the_first_node_is_the_machine() -> None:
    first, second = make_nodes("vm", 2, STATE)
    assert first.netns is None and first.mount_ns is None and first.namespace_prefix() == []
    assert first.state == STATE and first.component("kubelet") == "kubelet"
    assert first.host_path("/var/lib/kubelet/plugins/x.sock") == Path(
        "/var/lib/kubelet/plugins/x.sock"
    )
    assert second.netns == "sdra-node2" and len(second.netns) <= 15  # also the veth's name
    assert second.component("kubelet") == "kubelet@vm-2"
    assert second.namespace_prefix()[0] == "/usr/bin/nsenter"


@pytest.mark.parametrize(
    ("inside", "outside"),
    [
        ("/var/lib/kubelet", "/repo/.cluster/nodes/vm-2/kubelet"),
        ("/var/lib/kubelet/plugins_registry", "/repo/.cluster/nodes/vm-2/kubelet/plugins_registry"),
        ("/var/run/cdi", "/repo/.cluster/nodes/vm-2/node-run/cdi"),
        ("/run/claim-artifacts/u", "/repo/.cluster/nodes/vm-2/node-run/claim-artifacts/u"),
        ("/etc/cdi", "/etc/cdi"),
        ("/var/lib/kubeletx", "/var/lib/kubeletx"),
        ("/var/runx", "/var/runx"),
    ],
)
def test_a_further_node_has_its_own_kubelet_root_and_run(inside: str, outside: str) -> None:
    node = make_nodes("vm", 2, STATE)[1]
    assert node.host_path(inside) == Path(outside)


def test_relative_paths_and_bad_counts_are_refused() -> None:
    node = make_nodes("vm", 1, STATE)[0]
    with pytest.raises(ValueError, match="absolute"):
        node.host_path("var/run/cdi")
    for count in (0, MAX_NODES + 1):
        with pytest.raises(ValueError, match="between 1 and"):
            make_nodes("vm", count, STATE)


def test_node_configs_use_the_node_addresses(tmp_path: Path) -> None:
    nodes = make_nodes("vm", 2, tmp_path)
    release = releases.Release(releases.DEFAULT)
    for node in nodes:
        kubelet = configs.kubelet_config(node, tmp_path / "pki", release).read_text()
        assert f"address: {node.ip}" in kubelet and f"cgroupRoot: {node.cgroup_root}" in kubelet
        assert "failCgroupV1: false" in kubelet
        cni = configs.cni_config(node).read_text()
        assert node.pod_cidr in cni and str(node.cni_data_dir) in cni
        proxy = configs.kube_proxy_config(node, tmp_path / "kp.kubeconfig").read_text()
        assert f"hostnameOverride: {node.name}" in proxy and f"{node.ip}/32" in proxy
    assert configs.kubelet_cert(nodes[0]) == "kubelet"
    assert configs.kubelet_cert(nodes[1]) == "kubelet-vm-2"

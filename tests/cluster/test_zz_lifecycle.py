"""``up`` twice is a no-op; ``down`` cleans the host; ``up`` after ``down`` works again.

It stops the cluster for a few seconds, so ``tests/conftest.py`` runs it after every other test of
the session. It leaves the cluster running, as the session fixture expects, even when it fails.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from localcluster import ClusterHandle, LocalCluster, hostnet, mounts, nodens
from localcluster.layout import CNI_BRIDGE, KUBELET_ROOT

pytestmark = pytest.mark.cluster


def _pids(cluster: LocalCluster) -> dict[str, int]:
    status = cluster.status()
    assert all(s.startswith("running") for s in status.values()), status
    return {name: int(s.split("pid ")[1].rstrip(")")) for name, s in status.items()}


def test_second_up_is_a_quick_no_op(local_cluster: ClusterHandle) -> None:
    cluster = LocalCluster.default()
    before = _pids(cluster)
    t0 = time.monotonic()
    cluster.up()
    elapsed = time.monotonic() - t0
    assert _pids(cluster) == before  # nothing restarted
    assert elapsed < 15, f"second up took {elapsed:.1f}s"


def test_down_cleans_up_and_up_works_again(local_cluster: ClusterHandle) -> None:
    cluster = LocalCluster.default()
    before = _pids(cluster)
    # What the host had before ``up``: down must undo our changes and leave the rest alone.
    host_before = hostnet.state_before_up(cluster.layout.host_state)
    cluster.down()
    try:
        _assert_host_clean(cluster, before, host_before)
    finally:
        # The rest of the session needs the cluster, even if the checks above failed.
        handle = _up_again(cluster)
    _assert_runs_pods(handle)


def _assert_host_clean(
    cluster: LocalCluster, before: dict[str, int], host_before: dict[str, object]
) -> None:
    status = cluster.status()
    assert all(s == "stopped" for s in status.values()), status
    for pid in before.values():
        assert not _alive(pid)
    assert mounts.mounts_under([KUBELET_ROOT, cluster.layout.state]) == []
    # An address that was on ``lo`` before ``up`` is not ours to remove.
    assert hostnet.node_ip_present() == (not host_before.get("node_ip_added")), host_before
    link = subprocess.run(["ip", "link", "show", CNI_BRIDGE], capture_output=True, check=False)
    assert link.returncode != 0
    # Further nodes: no network namespace, veth, route or mount namespace left.
    assert nodens.our_netns() == [] and nodens.our_veths() == []
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert "sdra-node" not in routes and "10.88." not in routes, routes
    if not host_before.get("kube_chains_before"):
        assert hostnet.kube_chains() == []


def _up_again(cluster: LocalCluster) -> ClusterHandle:
    t0 = time.monotonic()
    handle = cluster.up()
    warm_up = time.monotonic() - t0
    print(f"warm up after down: {warm_up:.1f}s")
    assert set(_pids(cluster)) == set(cluster.components(cluster.bins()))
    for name in handle.node_names:
        node = handle.kubectl_json("get", "node", name)
        conditions = node["status"]["conditions"]
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in conditions), name
    return handle


def _assert_runs_pods(handle: ClusterHandle) -> None:
    ns = handle.create_namespace("lifecycle")
    try:
        marker = uuid.uuid4().hex[:8]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "again", "namespace": ns},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": handle.testbox_image,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", f"echo {marker}; sleep 3600"],
                    }
                ],
            },
        }
        handle.apply(json.dumps(pod))
        handle.wait_pod_ready(ns, "again")
        assert marker in handle.kubectl("logs", "again", "-n", ns)
    finally:
        handle.delete_namespace(ns)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

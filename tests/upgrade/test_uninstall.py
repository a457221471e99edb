"""Uninstalling the driver as docs/uninstall.md says: claims first, then the chart; and the
namespaces left behind when claims were still there, removed with `space-dra cleanup`.

The doc's commands are run as written (each test checks that the doc still says them), from a
shell with kubectl, helm and the project's space-dra, for the release space-dra in the
namespace space-dra, the names the doc uses.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from localcluster import ClusterHandle
from space_dra.contract import DEFAULT_DRIVER_NAME
from tests.support.chart import ChartRelease
from tests.support.nodes import artifacts, cdi_specs, node_state_of_claim, registration_sockets
from tests.support.workloads import (
    LABELS,
    managed_namespaces,
    namespace_state,
    wait_namespace_released,
)
from tests.upgrade import consumers
from tests.upgrade.release import (
    OWNERSHIP_SECRET,
    RELEASE_NAMESPACE,
    documented,
    operator_shell,
)

pytestmark = pytest.mark.upgrade

DOC = "uninstall.md"
LIST_NAMESPACES = (
    "kubectl get namespaces -l "
    "'space.resource.example.com/managed-by=space-dra-controller,!space.resource.example.com/warm' "
    "\\\n"
    '  -o jsonpath=\'{range .items[*]}{.metadata.name}{"\\t"}'
    '{.metadata.annotations.space\\.resource\\.example\\.com/claim}{"\\n"}{end}\''
)
WAIT_NAMESPACES_GONE = (
    "kubectl wait --for=delete namespace -l "
    "'space.resource.example.com/managed-by=space-dra-controller,!space.resource.example.com/warm' "
    "--timeout=10m"
)
UNINSTALL = "helm uninstall -n space-dra space-dra --wait"
DELETE_RELEASE_NAMESPACE = "kubectl delete namespace space-dra"
CLEANUP_DRY_RUN = "space-dra cleanup --namespace space-dra --ownership-secret space-dra-ownership"
CLEANUP = f"{CLEANUP_DRY_RUN} --delete"
FORCE_DELETE_POD = "kubectl delete pod -n <namespace> <pod> --grace-period=0 --force"
VALUES = {"pool.size": "6", "controller.resyncPeriod": "10"}


def _install(cluster: ClusterHandle, driver_image: tuple[str, str]) -> ChartRelease:
    release = ChartRelease(
        cluster, image=driver_image[0], image_digest=driver_image[1], values=dict(VALUES)
    )
    release.install()
    return release


def _run(cluster: ClusterHandle, command: str, timeout: float = 180) -> str:
    result = operator_shell(cluster, documented(DOC, command), timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
    return result.stdout


def test_claims_first_then_the_chart_leaves_only_the_key(
    local_cluster: ClusterHandle, driver_image: tuple[str, str], workspace: str
) -> None:
    _install(local_cluster, driver_image)
    consumers.start(local_cluster, workspace, "doc")
    consumer = consumers.running(local_cluster, workspace, "doc")

    # 1. The driver's namespaces with their claims; delete the claims, wait for the namespaces.
    listed = _run(local_cluster, LIST_NAMESPACES)
    assert f"{consumer.namespace}\t{workspace}/doc" in listed.splitlines(), listed
    local_cluster.kubectl("delete", "pods,resourceclaims", "--all", "-n", workspace, timeout=180)
    # (the doc's ten minutes are an operator's patience; here two are plenty)
    wait = documented(DOC, WAIT_NAMESPACES_GONE).replace("--timeout=10m", "--timeout=120s")
    waited = operator_shell(local_cluster, wait, timeout=150)
    assert waited.returncode == 0, f"{wait}\n{waited.stdout}{waited.stderr}"
    assert namespace_state(local_cluster, consumer.namespace) == "gone"
    assert managed_namespaces(local_cluster) == []

    # 2. Uninstall: the warm pool, DeviceClass, slices and workloads go; the key stays.
    _run(local_cluster, UNINSTALL)
    local_cluster.wait_for(
        "every namespace of the driver gone (the warm pool with its DeviceClass)",
        lambda: managed_namespaces(local_cluster, include_warm=True) == [],
        timeout=120,
    )
    local_cluster.wait_for(
        "the driver's ResourceSlices gone",
        lambda: DEFAULT_DRIVER_NAME not in _slices_drivers(local_cluster),
        timeout=60,
    )
    assert local_cluster.kubectl_result("get", "deviceclass", DEFAULT_DRIVER_NAME).returncode != 0
    assert (
        local_cluster.kubectl_result(
            "get", "secret", OWNERSHIP_SECRET, "-n", RELEASE_NAMESPACE
        ).returncode
        == 0
    ), "the ownership key stays (docs/uninstall.md)"
    node = local_cluster.node(consumer.node)
    assert not any(node_state_of_claim(node, consumer.claim_uid).values())
    for each in local_cluster.nodes:
        # Every node's plugin cleaned up after itself, in that node's own directories.
        assert cdi_specs(each) == [], each.name
        assert artifacts(each) == [], each.name
        assert registration_sockets(each) == [], each.name

    # 3. With no namespace of the driver left, the key and the release namespace go too.
    _run(local_cluster, DELETE_RELEASE_NAMESPACE)
    assert namespace_state(local_cluster, RELEASE_NAMESPACE) == "gone"


def _slices_drivers(cluster: ClusterHandle) -> set[str]:
    items = cluster.kubectl_json("get", "resourceslices")["items"]
    return {item["spec"]["driver"] for item in items}


def _look_alike(cluster: ClusterHandle, original: str) -> str:
    """A namespace carrying every label and annotation of ``original`` (its signature too),
    under another name: what anyone allowed to label namespaces could make."""
    source: dict[str, Any] = cluster.kubectl_json("get", "namespace", original)["metadata"]
    name = f"look-alike-{source['uid'][:8]}"
    ours = {k: v for k, v in source.get("labels", {}).items() if k.startswith(LABELS.prefix)}
    annotations = {
        k: v for k, v in source.get("annotations", {}).items() if k.startswith(LABELS.prefix)
    }
    assert ours and LABELS.ownership in annotations, source
    cluster.apply(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": ours, "annotations": annotations},
            }
        )
    )
    return name


def _lines(output: str) -> dict[str, str]:
    """`space-dra cleanup` output: namespace name -> its line."""
    found = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) > 2 and words[0] in ("kept", "deleted", "would"):
            found[words[2] if words[0] == "would" else words[1]] = line
    return found


def _pod_state(cluster: ClusterHandle, namespace: str, name: str) -> str:
    """'gone', 'Terminating' (deleted, not yet finished) or the pod's phase."""
    result = cluster.kubectl_result("get", "pod", name, "-n", namespace, "-o", "json")
    if result.returncode != 0:
        return "gone"
    pod: dict[str, Any] = yaml.safe_load(result.stdout)
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    phase: str = pod["status"]["phase"]
    return phase


def test_namespaces_left_behind_are_removed_by_cleanup_and_only_the_drivers(
    local_cluster: ClusterHandle, driver_image: tuple[str, str], workspace: str
) -> None:
    _install(local_cluster, driver_image)
    for name in ("kept", "gone"):
        consumers.start(local_cluster, workspace, name)
    kept = consumers.running(local_cluster, workspace, "kept")
    gone = consumers.running(local_cluster, workspace, "gone")

    # Uninstalled with both claims in use: their namespaces stay, the pods keep working.
    _run(local_cluster, UNINSTALL)
    for consumer in (kept, gone):
        assert namespace_state(local_cluster, consumer.namespace) == "Active"
        consumers.assert_credentials_work(local_cluster, consumer)

    # A pod of a prepared claim cannot finish terminating without the plugin (the kubelet
    # unprepares its claims first); the doc's way out is to force its deletion.
    local_cluster.kubectl("delete", "pod", "gone", "-n", workspace, "--wait=false")
    local_cluster.wait_for(
        "the deleted pod's container stopped",
        lambda: _stopped(local_cluster, workspace, "gone"),
        timeout=60,
    )
    time.sleep(10)  # time enough to finish, were it able to
    assert _pod_state(local_cluster, workspace, "gone") == "Terminating"
    force = documented(DOC, FORCE_DELETE_POD).replace("<namespace>", workspace)
    forced = operator_shell(local_cluster, force.replace("<pod>", "gone"))
    assert forced.returncode == 0, forced.stderr
    local_cluster.kubectl("delete", "resourceclaim", "gone", "-n", workspace, timeout=120)
    look_alike = _look_alike(local_cluster, gone.namespace)
    try:
        # Dry run: says what it would do, does nothing.
        dry = _lines(_run(local_cluster, CLEANUP_DRY_RUN))
        assert "would delete" in dry[gone.namespace] and "claim-deleted" in dry[gone.namespace]
        assert "a claim still holds it" in dry[kept.namespace], dry
        assert "no valid ownership signature" in dry[look_alike], dry
        for name in (gone.namespace, kept.namespace, look_alike):
            assert namespace_state(local_cluster, name) == "Active", name

        # --delete: only the namespace the driver provably made and no claim holds.
        done = _lines(_run(local_cluster, CLEANUP))
        assert done[gone.namespace].startswith("deleted"), done
        assert "a claim still holds it" in done[kept.namespace], done
        assert "no valid ownership signature" in done[look_alike], done
        wait_namespace_released(local_cluster, gone.namespace)
        assert namespace_state(local_cluster, kept.namespace) == "Active"
        assert namespace_state(local_cluster, look_alike) == "Active"

        # Installed again under the same name: the kubelet unprepares what it could not
        # (the forced pod's files leave the node), the claim still in use keeps its namespace
        # and working credentials, and deleting it now is the normal order again.
        _install(local_cluster, driver_image)
        gone_node = local_cluster.node(gone.node)
        local_cluster.wait_for(
            "the forced pod's claim unprepared on its node",
            lambda: not any(node_state_of_claim(gone_node, gone.claim_uid).values()),
            timeout=90,
        )
        consumers.assert_undisturbed(local_cluster, kept)
        consumers.assert_credentials_work(local_cluster, kept)
        local_cluster.kubectl("delete", "pod,resourceclaim", "kept", "-n", workspace, timeout=120)
        wait_namespace_released(local_cluster, kept.namespace, timeout=90)
        assert namespace_state(local_cluster, look_alike) == "Active"
    finally:
        local_cluster.delete_namespace(look_alike)


def _stopped(cluster: ClusterHandle, namespace: str, pod: str) -> bool:
    result = cluster.kubectl_result("get", "pod", pod, "-n", namespace, "-o", "json")
    if result.returncode != 0:
        return True
    statuses = yaml.safe_load(result.stdout)["status"].get("containerStatuses", [])
    return all("terminated" in status["state"] for status in statuses)

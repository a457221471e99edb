"""Device health in the pod's status, end to end: faults a user can cause, seen in the pod.

The kubelet copies the plugin's DRAResourceHealth stream into
``status.containerStatuses[].allocatedResourcesStatus`` (docs/health.md). These tests break
a prepared namespace behind the driver's back, the two ways the plugin can see within its
RBAC, and read the pod's status as a user would:

- the namespace is deleted: Unhealthy, naming it, within 30 s;
- the RoleBinding that lets the plugin mint tokens there is deleted: Unhealthy once the
  token requests have failed ``failureThreshold`` times; re-created: Healthy again.

The chart is upgraded for this module with short health timings (``HEALTH_VALUES``) so the
bounds stay small, and restored afterwards. The bounds follow from those values: a
credential check at most ``credentialCheckInterval`` (+20 % jitter) after the fault, retries
5 s apart (never more than the interval), then the kubelet's pod sync.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from localcluster import ClusterHandle
from space_dra.contract import TOKEN_MINTER_BINDING
from tests.support.chart import ChartRelease
from tests.support.features import kubelet_gates
from tests.support.workloads import claim_manifest, pod_manifest, wait_claim_ready

pytestmark = pytest.mark.e2e

CHECK_INTERVAL = 3
CREDENTIAL_CHECK_INTERVAL = 5
FAILURE_THRESHOLD = 2
HEALTH_VALUES = {
    "kubeletPlugin.health.checkInterval": str(CHECK_INTERVAL),
    "kubeletPlugin.health.credentialCheckInterval": str(CREDENTIAL_CHECK_INTERVAL),
    "kubeletPlugin.health.failureThreshold": str(FAILURE_THRESHOLD),
}
# The promise for a namespace deleted behind the driver's back.
NAMESPACE_GONE_WITHIN = 30.0
# First failed request, then FAILURE_THRESHOLD - 1 retries, then the kubelet (a few s).
RETRY_SECONDS = min(5, CREDENTIAL_CHECK_INTERVAL)
REFUSED_WITHIN = CREDENTIAL_CHECK_INTERVAL * 1.2 + RETRY_SECONDS * FAILURE_THRESHOLD + 10
# The next retry succeeds, then the kubelet.
RECOVERED_WITHIN = CREDENTIAL_CHECK_INTERVAL * 1.2 + 10
JSONPATH = "{.status.containerStatuses[*].allocatedResourcesStatus}"


@pytest.fixture(scope="module")
def health_chart(local_cluster: ClusterHandle, chart: ChartRelease) -> Iterator[ChartRelease]:
    """The package's release, upgraded (or re-installed) with short health timings."""
    if not kubelet_gates(local_cluster, local_cluster.node_name).get("ResourceHealthStatus"):
        pytest.skip(
            f"the kubelet of Kubernetes {local_cluster.kubernetes_version} does not watch device "
            "health (ResourceHealthStatus is off; on by default from 1.36)"
        )
    original = dict(chart.values)
    chart.values = {**original, **HEALTH_VALUES}
    chart.install()
    _wait_one_plugin_pod(local_cluster, chart)
    try:
        yield chart
    finally:
        chart.values = original
        chart.install()


def _wait_one_plugin_pod(cluster: ClusterHandle, chart: ChartRelease) -> None:
    # During the rolling update the old and the new plugin pod are both registered.
    def settled() -> bool:
        pods = chart.pods("kubelet-plugin")
        nodes = sorted(p["spec"].get("nodeName", "") for p in pods)
        deleting = any(p["metadata"].get("deletionTimestamp") for p in pods)
        return nodes == sorted(cluster.node_names) and not deleting

    cluster.wait_for("one kubelet plugin pod per node", settled, timeout=120)


def allocated_resources_status(cluster: ClusterHandle, namespace: str, pod: str) -> str:
    """What a user sees: ``kubectl get pod -o jsonpath=...``."""
    return cluster.kubectl("get", "pod", pod, "-n", namespace, "-o", f"jsonpath={JSONPATH}")


def resource_health(cluster: ClusterHandle, namespace: str, pod: str) -> list[dict[str, Any]]:
    """The pod's ``allocatedResourcesStatus[].resources[]`` entries, every container."""
    status = cluster.kubectl_json("get", "pod", pod, "-n", namespace).get("status", {})
    return [
        resource
        for container in status.get("containerStatuses", [])
        for entry in container.get("allocatedResourcesStatus") or []
        for resource in entry.get("resources") or []
    ]


def wait_health(
    cluster: ClusterHandle, namespace: str, pod: str, health: str, timeout: float
) -> tuple[dict[str, Any], float]:
    """Wait until the pod's one resource shows ``health``; return it and the time taken."""
    started = time.monotonic()
    found: dict[str, Any] = {}

    def shown() -> bool:
        nonlocal found
        entries = resource_health(cluster, namespace, pod)
        found = entries[0] if len(entries) == 1 else {}
        return found.get("health") == health

    try:
        cluster.wait_for(f"pod {namespace}/{pod} resource health {health}", shown, timeout)
    except TimeoutError as exc:
        seen = allocated_resources_status(cluster, namespace, pod)
        raise TimeoutError(f"{exc}; allocatedResourcesStatus: {seen}") from exc
    return found, time.monotonic() - started


@contextlib.contextmanager
def _policy_suspended(cluster: ClusterHandle, binding: str) -> Iterator[None]:
    """Remove a ValidatingAdmissionPolicyBinding for the block, then put it back as it was."""
    saved = cluster.kubectl_json("get", "validatingadmissionpolicybinding", binding)
    cluster.kubectl("delete", "validatingadmissionpolicybinding", binding)
    try:
        yield
    finally:
        metadata = saved["metadata"]
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            metadata.pop(key, None)
        cluster.kubectl("create", "-f", "-", input=json.dumps(saved))


def _once_admitted(cluster: ClusterHandle, *args: str, input: str | None = None) -> None:
    """Run kubectl until the API server's policy cache has noticed the suspended binding."""
    deadline = time.monotonic() + 30
    while True:
        result = cluster.kubectl_result(*args, input=input)
        if result.returncode == 0:
            return
        if "ValidatingAdmissionPolicy" not in result.stderr or time.monotonic() > deadline:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        time.sleep(0.5)


def start_claim_and_pod(cluster: ClusterHandle, workspace: str) -> str:
    """A claim and a pod using it; returns the pod's ephemeral namespace once Healthy."""
    cluster.apply(claim_manifest(workspace, "space"))
    cluster.apply(pod_manifest(workspace, "client", cluster.testbox_image, claim="space"))
    cluster.wait_pod_ready(workspace, "client", timeout=120)
    [namespace] = wait_claim_ready(cluster, workspace, "space")
    healthy, _ = wait_health(cluster, workspace, "client", "Healthy", timeout=60)
    assert healthy.get("message") == f"namespace {namespace} is ready"
    assert str(healthy.get("resourceID", "")).startswith("space.resource.example.com/namespace=")
    print("before:", allocated_resources_status(cluster, workspace, "client"))
    return namespace


def test_namespace_deleted_behind_the_drivers_back_shows_unhealthy_within_30s(
    local_cluster: ClusterHandle, health_chart: ChartRelease, workspace: str
) -> None:
    namespace = start_claim_and_pod(local_cluster, workspace)

    local_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    unhealthy, took = wait_health(
        local_cluster, workspace, "client", "Unhealthy", timeout=NAMESPACE_GONE_WITHIN
    )
    print(f"after deleting {namespace} ({took:.1f}s):")
    print(allocated_resources_status(local_cluster, workspace, "client"))
    assert namespace in unhealthy.get("message", ""), unhealthy


def test_revoked_token_minting_shows_unhealthy_then_healthy_once_restored(
    local_cluster: ClusterHandle, health_chart: ChartRelease, workspace: str
) -> None:
    namespace = start_claim_and_pod(local_cluster, workspace)
    binding = local_cluster.kubectl_json(
        "get", "rolebinding", TOKEN_MINTER_BINDING, "-n", namespace
    )

    # The chart's tenancy policy lets only the controller touch that RoleBinding; an admin
    # suspends the policy to break minting behind the driver's back.
    with _policy_suspended(local_cluster, f"{health_chart.fullname}-managed-objects"):
        _once_admitted(
            local_cluster, "delete", "rolebinding", TOKEN_MINTER_BINDING, "-n", namespace
        )
    unhealthy, took = wait_health(
        local_cluster, workspace, "client", "Unhealthy", timeout=REFUSED_WITHIN
    )
    print(f"after deleting RoleBinding {TOKEN_MINTER_BINDING} ({took:.1f}s):")
    print(allocated_resources_status(local_cluster, workspace, "client"))
    message = unhealthy.get("message", "")
    assert message.startswith(f"cannot refresh the credentials for namespace {namespace}"), message
    assert f"{FAILURE_THRESHOLD} attempts in a row failed" in message
    assert "forbidden" in message.lower()
    restored_by_someone = local_cluster.kubectl_result(
        "get", "rolebinding", TOKEN_MINTER_BINDING, "-n", namespace
    )
    assert restored_by_someone.returncode != 0, (
        "the RoleBinding came back by itself (the controller now repairs it?): this test "
        "must then break token minting another way"
    )

    metadata = binding["metadata"]
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        metadata.pop(key, None)
    with _policy_suspended(local_cluster, f"{health_chart.fullname}-managed-objects"):
        _once_admitted(local_cluster, "apply", "-f", "-", input=json.dumps(binding))
    healthy, took = wait_health(
        local_cluster, workspace, "client", "Healthy", timeout=RECOVERED_WITHIN
    )
    print(f"after restoring it ({took:.1f}s):")
    print(allocated_resources_status(local_cluster, workspace, "client"))
    assert healthy.get("message") == f"namespace {namespace} is ready"

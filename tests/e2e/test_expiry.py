"""Namespaces that expire, end to end: a claim with ``lifetimeSeconds: 20`` on the
chart-installed driver.

Where the cluster keeps device taints (``DRADeviceTaints``: beta and on in 1.36, GA in 1.37)
the controller taints the expired slot ``NoExecute`` and Kubernetes evicts the pod; on older
releases the pod's credentials stop working instead (every RoleBinding in the namespace and
its ServiceAccount are deleted) and the pod is told by an Event. Either way this happens
within 20-40 s of the namespace becoming the claim's (made, or taken from the warm pool),
the claim says ``NamespaceExpired``, the namespace goes once no pod uses it, and a new claim
for a new pod works.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from localcluster import ClusterHandle
from space_dra.contract import (
    CONDITION_HEALTHY,
    CONDITION_READY,
    CONFIG_API_VERSION,
    CONFIG_KIND,
    DEFAULT_DRIVER_NAME,
    EXPIRES_AT_FIELD,
    ManagementLabels,
)
from space_dra.times import parse_rfc3339
from tests.support.chart import ChartRelease
from tests.support.features import api_server_gates
from tests.support.workloads import (
    claim_json,
    claim_manifest,
    condition,
    events_for,
    namespace_state,
    our_device_statuses,
    pod_manifest,
    wait_claim_ready,
)

pytestmark = pytest.mark.e2e

LIFETIME = 20
# The bounds, from the namespace's creation.
STOPPED_BETWEEN = (LIFETIME, 40.0)
# Once no pod uses it: reservedFor empties, the claim is deallocated, GC deletes it.
NAMESPACE_GONE_WITHIN = 30.0
LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)


def lifetime_config(seconds: int) -> dict[str, Any]:
    return {"apiVersion": CONFIG_API_VERSION, "kind": CONFIG_KIND, "lifetimeSeconds": seconds}


def pod_state(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl_result("get", "pod", name, "-n", namespace, "-o", "json")
    if result.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def kubectl_in_pod(
    cluster: ClusterHandle, namespace: str, pod: str, claim: str, args: str
) -> tuple[int, str]:
    # The variables are named after the claim: claim "short" gives SHORT_KUBECONFIG.
    script = f"KUBECONFIG=${claim.upper()}_KUBECONFIG kubectl {args} 2>&1"
    result = cluster.kubectl_result("exec", "-n", namespace, pod, "--", "sh", "-c", script)
    return result.returncode, result.stdout


def slot_taints(cluster: ClusterHandle) -> dict[str, Any]:
    slices = cluster.kubectl_json(
        "get", "resourceslices", "--field-selector", f"spec.driver={DEFAULT_DRIVER_NAME}"
    )["items"]
    return {
        d["name"]: d["taints"]
        for s in slices
        for d in s["spec"].get("devices", [])
        if d.get("taints")
    }


def expiry_of(cluster: ClusterHandle, workspace: str, claim: str) -> datetime:
    [device] = our_device_statuses(claim_json(cluster, workspace, claim))
    expires_at = parse_rfc3339(device["data"].get(EXPIRES_AT_FIELD))
    assert expires_at is not None, device
    return expires_at


def test_an_expired_namespace_stops_its_pod_and_goes(
    local_cluster: ClusterHandle, chart: ChartRelease, workspace: str
) -> None:
    cluster = local_cluster
    taints_supported = api_server_gates(cluster).get("DRADeviceTaints", False)
    cluster.apply(claim_manifest(workspace, "short", config=lifetime_config(LIFETIME)))
    cluster.apply(pod_manifest(workspace, "client", cluster.testbox_image, claim="short"))
    cluster.wait_pod_ready(workspace, "client", timeout=120)
    [namespace] = wait_claim_ready(cluster, workspace, "short")
    expires_at = expiry_of(cluster, workspace, "short")
    annotations = cluster.kubectl_json("get", "namespace", namespace)["metadata"]["annotations"]
    assert parse_rfc3339(annotations[LABELS.expires_at]) == expires_at
    made = expires_at.timestamp() - LIFETIME  # when it became the claim's
    code, out = kubectl_in_pod(cluster, workspace, "client", "short", "get configmaps")
    assert code == 0, out

    # The pod is evicted (taints), or its credentials stop working (no taints).
    if taints_supported:

        def stopped() -> bool:
            pod = pod_state(cluster, workspace, "client")
            return pod is None or bool(pod["metadata"].get("deletionTimestamp"))

        cluster.wait_for("pod client evicted", stopped, timeout=60)
    else:

        def refused() -> bool:
            code, _ = kubectl_in_pod(cluster, workspace, "client", "short", "get configmaps")
            return code != 0

        cluster.wait_for("pod client's credentials refused", refused, timeout=60)
    elapsed = time.time() - made
    print(f"stopped {elapsed:.1f}s after the namespace became the claim's", taints_supported)
    assert STOPPED_BETWEEN[0] - 1 <= elapsed <= STOPPED_BETWEEN[1], elapsed

    # The claim says so, with an Event.
    devices = our_device_statuses(claim_json(cluster, workspace, "short"))
    if devices:  # a deallocated claim no longer has status.devices
        health = condition(devices[0], CONDITION_HEALTHY) or {}
        assert (health.get("status"), health.get("reason")) == ("False", "NamespaceExpired")
        assert (condition(devices[0], CONDITION_READY) or {}).get("status") == "True"
    reasons = {e["reason"] for e in events_for(cluster, workspace, "short")}
    assert "NamespaceExpired" in reasons, reasons

    if not taints_supported:
        pod_reasons = {e["reason"] for e in events_for(cluster, workspace, "client")}
        assert "NamespaceExpired" in pod_reasons, pod_reasons
        cluster.kubectl("delete", "pod", "client", "-n", workspace, "--wait=false")

    # Nobody uses it any more: the namespace goes, and so does the slot's taint.
    cluster.wait_for(
        f"namespace {namespace} deleted",
        lambda: namespace_state(cluster, namespace) in ("Terminating", "gone"),
        NAMESPACE_GONE_WITHIN,
    )
    cluster.wait_for("no tainted slot", lambda: not slot_taints(cluster), timeout=30)

    # A new pod with a new claim works.
    cluster.wait_for("pod client gone", lambda: pod_state(cluster, workspace, "client") is None, 60)
    cluster.apply(claim_manifest(workspace, "next"))
    cluster.apply(pod_manifest(workspace, "client2", cluster.testbox_image, claim="next"))
    cluster.wait_pod_ready(workspace, "client2", timeout=120)
    [fresh] = wait_claim_ready(cluster, workspace, "next")
    assert fresh != namespace
    code, out = kubectl_in_pod(cluster, workspace, "client2", "next", "get configmaps")
    assert code == 0, out
    assert datetime.now(UTC) > expires_at

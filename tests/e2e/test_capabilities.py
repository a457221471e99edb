"""What the release offers the driver, and that the driver uses exactly that.

The driver adapts to the cluster: it publishes binding conditions only where the API server
keeps them (``DRADeviceBindingConditions``), and serves a device health stream that the kubelet
watches where ``ResourceHealthStatus`` is on. These tests read the feature gates as the
components report them (``kubernetes_feature_enabled`` metrics) and check the driver's behaviour
against them. ``make test-matrix`` collects what they observed per release
(``$SPACE_DRA_FACTS_FILE``, see localcluster/matrix.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import ClusterHandle, releases
from space_dra.contract import DEFAULT_DRIVER_NAME
from space_dra.kubeletplugin.health import HEALTH_VERSIONS
from tests.support.chart import ChartRelease
from tests.support.features import api_server_gates, kubelet_gates
from tests.support.workloads import claim_manifest, pod_manifest, wait_claim_ready

pytestmark = pytest.mark.e2e

GATES = (
    "DRADeviceBindingConditions",
    "DRAResourceClaimDeviceStatus",
    "DRAResourceClaimGranularStatusAuthorization",
    "ResourceHealthStatus",
    "DRAAdminAccess",
    "DRAPrioritizedList",
    "DRADeviceTaints",
    "DRAExtendedResource",
)


@pytest.fixture(scope="module")
def facts() -> Iterator[dict[str, Any]]:
    """What the tests observed; written for the matrix when it asks for it."""
    observed: dict[str, Any] = {}
    yield observed
    target = os.environ.get("SPACE_DRA_FACTS_FILE")
    if target:
        Path(target).write_text(json.dumps(observed, indent=1, sort_keys=True) + "\n")


def test_binding_conditions_follow_the_cluster(
    local_cluster: ClusterHandle, chart: ChartRelease, facts: dict[str, Any]
) -> None:
    gates = api_server_gates(local_cluster)
    facts["feature_gates"] = {g: gates[g] for g in GATES if g in gates}
    slices = local_cluster.kubectl_json(
        "get", "resourceslices", "--field-selector", f"spec.driver={DEFAULT_DRIVER_NAME}"
    )["items"]
    devices = [d for s in slices for d in s["spec"].get("devices", [])]
    assert devices
    published = any(d.get("bindingConditions") for d in devices)
    facts["binding_conditions_published"] = published
    facts["binding_conditions_available"] = gates.get("DRADeviceBindingConditions", False)
    # The chart's default (pool.bindingConditions=off): pods do not wait for the scheduler's
    # 5 s re-check. Where `auto` would use them is the gate reported above.
    assert not published


def test_device_health_reaches_pod_status_where_the_kubelet_watches_it(
    local_cluster: ClusterHandle, chart: ChartRelease, workspace: str, facts: dict[str, Any]
) -> None:
    node = local_cluster.node_name
    watched = kubelet_gates(local_cluster, node).get("ResourceHealthStatus", False)
    local_cluster.apply(claim_manifest(workspace, "health"))
    local_cluster.apply(
        pod_manifest(workspace, "p", local_cluster.testbox_image, claim="health", node=node)
    )
    local_cluster.wait_pod_ready(workspace, "p", timeout=150)
    wait_claim_ready(local_cluster, workspace, "health")

    def reported() -> list[dict[str, Any]]:
        pod = local_cluster.kubectl_json("get", "pod", "p", "-n", workspace)
        statuses = pod["status"].get("containerStatuses", [{}])[0]
        resources: list[dict[str, Any]] = statuses.get("allocatedResourcesStatus", [])
        return resources

    if watched:
        local_cluster.wait_for("device health in pod status", lambda: bool(reported()), 60)
        health = [r["health"] for entry in reported() for r in entry.get("resources", [])]
        assert health and all(h == "Healthy" for h in health), reported()
    else:
        assert reported() == []
    facts["device_health_in_pod_status"] = bool(reported())
    # The kubelet picks the newest DRAResourceHealth version both sides speak (it logs no name).
    kubelet_side = releases.resolve(local_cluster.kubernetes_version).health_services
    plugin_side = [v.split(".")[0] for v in HEALTH_VERSIONS]
    facts["kubelet_health_services"] = list(kubelet_side)
    negotiated = next((v for v in kubelet_side if v in plugin_side), "none")
    facts["plugin_health_service"] = negotiated if watched else "not watched (gate off)"

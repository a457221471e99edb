"""Feature gates as the running components report them (``kubernetes_feature_enabled``)."""

from __future__ import annotations

import re

from localcluster import ClusterHandle

FEATURE = re.compile(r'^kubernetes_feature_enabled\{name="([^"]+)",stage="([^"]*)"\} (\d)', re.M)


def api_server_gates(cluster: ClusterHandle) -> dict[str, bool]:
    return _gates(cluster, "/metrics")


def kubelet_gates(cluster: ClusterHandle, node: str) -> dict[str, bool]:
    return _gates(cluster, f"/api/v1/nodes/{node}/proxy/metrics")


def _gates(cluster: ClusterHandle, path: str) -> dict[str, bool]:
    metrics = cluster.kubectl("get", "--raw", path)
    return {name: value == "1" for name, _stage, value in FEATURE.findall(metrics)}


def binding_conditions_available(cluster: ClusterHandle) -> bool:
    """Whether the API server keeps ResourceSlice ``bindingConditions`` (beta, on from 1.36).

    Without them the driver publishes plain devices: a pod binds as soon as its claim is
    allocated and the kubelet plugin's bounded wait covers the rest (docs/compatibility.md).
    """
    return api_server_gates(cluster).get("DRADeviceBindingConditions", False)

"""Node-scoped credentials with the real plugin identities of two nodes (docs/security.md, 1).

The plugin pod of each node authenticates with its own projected token, bound to its node.
The API server (the chart's tenancy admission policy) lets node B's plugin mint credentials
for a claim's namespace only once a pod of that claim runs on B.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest

from localcluster import ClusterHandle
from localcluster.nodes import Node
from space_dra.contract import DEFAULT_DRIVER_NAME, WORKLOAD_SERVICE_ACCOUNT, ManagementLabels
from tests.support.chart import ChartRelease
from tests.support.nodes import plugin_token
from tests.support.workloads import claim_json, claim_manifest, pod_manifest, wait_claim_ready

pytestmark = pytest.mark.multinode

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)


def mint_as(
    cluster: ClusterHandle, token: str, namespace: str, claim_uid: str, node: str
) -> tuple[int, str]:
    """The TokenRequest a plugin makes, sent with ``token``."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"annotations": {LABELS.claim_uid: claim_uid}},
        "spec": {
            "audiences": [],
            "expirationSeconds": 3600,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Node", "name": node},
        },
    }
    request = urllib.request.Request(
        f"{cluster.api_server}/api/v1/namespaces/{namespace}/serviceaccounts/"
        f"{WORKLOAD_SERVICE_ACCOUNT}/token",
        method="POST",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(cluster.state_dir / "pki" / "ca.crt"))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        answer: dict[str, Any] = json.loads(error.read() or b"{}")
        return error.code, str(answer.get("message", ""))


def test_a_node_mints_for_a_claim_only_once_its_pod_runs_there(
    local_cluster: ClusterHandle, chart: ChartRelease, two_nodes: tuple[Node, Node], workspace: str
) -> None:
    node_a, node_b = two_nodes
    token_a = plugin_token(local_cluster, chart.namespace, node_a.name)
    token_b = plugin_token(local_cluster, chart.namespace, node_b.name)
    image = local_cluster.testbox_image
    local_cluster.apply(claim_manifest(workspace, "scoped"))
    local_cluster.apply(pod_manifest(workspace, "on-a", image, claim="scoped", node=node_a.name))
    local_cluster.wait_pod_ready(workspace, "on-a", timeout=150)
    [namespace] = wait_claim_ready(local_cluster, workspace, "scoped")
    uid = claim_json(local_cluster, workspace, "scoped")["metadata"]["uid"]

    status, message = mint_as(local_cluster, token_a, namespace, uid, node_a.name)
    assert status == 201, message
    status, message = mint_as(local_cluster, token_b, namespace, uid, node_b.name)
    print(f"node B before a pod of the claim runs there: {status} {message}")
    assert status == 403 and f"node {node_b.name} runs no pod" in message

    local_cluster.apply(pod_manifest(workspace, "on-b", image, claim="scoped", node=node_b.name))
    local_cluster.wait_pod_ready(workspace, "on-b", timeout=150)
    status, message = mint_as(local_cluster, token_b, namespace, uid, node_b.name)
    assert status == 201, f"node B with a pod of the claim: {message}"

    local_cluster.kubectl("delete", "pod", "on-b", "-n", workspace, "--wait=true")

    def refused_again() -> bool:
        return mint_as(local_cluster, token_b, namespace, uid, node_b.name)[0] == 403

    local_cluster.wait_for("node B refused once its pod is gone", refused_again, timeout=60)

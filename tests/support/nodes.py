"""Nodes of the local cluster seen from the tests: pinning pods, a node's driver files, its plugin.

Each node has its own ``/var/lib/kubelet`` and ``/var/run`` (see localcluster/nodes.py); the
driver's files on a node are read from the machine through ``Node.host_path``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from localcluster import ClusterHandle
from localcluster.nodes import Node
from space_dra.contract import DEFAULT_DRIVER_NAME

# The chart's defaults (values.yaml kubeletPlugin.*), as paths inside a node.
CDI_DIR = "/var/run/cdi"
ARTIFACT_DIR = "/var/run/claim-artifacts"
PLUGINS_DIR = "/var/lib/kubelet/plugins"
REGISTRY_DIR = "/var/lib/kubelet/plugins_registry"
NODE_SELECTOR_ANNOTATION = "scheduler.alpha.kubernetes.io/node-selector"
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def require_nodes(cluster: ClusterHandle, count: int) -> list[Node]:
    """The cluster's nodes; skips the test when it has fewer than ``count``."""
    if len(cluster.nodes) < count:
        pytest.skip(
            f"needs a cluster of at least {count} nodes, this one has {len(cluster.nodes)} "
            f"(start one with `python -m localcluster up --nodes {count}` or "
            f"SPACE_DRA_NODES={count} make cluster-up)"
        )
    return list(cluster.nodes)


def pin_namespace_to_node(cluster: ClusterHandle, namespace: str, node: str) -> None:
    """Every pod created in ``namespace`` from now on runs on ``node`` (PodNodeSelector)."""
    cluster.kubectl(
        "annotate",
        "namespace",
        namespace,
        "--overwrite",
        f"{NODE_SELECTOR_ANNOTATION}=kubernetes.io/hostname={node}",
    )


def pod_node(cluster: ClusterHandle, namespace: str, pod: str) -> str:
    node: str = cluster.kubectl_json("get", "pod", pod, "-n", namespace)["spec"]["nodeName"]
    return node


# --- the driver's files on a node -----------------------------------------------------------
def cdi_specs(node: Node, uid: str = "") -> list[Path]:
    return sorted(node.host_path(CDI_DIR).glob(f"{DEFAULT_DRIVER_NAME}-{uid}*.json"))


def artifacts(node: Node, uid: str = "") -> list[Path]:
    root = node.host_path(ARTIFACT_DIR)
    return sorted(root.glob(f"{uid}*")) if root.is_dir() else []


def checkpoint_path(node: Node) -> Path:
    return node.host_path(f"{PLUGINS_DIR}/{DEFAULT_DRIVER_NAME}/checkpoint.json")


def checkpointed_claims(node: Node) -> set[str]:
    """Claim UIDs in the node plugin's checkpoint (empty when it has none)."""
    path = checkpoint_path(node)
    if not path.exists():
        return set()
    data: dict[str, Any] = json.loads(path.read_text() or "{}")
    return set(data.get("claims", {}))


def node_state_of_claim(node: Node, uid: str) -> dict[str, bool]:
    """Which traces of the claim the node holds: CDI spec, credential files, checkpoint entry."""
    return {
        "cdi": bool(cdi_specs(node, uid)),
        "artifacts": bool(artifacts(node, uid)),
        "checkpoint": uid in checkpointed_claims(node),
    }


def registration_sockets(node: Node) -> list[Path]:
    return sorted(node.host_path(REGISTRY_DIR).glob(f"{DEFAULT_DRIVER_NAME}*.sock"))


# --- the chart's kubelet plugin on a node ------------------------------------------------------
def plugin_pod(cluster: ClusterHandle, release_namespace: str, node: str) -> dict[str, Any]:
    """The running kubelet-plugin pod of the chart release on ``node``."""
    pods = cluster.kubectl_json(
        "get",
        "pods",
        "-n",
        release_namespace,
        "-l",
        "app.kubernetes.io/component=kubelet-plugin",
        "--field-selector",
        f"spec.nodeName={node},status.phase=Running",
    )["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if len(live) != 1:
        names = [p["metadata"]["name"] for p in live]
        raise AssertionError(f"expected one running plugin pod on {node}, found {names}")
    pod: dict[str, Any] = live[0]
    return pod


def plugin_token(cluster: ClusterHandle, release_namespace: str, node: str) -> str:
    """The projected ServiceAccount token the plugin pod on ``node`` authenticates with.

    A node-bound token: the API server knows which pod and node it was issued for. Read through
    the pod (the image has Python but no ``cat``); it is what that node's plugin really uses.
    """
    pod = plugin_pod(cluster, release_namespace, node)["metadata"]["name"]
    token = cluster.kubectl(
        "exec",
        "-n",
        release_namespace,
        pod,
        "--",
        "python3",
        "-c",
        f"print(open({SERVICE_ACCOUNT_TOKEN!r}).read(), end='')",
    )
    if token.count(".") != 2:
        raise AssertionError(f"the plugin pod {pod} has no JWT at {SERVICE_ACCOUNT_TOKEN}")
    return token

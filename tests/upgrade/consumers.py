"""Claims in use across a change of the driver: what each got, and whether it still holds.

A consumer is a ResourceClaim and one pod using it, both named ``name``: its credentials are
mounted at ``/etc/<name>`` and its kubeconfig is ``$<NAME>_KUBECONFIG`` (the names come from the
claim's name). Its snapshot records what must not change while it runs: the namespace (by UID),
the container, the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localcluster import ClusterHandle
from tests.support.nodes import node_state_of_claim
from tests.support.workloads import (
    LABELS,
    claim_json,
    claim_manifest,
    exec_in,
    pod_manifest,
    wait_claim_ready,
)


@dataclass(frozen=True)
class Consumer:
    workspace: str
    name: str
    claim_uid: str
    namespace: str
    namespace_uid: str
    container_id: str
    node: str


def start(cluster: ClusterHandle, workspace: str, name: str) -> None:
    cluster.apply(claim_manifest(workspace, name))
    cluster.apply(pod_manifest(workspace, name, cluster.testbox_image, claim=name))


def running(cluster: ClusterHandle, workspace: str, name: str, timeout: float = 150) -> Consumer:
    """Wait until the consumer's pod is Ready and its claim's namespace too; its snapshot."""
    pod = cluster.wait_pod_ready(workspace, name, timeout=timeout)
    [namespace] = wait_claim_ready(cluster, workspace, name)
    [container] = pod["status"]["containerStatuses"]
    return Consumer(
        workspace=workspace,
        name=name,
        claim_uid=claim_json(cluster, workspace, name)["metadata"]["uid"],
        namespace=namespace,
        namespace_uid=cluster.kubectl_json("get", "namespace", namespace)["metadata"]["uid"],
        container_id=container["containerID"],
        node=pod["spec"]["nodeName"],
    )


def token(cluster: ClusterHandle, consumer: Consumer) -> str:
    """The token the pod sees now in its mounted credential directory."""
    return exec_in(cluster, consumer.workspace, consumer.name, f"cat /etc/{consumer.name}/token")


def assert_credentials_work(cluster: ClusterHandle, consumer: Consumer) -> None:
    """The pod's kubeconfig authenticates as its namespace's ServiceAccount."""
    env = consumer.name.upper().replace("-", "_")
    out = exec_in(
        cluster,
        consumer.workspace,
        consumer.name,
        f"KUBECONFIG=${env}_KUBECONFIG kubectl auth whoami 2>&1",
    )
    assert f"system:serviceaccount:{consumer.namespace}:" in out, (consumer.name, out)


def wait_token_rotated(
    cluster: ClusterHandle, consumer: Consumer, since: str, timeout: float = 60
) -> str:
    """Wait until the mounted token is no longer ``since``; the new one."""
    current = since

    def rotated() -> bool:
        nonlocal current
        current = token(cluster, consumer)
        return current != since

    cluster.wait_for(f"the token of {consumer.name} rotated", rotated, timeout)
    return current


def assert_undisturbed(cluster: ClusterHandle, consumer: Consumer) -> None:
    """Same container (never restarted), same namespace (same UID, Active), same node state."""
    pod = cluster.kubectl_json("get", "pod", consumer.name, "-n", consumer.workspace)
    [container] = pod["status"]["containerStatuses"]
    assert container["containerID"] == consumer.container_id, consumer.name
    assert container["restartCount"] == 0, consumer.name
    namespace = cluster.kubectl_json("get", "namespace", consumer.namespace)
    assert namespace["metadata"]["uid"] == consumer.namespace_uid, consumer.name
    assert namespace["status"]["phase"] == "Active", consumer.name
    [recorded] = wait_claim_ready(cluster, consumer.workspace, consumer.name, timeout=10)
    assert recorded == consumer.namespace, consumer.name
    state = node_state_of_claim(cluster.node(consumer.node), consumer.claim_uid)
    assert all(state.values()), (consumer.name, state)


def namespace_uids(cluster: ClusterHandle) -> dict[str, str]:
    """Every namespace the driver made for a claim, by name: its UID. (The warm pool's are
    left out: they may be handed over, or deleted as surplus when claims take slots.)"""
    selector = f"{LABELS.selector},!{LABELS.warm}"
    items: list[dict[str, Any]] = cluster.kubectl_json("get", "namespaces", "-l", selector)["items"]
    return {ns["metadata"]["name"]: ns["metadata"]["uid"] for ns in items}


def assert_none_replaced(cluster: ClusterHandle, before: dict[str, str]) -> None:
    """Every namespace of ``before`` is still there under the same UID, and Active."""
    now = namespace_uids(cluster)
    changed = {name: (uid, now.get(name)) for name, uid in before.items() if now.get(name) != uid}
    assert not changed, f"namespaces deleted or re-created (name: (before, now)): {changed}"
    for name in before:
        phase = cluster.kubectl_json("get", "namespace", name)["status"]["phase"]
        assert phase == "Active", (name, phase)

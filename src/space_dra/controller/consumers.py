"""Which nodes may obtain credentials for a claim's namespaces.

Every plugin pod runs as the same ServiceAccount, so RBAC alone would let any node
mint tokens in every ephemeral namespace. The chart's admission policy on
``serviceaccounts/token`` therefore lets a plugin mint only when the node its own
token is bound to is listed in the namespace's ``<driver>/nodes`` annotation. This
module keeps that list equal to the nodes of the pods the claim is reserved for, as
the scheduler and kubelets report them (``status.reservedFor`` and each pod's
``spec.nodeName``): data only the control plane writes, so a compromised node cannot
add itself.

A pod is reserved a moment before it is bound to a node; such a pod is watched (by
name, nothing else) until it is bound, and its claim queued again then. A pod's node
never changes once bound, so bound pods are remembered by UID and read once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Pod

from space_dra.contract import ClaimView, ManagementLabels, NamespaceView
from space_dra.kube import ControllerAPI, KubeError, NotFound
from space_dra.logs import log_event

log = logging.getLogger(__name__)

# How long a reserved pod is watched for its binding before the claim's next event
# (or the periodic resync) has to pick it up again.
BINDING_WAIT_SECONDS = 120.0


class ConsumerNodes:
    def __init__(
        self,
        kube: ControllerAPI,
        labels: ManagementLabels,
        on_bound: Callable[[str], None],
    ) -> None:
        """``on_bound(claim_uid)`` is called when a reserved pod of the claim got its node."""
        self.kube = kube
        self.labels = labels
        self._on_bound = on_bound
        self._node_of: dict[str, str] = {}  # pod UID -> node
        self._pods_of: dict[str, set[str]] = {}  # claim UID -> reserved pod UIDs
        self._waiting: dict[str, asyncio.Task[None]] = {}  # pod UID -> binding watch
        # Claim UID -> namespace name -> the node list last written, until the
        # namespace cache shows it.
        self._written: dict[str, dict[str, frozenset[str]]] = {}

    async def record(self, claim: ClaimView, namespaces: Iterable[NamespaceView]) -> None:
        """Make each namespace list exactly the nodes of the claim's reserved pods."""
        nodes = await self.nodes(claim)
        written = self._written.setdefault(claim.uid, {})
        for namespace in namespaces:
            if namespace.deleting:
                continue
            if namespace.nodes == nodes:
                written.pop(namespace.name, None)
                continue
            if written.get(namespace.name) == nodes:
                continue  # written; the watch has not shown it yet
            value = ",".join(sorted(nodes))
            await self.kube.apply(
                Namespace(
                    metadata=ObjectMeta(name=namespace.name, annotations={self.labels.nodes: value})
                )
            )
            written[namespace.name] = nodes
            log_event(
                log,
                logging.INFO,
                "namespace_nodes_recorded",
                claim_uid=claim.uid,
                namespace=namespace.name,
                nodes=value,
            )

    async def nodes(self, claim: ClaimView) -> frozenset[str]:
        """The nodes of the claim's reserved pods that are bound already."""
        reserved = {
            ref.uid: ref.name
            for ref in (claim.claim.status.reservedFor if claim.claim.status else None) or []
            if ref.resource == "pods" and not ref.apiGroup and ref.uid
        }
        for gone in self._pods_of.get(claim.uid, set()) - reserved.keys():
            self._forget_pod(gone)
        self._pods_of[claim.uid] = set(reserved)
        for uid, name in reserved.items():
            if uid not in self._node_of and uid not in self._waiting:
                await self._look_up(claim, uid, name)
        return frozenset(self._node_of[uid] for uid in reserved if uid in self._node_of)

    def forget(self, claim_uid: str) -> None:
        """The claim is gone: drop what was remembered for it."""
        for pod in self._pods_of.pop(claim_uid, set()):
            self._forget_pod(pod)
        self._written.pop(claim_uid, None)

    async def stop(self) -> None:
        tasks = list(self._waiting.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._waiting.clear()

    def _forget_pod(self, pod_uid: str) -> None:
        self._node_of.pop(pod_uid, None)
        waiting = self._waiting.pop(pod_uid, None)
        if waiting is not None:
            waiting.cancel()

    async def _look_up(self, claim: ClaimView, pod_uid: str, name: str) -> None:
        try:
            pod = await self.kube.get(Pod, name, claim.namespace)
        except NotFound:
            return  # deleted; the scheduler drops it from reservedFor
        if (pod.metadata.uid if pod.metadata else None) != pod_uid:
            return  # a new pod with the old name: not the one reserved
        node = pod.spec.nodeName if pod.spec else None
        if node:
            self._node_of[pod_uid] = node
            return
        version = (pod.metadata.resourceVersion if pod.metadata else None) or ""
        self._waiting[pod_uid] = asyncio.create_task(
            self._await_binding(claim.uid, claim.namespace, name, pod_uid, version),
            name=f"binding-{pod_uid}",
        )

    async def _await_binding(
        self, claim_uid: str, namespace: str, name: str, pod_uid: str, version: str
    ) -> None:
        fields = {"metadata.name": name, "metadata.namespace": namespace}
        try:
            async with asyncio.timeout(BINDING_WAIT_SECONDS):
                async for event, pod in self.kube.watch(Pod, version, fields=fields):
                    if (pod.metadata.uid if pod.metadata else None) != pod_uid:
                        continue
                    node = pod.spec.nodeName if pod.spec else None
                    if event == "DELETED" or node:
                        if node and event != "DELETED":
                            self._node_of[pod_uid] = node
                        break
        except (KubeError, TimeoutError) as exc:
            log_event(
                log,
                logging.INFO,
                "pod_binding_not_seen",
                claim_uid=claim_uid,
                pod=f"{namespace}/{name}",
                detail=str(exc) or "timed out",
            )
        finally:
            with contextlib.suppress(KeyError):
                if self._waiting[pod_uid] is asyncio.current_task():
                    del self._waiting[pod_uid]
        self._on_bound(claim_uid)

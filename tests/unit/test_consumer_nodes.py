"""The nodes recorded on a claim's namespace follow the pods the claim is reserved for.

The chart's admission policy lets a node's plugin mint tokens only in namespaces that
list the node, so this list is the node-scoping of credentials: it must grow when a pod
of the claim is bound to a node, shrink when it goes, and never list a node for a pod
that is not the reserved one.
"""

from __future__ import annotations

from lightkube.models.core_v1 import PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.resource_v1 import ResourceClaimConsumerReference
from lightkube.resources.core_v1 import Namespace, Pod
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.contract import DEFAULT_DRIVER_NAME, ManagementLabels
from space_dra.kube_memory import MemoryKube
from tests.support.claims import make_claim, new_uid
from tests.support.controller import device_state, eventually, running_reconciler, settled

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)


def pod(name: str, uid: str, node: str | None) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace="default", uid=uid),
        spec=PodSpec(containers=[], nodeName=node),
    )


def nodes_of(kube: MemoryKube) -> str | None:
    record = device_state(kube).record
    if record is None:
        return None
    [namespace] = [
        ns for ns in kube.stored(Namespace) if ns.metadata and ns.metadata.name == record.namespace
    ]
    annotations = (namespace.metadata.annotations if namespace.metadata else None) or {}
    return annotations.get(LABELS.nodes)


def reserve(kube: MemoryKube, *pods: tuple[str, str]) -> None:
    """Play the scheduler: change the stored claim's reservedFor, keeping its status."""
    [claim] = kube.stored(ResourceClaim)
    assert claim.status is not None
    claim.status.reservedFor = [
        ResourceClaimConsumerReference(resource="pods", name=name, uid=uid) for name, uid in pods
    ]
    kube.put(claim)


async def test_nodes_follow_the_reserved_pods() -> None:
    kube = MemoryKube()
    a, b = new_uid(), new_uid()
    kube.put(pod("pod-a", a, "node-a"))
    kube.put(pod("pod-b", b, "node-b"))
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(new_uid(), reserved_for=[("pod-a", a)]))
        await eventually(lambda: nodes_of(kube) == "node-a", "node-a recorded")

        reserve(kube, ("pod-a", a), ("pod-b", b))
        await eventually(lambda: nodes_of(kube) == "node-a,node-b", "node-b added")

        reserve(kube, ("pod-b", b))
        await eventually(lambda: nodes_of(kube) == "node-b", "node-a removed")

        reserve(kube)
        await eventually(lambda: nodes_of(kube) == "", "no node left")
        await settled(reconciler)


async def test_a_pod_reserved_before_it_is_bound_is_recorded_when_bound() -> None:
    kube = MemoryKube()
    a = new_uid()
    kube.put(pod("pod-a", a, None))
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(new_uid(), reserved_for=[("pod-a", a)]))
        await eventually(lambda: device_state(kube).record, "namespace ready")
        await settled(reconciler)
        assert not nodes_of(kube), "an unbound pod gives no node"

        kube.put(pod("pod-a", a, "node-a"))  # the scheduler binds it
        await eventually(lambda: nodes_of(kube) == "node-a", "node recorded once bound")
        assert not reconciler.consumers._waiting, "the binding watch ends"


async def test_a_different_pod_under_the_reserved_name_gives_no_node() -> None:
    kube = MemoryKube()
    kube.put(pod("pod-a", new_uid(), "node-evil"))  # not the pod the claim is reserved for
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(new_uid(), reserved_for=[("pod-a", new_uid())]))
        await eventually(lambda: device_state(kube).record, "namespace ready")
        await settled(reconciler)
        assert not nodes_of(kube)


async def test_recording_writes_once_per_change() -> None:
    kube = MemoryKube()
    a = new_uid()
    kube.put(pod("pod-a", a, "node-a"))
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(new_uid(), reserved_for=[("pod-a", a)]))
        await eventually(lambda: nodes_of(kube) == "node-a", "node-a recorded")
        await settled(reconciler)
        applies = [c for c in kube.calls if c == "apply Namespace"]
        reconciler.requeue_all()
        await settled(reconciler)
        assert [c for c in kube.calls if c == "apply Namespace"] == applies


async def test_a_deleted_claim_forgets_its_pods() -> None:
    kube = MemoryKube()
    a = new_uid()
    kube.put(pod("pod-a", a, "node-a"))
    async with running_reconciler(kube) as reconciler:
        uid = new_uid()
        kube.put(make_claim(uid, reserved_for=[("pod-a", a)]))
        await eventually(lambda: nodes_of(kube) == "node-a", "node-a recorded")
        kube.remove(ResourceClaim, "test-claim", "default")
        await eventually(lambda: not reconciler.consumers._pods_of, "claim forgotten")
        assert not reconciler.consumers._node_of
        assert not reconciler.consumers._written

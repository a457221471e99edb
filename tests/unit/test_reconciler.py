"""The reconciler's decisions, against the in-memory API server with real informers
and the real work queue: provision, adopt, refuse, collect, the sweep."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from lightkube.resources.core_v1 import (
    Event,
    LimitRange,
    Namespace,
    ResourceQuota,
    ServiceAccount,
)
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import RoleBinding
from lightkube.resources.resource_v1 import ResourceClaim, ResourceClaimStatus

from space_dra.config import SOURCE_CLAIM
from space_dra.contract import (
    CONDITION_READY,
    DEFAULT_DRIVER_NAME,
    LIMITS_NAME,
    MANAGED_BY_VALUE,
    NETWORK_POLICY_NAME,
    QUOTA_NAME,
    TOKEN_MINTER_BINDING,
    WORKLOAD_BINDING,
    WORKLOAD_SERVICE_ACCOUNT,
    ManagementLabels,
    NamespaceRecord,
    NamespaceView,
)
from space_dra.controller.ownership import Signer
from space_dra.kube import Conflict, Invalid, KubeError
from space_dra.kube_memory import MemoryKube
from tests.support.claims import SERVER, make_claim, namespace_config, new_uid, ready_device
from tests.support.controller import (
    CONTROLLER_NAMESPACE,
    PLUGIN_SERVICE_ACCOUNT,
    SIGNER,
    TOKEN_MINTER_ROLE,
    claim_view,
    device_state,
    events,
    eventually,
    namespaces,
    running_reconciler,
    settled,
    signed_namespace,
)

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)


def claim_config(**fields: Any) -> list[tuple[str, dict[str, Any], list[str]]]:
    return [(SOURCE_CLAIM, namespace_config(**fields), ["ns"])]


async def ready(kube: MemoryKube, name: str = "test-claim", index: int = 0) -> NamespaceRecord:
    def record() -> NamespaceRecord | None:
        return device_state(kube, name, index).record

    return await eventually(record, f"{name} device {index} ready")


async def failed(kube: MemoryKube) -> str:
    return await eventually(lambda: device_state(kube).failure, "a recorded failure")


async def test_provisions_namespace_contents_record_and_event() -> None:
    kube = MemoryKube()
    uid = new_uid()
    async with running_reconciler(kube):
        kube.put(
            make_claim(uid, configs=claim_config(quota={"pods": "3"}, networkPolicy="deny-all"))
        )
        record = await ready(kube)

    assert record == NamespaceRecord(record.namespace, WORKLOAD_SERVICE_ACCOUNT, SERVER)
    assert list(namespaces(kube)) == [record.namespace]
    namespace = namespaces(kube)[record.namespace]
    assert namespace.metadata and namespace.metadata.labels
    assert namespace.metadata.labels[LABELS.managed_by] == MANAGED_BY_VALUE
    assert namespace.metadata.labels[LABELS.claim_uid] == uid
    assert namespace.metadata.labels[LABELS.device] == "space.slot-0"
    assert SIGNER.owns(NamespaceView.of(namespace, LABELS))

    inside = record.namespace
    assert [
        (a.metadata.namespace, a.metadata.name) for a in kube.stored(ServiceAccount) if a.metadata
    ] == [(inside, WORKLOAD_SERVICE_ACCOUNT)]
    bindings = {b.metadata.name: b for b in kube.stored(RoleBinding) if b.metadata}
    assert bindings[WORKLOAD_BINDING].roleRef.name == "admin"
    minter = bindings[TOKEN_MINTER_BINDING]
    assert minter.roleRef.name == TOKEN_MINTER_ROLE
    assert [(s.namespace, s.name) for s in minter.subjects or []] == [
        tuple(PLUGIN_SERVICE_ACCOUNT.split("/"))
    ]
    quotas = kube.stored(ResourceQuota)
    assert [(q.metadata.name, q.spec.hard) for q in quotas if q.metadata and q.spec] == [
        (QUOTA_NAME, {"pods": "3"})
    ]
    policies = kube.stored(NetworkPolicy)
    assert [p.metadata.name for p in policies if p.metadata] == [NETWORK_POLICY_NAME]
    assert policies[0].spec and policies[0].spec.policyTypes == ["Ingress", "Egress"]
    assert kube.stored(LimitRange) == [], "no limitRange asked for"

    [event] = events(kube)
    assert (event.type, event.reason) == ("Normal", "NamespaceProvisioned")
    assert event.involvedObject.uid == uid
    conditions = claim_view(kube).claim.status.devices[0].conditions  # type: ignore[union-attr,index]
    assert {(c.type, c.status) for c in conditions or []} >= {(CONDITION_READY, "True")}


async def test_a_limit_range_is_made_only_when_asked_for() -> None:
    kube = MemoryKube()
    limits = {"max": {"cpu": "1"}, "default": {"cpu": "500m"}}
    async with running_reconciler(kube):
        kube.put(make_claim(new_uid(), configs=claim_config(limitRange=limits)))
        record = await ready(kube)
    [limit_range] = kube.stored(LimitRange)
    assert limit_range.metadata and limit_range.metadata.namespace == record.namespace
    assert limit_range.metadata.name == LIMITS_NAME
    [item] = limit_range.spec.limits if limit_range.spec else []
    assert (item.type, item.max, item.default) == ("Container", {"cpu": "1"}, {"cpu": "500m"})
    assert kube.stored(ResourceQuota) == [] and kube.stored(NetworkPolicy) == []


async def test_every_device_gets_its_own_namespace() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube):
        kube.put(make_claim(new_uid(), devices=[("ns", "slot-0"), ("ns", "slot-1")]))
        first, second = await ready(kube, index=0), await ready(kube, index=1)
    assert first.namespace != second.namespace
    assert sorted(namespaces(kube)) == sorted([first.namespace, second.namespace])


async def test_claims_of_other_drivers_are_left_alone() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(new_uid(), driver="gpu.example.com"))
        kube.put(make_claim(new_uid(), name="pending", allocated=False))
        await asyncio.sleep(0.05)
        await settled(reconciler)
    assert namespaces(kube) == {}
    assert not any(call.startswith("apply") for call in kube.calls)


async def test_adopts_the_namespace_made_before_a_crash() -> None:
    kube = MemoryKube()
    uid = new_uid()
    kube.put(signed_namespace("ephemeral-ns-crash", uid))
    kube.put(make_claim(uid))
    async with running_reconciler(kube):
        record = await ready(kube)
    assert record.namespace == "ephemeral-ns-crash"
    assert list(namespaces(kube)) == ["ephemeral-ns-crash"]
    assert "create Namespace" not in kube.calls
    assert [a.metadata.namespace for a in kube.stored(ServiceAccount) if a.metadata] == [
        "ephemeral-ns-crash"
    ], "the adopted namespace is filled"


async def test_adopts_the_oldest_duplicate_and_collects_the_others() -> None:
    kube = MemoryKube()
    uid = new_uid()
    for name, minute in (("ephemeral-ns-young", 5), ("ephemeral-ns-old", 1)):
        namespace = signed_namespace(name, uid)
        assert namespace.metadata
        namespace.metadata.creationTimestamp = datetime(2026, 1, 1, 0, minute, tzinfo=UTC)
        kube.put(namespace)
    kube.put(make_claim(uid))
    async with running_reconciler(kube):
        record = await ready(kube)
        await eventually(lambda: list(namespaces(kube)) == ["ephemeral-ns-old"], "duplicate gone")
    assert record.namespace == "ephemeral-ns-old"


async def test_refuses_an_invalid_config_once_and_from_memory_afterwards() -> None:
    kube = MemoryKube()
    uid = new_uid()
    config = claim_config(role="cluster-admin")
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(uid, configs=config))
        failure = await failed(kube)
        assert failure.startswith("InvalidConfig: ")
        assert "cluster-admin" in failure
        assert len(events(kube, "InvalidNamespaceConfig")) == 1

        # The scheduler answers a failure by deallocating and allocating again.
        kube.put(make_claim(uid, configs=config, allocated=False))
        await eventually(lambda: not claim_view(kube).allocated, "deallocated")
        await settled(reconciler)
        kube.put(make_claim(uid, configs=config))
        assert (await failed(kube)).startswith("InvalidConfig: ")
        await settled(reconciler)

    assert namespaces(kube) == {}
    assert "create Namespace" not in kube.calls
    assert len(events(kube, "InvalidNamespaceConfig")) == 1, "no new Event from memory"
    assert [e.type for e in events(kube)] == ["Warning"]


def refuse_widgets(verb: str, quota: Any) -> None:
    """Like the API server: a quota on a resource it does not know is invalid."""
    if "widgets" in (quota.spec.hard or {}):
        raise Invalid("ResourceQuota: spec.hard[widgets]: must be a standard resource", 422)


async def test_an_api_rejection_is_recorded_collected_and_remembered_for_a_while() -> None:
    kube = MemoryKube()
    kube.admit(ResourceQuota, refuse_widgets)
    uid = new_uid()
    config = claim_config(quota={"widgets": "1"})

    async def reallocate(reconciler: Any) -> None:
        kube.put(make_claim(uid, configs=config, allocated=False))
        await eventually(lambda: not claim_view(kube).allocated, "deallocated")
        await settled(reconciler)
        kube.put(make_claim(uid, configs=config))

    async with running_reconciler(kube, rejection_memory_seconds=0.5) as reconciler:
        kube.put(make_claim(uid, configs=config))
        failure = await failed(kube)
        assert failure.startswith("Rejected: the API server rejected the namespace's objects")
        assert "widgets" in failure
        await eventually(lambda: namespaces(kube) == {}, "the half-made namespace collected")
        assert len(events(kube, "NamespaceRejected")) == 1

        await reallocate(reconciler)
        assert (await failed(kube)).startswith("Rejected: ")
        await settled(reconciler)
        assert kube.calls.count("create Namespace") == 1, "refused from memory"
        assert len(events(kube, "NamespaceRejected")) == 1

        await asyncio.sleep(0.5)  # the memory of a rejection fades: tried again
        await reallocate(reconciler)
        await eventually(lambda: kube.calls.count("create Namespace") == 2, "a second attempt")
        await eventually(lambda: len(events(kube, "NamespaceRejected")) == 2, "a second Event")
        await eventually(lambda: namespaces(kube) == {}, "collected again")


async def test_a_transient_failure_is_retried_without_a_second_namespace() -> None:
    kube = MemoryKube()
    kube.fail_next("apply", ServiceAccount)  # a 500 while filling
    kube.fail_next("apply", ResourceClaimStatus)  # and one while recording
    async with running_reconciler(kube):
        kube.put(make_claim(new_uid()))
        record = await ready(kube)
    assert list(namespaces(kube)) == [record.namespace]
    assert kube.calls.count("create Namespace") == 1


async def test_a_taken_name_is_retried_and_an_event_failure_is_not_fatal() -> None:
    kube = MemoryKube()
    kube.fail_next("create", Namespace, Conflict("namespaces already exists", 409))
    kube.fail_next("create", Event)
    async with running_reconciler(kube):
        kube.put(make_claim(new_uid()))
        record = await ready(kube)
    assert kube.calls.count("create Namespace") == 2
    assert list(namespaces(kube)) == [record.namespace]
    assert events(kube) == []


async def provisioned(kube: MemoryKube, uid: str, **claim: Any) -> str:
    kube.put(make_claim(uid, **claim))
    return (await ready(kube)).namespace


async def test_collects_the_namespace_of_a_deleted_claim() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube):
        name = await provisioned(kube, new_uid())
        await kube.delete(ResourceClaim, "test-claim", "default")
        await eventually(lambda: name not in namespaces(kube), "namespace deleted")


async def test_collects_the_namespace_of_a_deallocated_claim() -> None:
    kube = MemoryKube()
    uid = new_uid()
    async with running_reconciler(kube):
        name = await provisioned(kube, uid)
        kube.put(make_claim(uid, allocated=False))
        await eventually(lambda: name not in namespaces(kube), "namespace deleted")


async def test_collects_the_namespace_of_a_claim_being_deleted() -> None:
    kube = MemoryKube()
    uid = new_uid()
    held = make_claim(uid)
    assert held.metadata
    held.metadata.finalizers = ["resource.kubernetes.io/delete-protection"]
    async with running_reconciler(kube):
        kube.put(held)
        name = (await ready(kube)).namespace
        await kube.delete(ResourceClaim, "test-claim", "default")
        await eventually(lambda: name not in namespaces(kube), "namespace deleted")
        assert claim_view(kube).deleting, "the claim itself still waits for its finalizer"


async def test_collects_the_namespace_of_a_released_device() -> None:
    kube = MemoryKube()
    uid = new_uid()
    async with running_reconciler(kube):
        kube.put(make_claim(uid, devices=[("ns", "slot-0"), ("ns", "slot-1")]))
        kept, released = (
            (await ready(kube, index=0)).namespace,
            (await ready(kube, index=1)).namespace,
        )
        kube.put(make_claim(uid, status_devices=[ready_device("slot-0", kept)]))
        await eventually(lambda: released not in namespaces(kube), "released namespace deleted")
        assert kept in namespaces(kube)


async def test_a_replaced_claim_gets_a_new_namespace_and_the_old_one_goes() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube):
        old = await provisioned(kube, new_uid())
        await kube.delete(ResourceClaim, "test-claim", "default")
        new = await provisioned(kube, new_uid())
        await eventually(lambda: list(namespaces(kube)) == [new], "only the new namespace")
    assert new != old


async def test_a_replacement_seen_only_by_a_relist_collects_the_old_namespace() -> None:
    kube = MemoryKube()
    second = new_uid()
    async with running_reconciler(kube):
        old = await provisioned(kube, new_uid())
        kube.end_watches()  # the watch drops ...
        kube.put(make_claim(second))  # ... while the claim is deleted and re-created
        new = (await ready(kube)).namespace
        await eventually(lambda: list(namespaces(kube)) == [new], "only the new namespace")
    assert new != old
    assert claim_view(kube).uid == second


async def test_a_claim_replaced_while_its_status_is_written_is_undone() -> None:
    kube = MemoryKube()
    first, second = new_uid(), new_uid()
    replaced: list[str] = []

    def replace_claim_once(verb: str, body: Any) -> None:
        if not replaced:
            replaced.append(verb)
            kube.put(make_claim(second))  # so the write carries a stale UID: 422

    kube.admit(ResourceClaimStatus, replace_claim_once)
    async with running_reconciler(kube):
        kube.put(make_claim(first))
        record = await ready(kube)
        await eventually(lambda: list(namespaces(kube)) == [record.namespace], "one namespace")
    assert claim_view(kube).uid == second
    labels = namespaces(kube)[record.namespace].metadata.labels  # type: ignore[union-attr]
    assert labels and labels[LABELS.claim_uid] == second
    assert kube.calls.count("create Namespace") == 2


async def test_the_sweep_collects_orphans_but_never_protected_or_unverified_namespaces() -> None:
    kube = MemoryKube()
    gone = new_uid()
    kube.put(signed_namespace("ephemeral-ns-orphan", gone))
    kube.put(signed_namespace(CONTROLLER_NAMESPACE, gone, device="slot-1"))
    kube.put(signed_namespace("kube-system", gone, device="slot-2"))
    kube.put(signed_namespace("ephemeral-ns-forged", gone, signer=Signer(b"x" * 32)))
    async with running_reconciler(kube):
        await eventually(lambda: "ephemeral-ns-orphan" not in namespaces(kube), "orphan deleted")
    assert sorted(namespaces(kube)) == sorted(
        [CONTROLLER_NAMESPACE, "kube-system", "ephemeral-ns-forged"]
    )


async def test_an_unverified_duplicate_of_a_live_claim_is_kept() -> None:
    kube = MemoryKube()
    uid = new_uid()
    kube.put(signed_namespace("ephemeral-ns-forged", uid, signer=Signer(b"x" * 32)))
    async with running_reconciler(kube) as reconciler:
        record = await provisioned(kube, uid)
        await settled(reconciler)
    assert record != "ephemeral-ns-forged", "never adopted"
    assert sorted(namespaces(kube)) == sorted([record, "ephemeral-ns-forged"])


async def test_the_periodic_sweep_finds_orphans_that_appear_later() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube, resync_seconds=0.1):
        kube.put(signed_namespace("ephemeral-ns-late", new_uid()))
        await eventually(lambda: namespaces(kube) == {}, "late orphan deleted")


def blind(kube: MemoryKube, res: Any) -> None:
    """Stop the controller's watch of ``res`` for good: its cache no longer follows."""
    kube.fail_next("list", res, times=10_000)
    kube.end_watches(KubeError("connection reset by peer"), res)


async def test_a_namespace_the_cache_has_not_seen_is_adopted_on_retry() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube) as reconciler:
        blind(kube, Namespace)
        kube.fail_next("apply", ResourceClaimStatus)  # the first attempt fails late
        kube.put(make_claim(new_uid()))
        record = await ready(kube)
        assert len(reconciler.namespaces) == 0, "the cache never saw the namespace"
    assert kube.calls.count("create Namespace") == 1
    assert list(namespaces(kube)) == [record.namespace]


async def test_a_namespace_already_being_deleted_is_not_deleted_again() -> None:
    kube = MemoryKube()
    uid = new_uid()

    def terminate_slowly(verb: str, namespace: Any) -> None:
        namespace.metadata.finalizers = ["kubernetes"]  # Terminating until the test is over

    kube.admit(Namespace, terminate_slowly)
    async with running_reconciler(kube) as reconciler:
        name = await provisioned(kube, uid)
        blind(kube, Namespace)
        kube.put(make_claim(uid, allocated=False))
        await eventually(lambda: "delete Namespace" in kube.calls, "the namespace deleted")
        reconciler.queue.add(("default", "test-claim"))  # the cache still shows it Active
        await settled(reconciler)
    assert namespaces(kube)[name].metadata.deletionTimestamp is not None  # type: ignore[union-attr]
    assert kube.calls.count("delete Namespace") == 1


async def test_a_claim_deleted_while_its_status_is_written_is_undone_at_once() -> None:
    kube = MemoryKube()

    def delete_claim_unseen(verb: str, body: Any) -> None:
        blind(kube, ResourceClaim)  # only the failed write tells the controller
        kube.remove(ResourceClaim, "test-claim", "default")

    kube.admit(ResourceClaimStatus, delete_claim_unseen)
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(new_uid()))
        await eventually(lambda: "create Namespace" in kube.calls, "a namespace created")
        await eventually(lambda: namespaces(kube) == {}, "the namespace deleted")
        assert ("default", "test-claim") in reconciler.claims.cache, "the watch never told"

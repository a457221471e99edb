"""Namespaces that expire (NamespaceConfig.lifetimeSeconds), against the in-memory API server
with the real reconciler, work queue and slice publisher: the expiry time is recorded, and at
expiry the device says so, the credentials are revoked, the slot is tainted (or the pods are
told, where the cluster drops taints), and the namespace goes once no pod uses it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import RoleRef, Subject
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.rbac_authorization_v1 import RoleBinding
from lightkube.resources.resource_v1 import ResourceClaim, ResourceSlice

from space_dra.config import SOURCE_CLAIM, SOURCE_CLASS, load_policy
from space_dra.contract import (
    CONDITION_HEALTHY,
    CONDITION_READY,
    DEFAULT_DRIVER_NAME,
    EXPIRES_AT_FIELD,
    TOKEN_MINTER_BINDING,
    WORKLOAD_BINDING,
    ClaimView,
    ManagementLabels,
    NamespaceView,
)
from space_dra.controller.gc import judge
from space_dra.controller.slices import PoolSpec, SlicePublisher, SlotTaints
from space_dra.kube_memory import MemoryKube
from space_dra.kubectl.model import status_data as status_data_of
from space_dra.times import parse_rfc3339
from tests.support.claims import make_claim, namespace_config, new_uid
from tests.support.controller import (
    claim_view,
    device_state,
    events,
    eventually,
    namespaces,
    running_reconciler,
    settled,
)
from tests.unit import test_warm_pool as warm_pool

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)
POD = ("pod0", "3c9e2f4a-0000-4000-8000-000000000001")
OTHER_POD = ("pod1", "3c9e2f4a-0000-4000-8000-000000000002")


class Clock:
    """The real clock shifted by ``offset``: timers still fire in real time."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def lifetime_claim(uid: str, seconds: int | None = 20, **changes: Any) -> ResourceClaim:
    fields = {} if seconds is None else {"lifetimeSeconds": seconds}
    changes.setdefault("reserved_for", [POD])
    return make_claim(uid, configs=[(SOURCE_CLAIM, namespace_config(**fields), ["ns"])], **changes)


def annotation(kube: MemoryKube, name: str) -> str | None:
    namespace = namespaces(kube).get(name)
    meta = namespace.metadata if namespace else None
    return ((meta.annotations if meta else None) or {}).get(LABELS.expires_at)


def health(kube: MemoryKube) -> tuple[str, str, str] | None:
    view = claim_view(kube)
    found = view.device_conditions(view.our_devices()[0]).get(CONDITION_HEALTHY)
    return (found.status, found.reason, found.message) if found else None


def status_data(kube: MemoryKube) -> dict[str, Any]:
    view = claim_view(kube)
    return dict(status_data_of(view.claim, DEFAULT_DRIVER_NAME, view.our_devices()[0]))


def bindings(kube: MemoryKube, namespace: str) -> set[str]:
    return {
        b.metadata.name
        for b in kube.stored(RoleBinding)
        if b.metadata and b.metadata.namespace == namespace and b.metadata.name
    }


def expired(kube: MemoryKube) -> bool:
    return (health(kube) or ("", ""))[1] == "NamespaceExpired"


def release(kube: MemoryKube, claim: ResourceClaim, *, deallocate: bool = False) -> None:
    """What Kubernetes does once the pods are gone: reservedFor empties (and the claim is
    deallocated, which also drops its status.devices)."""
    stored = claim_view(kube).claim
    assert stored.status is not None
    stored.status.reservedFor = None
    if deallocate:
        stored.status.allocation = None
        stored.status.devices = None
    kube.put(stored)


async def expire(reconciler: Any, clock: Clock, seconds: float) -> None:
    """Move the clock past the expiry and let the reconciler look again."""
    clock.jump(seconds)
    reconciler.requeue_all()
    await settled(reconciler)


@contextlib.asynccontextmanager
async def publishing(kube: MemoryKube, taints: SlotTaints) -> AsyncIterator[SlicePublisher]:
    publisher = SlicePublisher(kube, PoolSpec(DEFAULT_DRIVER_NAME, 2), taints)
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def slot_taints(kube: MemoryKube) -> dict[str, list[Any]]:
    return {
        d.name: d.taints
        for s in kube.stored(ResourceSlice)
        if s.spec
        for d in s.spec.devices or []
        if d.taints
    }


# -- when it expires ------------------------------------------------------------------------------


async def test_the_expiry_time_is_computed_and_recorded() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube) as reconciler:
        kube.put(lifetime_claim(new_uid(), 20))
        record = await eventually(lambda: device_state(kube).record, "ready")
        await settled(reconciler)

    namespace = namespaces(kube)[record.namespace]
    assert namespace.metadata and namespace.metadata.creationTimestamp
    made = namespace.metadata.creationTimestamp
    text = annotation(kube, record.namespace)
    assert text is not None and text.endswith("Z") and "." not in text, "RFC 3339, whole seconds"
    expires_at = parse_rfc3339(text)
    assert expires_at is not None
    assert timedelta(seconds=20) <= expires_at - made <= timedelta(seconds=21)
    # The claim's status data says the same, for kubectl space and the user.
    assert status_data(kube)[EXPIRES_AT_FIELD] == text
    assert record.expires_at == expires_at
    assert health(kube) is None, "nothing to report before the expiry"


async def test_no_lifetime_means_no_expiry() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube) as reconciler:
        kube.put(lifetime_claim(new_uid(), None))
        record = await eventually(lambda: device_state(kube).record, "ready")
        await settled(reconciler)
        assert reconciler.lifecycle._timers == {}

    assert annotation(kube, record.namespace) is None
    assert EXPIRES_AT_FIELD not in status_data(kube)
    assert record.expires_at is None


async def test_the_policy_default_applies_when_the_claim_sets_none() -> None:
    kube = MemoryKube()
    policy = load_policy({"defaultLifetimeSeconds": 600})
    async with running_reconciler(kube, policy=policy):
        kube.put(lifetime_claim(new_uid(), None))
        record = await eventually(lambda: device_state(kube).record, "ready")

    assert record.expires_at is not None
    namespace = namespaces(kube)[record.namespace]
    assert namespace.metadata and namespace.metadata.creationTimestamp
    lived = record.expires_at - namespace.metadata.creationTimestamp
    assert timedelta(seconds=600) <= lived <= timedelta(seconds=601)


async def test_the_policy_refuses_a_lifetime_over_the_cap() -> None:
    kube = MemoryKube()
    policy = load_policy({"maxLifetimeSeconds": 3600})
    async with running_reconciler(kube, policy=policy):
        kube.put(lifetime_claim(new_uid(), 7200))
        failure = await eventually(lambda: device_state(kube).failure, "refused")

    assert failure.startswith("InvalidConfig: ")
    assert "lifetimeSeconds" in failure and "policy.maxLifetimeSeconds" in failure
    assert namespaces(kube) == {}, "nothing is made for a refused claim"


# -- at expiry ------------------------------------------------------------------------------------


async def test_at_expiry_the_credentials_are_revoked_and_the_claim_says_so() -> None:
    kube = MemoryKube()
    clock = Clock()
    async with running_reconciler(kube, clock=clock) as reconciler:
        kube.put(lifetime_claim(new_uid(), 20))
        record = await eventually(lambda: device_state(kube).record, "ready")
        assert bindings(kube, record.namespace) == {WORKLOAD_BINDING, TOKEN_MINTER_BINDING}
        # With an admin role the workload may bind itself a role of its own making.
        kube.put(
            RoleBinding(
                metadata=ObjectMeta(name="keep-me", namespace=record.namespace),
                roleRef=RoleRef(
                    apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name="admin"
                ),
                subjects=[
                    Subject(kind="ServiceAccount", name="space-user", namespace=record.namespace)
                ],
            )
        )
        await settled(reconciler)
        assert events(kube, "NamespaceExpired") == []

        await expire(reconciler, clock, 25)

    status, reason, message = health(kube)  # type: ignore[misc]
    assert (status, reason) == ("False", "NamespaceExpired")
    assert record.namespace in message and "expired at" in message
    view = claim_view(kube)
    conditions = view.device_conditions(view.our_devices()[0])
    assert conditions[CONDITION_READY].status == "True", "what was provisioned stays recorded"
    assert device_state(kube).record == record
    # Every binding goes, and the ServiceAccount its tokens were minted for.
    assert bindings(kube, record.namespace) == set()
    assert kube.stored(ServiceAccount) == []
    assert record.namespace in namespaces(kube), "a pod still uses it"
    [event] = events(kube, "NamespaceExpired")
    assert event.type == "Warning"
    assert event.involvedObject.kind == "ResourceClaim"
    assert record.namespace in (event.message or "")


async def test_a_timer_reconciles_the_claim_when_it_expires() -> None:
    kube = MemoryKube()
    clock = Clock()
    async with running_reconciler(kube, clock=clock) as reconciler:
        kube.put(lifetime_claim(new_uid(), 20))
        record = await eventually(lambda: device_state(kube).record, "ready")
        await settled(reconciler)
        # 0.3 s before the expiry: nothing yet, and nobody touches the claim afterwards.
        assert record.expires_at is not None
        clock.jump((record.expires_at - clock()).total_seconds() - 0.3)
        reconciler.requeue_all()
        await settled(reconciler)
        assert health(kube) is None
        await eventually(lambda: expired(kube), "expired by the timer", within=3)


async def test_the_namespace_is_deleted_once_no_pod_uses_it() -> None:
    kube = MemoryKube()
    clock = Clock()
    claim = lifetime_claim(new_uid(), 20, reserved_for=[POD, OTHER_POD])
    async with running_reconciler(kube, clock=clock) as reconciler:
        kube.put(claim)
        record = await eventually(lambda: device_state(kube).record, "ready")
        await expire(reconciler, clock, 25)
        assert expired(kube)
        assert record.namespace in namespaces(kube), "kept while pods are reserved"

        # The pods are gone; the claim is still allocated (nobody deallocated it).
        release(kube, claim)
        await eventually(lambda: record.namespace not in namespaces(kube), "deleted")
        await settled(reconciler)

    assert namespaces(kube) == {}
    assert expired(kube), "stays NamespaceExpired, not NamespaceDeleted: we deleted it"
    assert events(kube, "NamespaceDeleted") == []


async def test_a_claim_that_never_expires_keeps_its_namespace() -> None:
    kube = MemoryKube()
    clock = Clock()
    async with running_reconciler(kube, clock=clock) as reconciler:
        claim = lifetime_claim(new_uid(), None)
        kube.put(claim)
        record = await eventually(lambda: device_state(kube).record, "ready")
        await expire(reconciler, clock, 10 * 365 * 24 * 3600)
        release(kube, claim)
        await settled(reconciler)

    assert health(kube) is None
    assert list(namespaces(kube)) == [record.namespace]
    assert bindings(kube, record.namespace) == {WORKLOAD_BINDING, TOKEN_MINTER_BINDING}


# -- stopping the pods ----------------------------------------------------------------------------


async def test_the_expired_slot_is_tainted_and_the_taint_goes_when_the_slot_is_free() -> None:
    kube = MemoryKube()
    clock = Clock()
    taints = SlotTaints()
    claim = lifetime_claim(new_uid(), 20)
    async with (
        running_reconciler(kube, clock=clock, taints=taints) as reconciler,
        publishing(kube, taints),
    ):
        kube.put(claim)
        record = await eventually(lambda: device_state(kube).record, "ready")
        await eventually(lambda: len(kube.stored(ResourceSlice)) == 1, "pool published")
        assert slot_taints(kube) == {}

        await expire(reconciler, clock, 25)
        tainted = await eventually(lambda: slot_taints(kube), "slot tainted")
        assert taints.supported is True

        # Pods evicted, claim deallocated: the slot is free again, and so is its taint.
        release(kube, claim, deallocate=True)
        await eventually(lambda: not slot_taints(kube), "taint removed")
        await eventually(lambda: record.namespace not in namespaces(kube), "namespace deleted")

    [taint] = tainted["slot-0"]
    assert (taint.key, taint.effect) == (LABELS.expired_taint, "NoExecute")
    assert taint.timeAdded == record.expires_at
    assert list(tainted) == ["slot-0"], "only the expired claim's slot"
    # Kubernetes' eviction controller tells the pods; we do not.
    assert [e for e in events(kube, "NamespaceExpired") if e.involvedObject.kind == "Pod"] == []


async def test_without_device_taints_the_pods_are_told_and_the_credentials_stop_them() -> None:
    kube = MemoryKube()

    def gate_off(verb: str, obj: Any) -> None:
        for device in obj.spec.devices or []:
            device.taints = None  # as an API server with DRADeviceTaints off does

    kube.admit(ResourceSlice, gate_off)
    clock = Clock()
    taints = SlotTaints()
    async with (
        running_reconciler(kube, clock=clock, taints=taints) as reconciler,
        publishing(kube, taints),
    ):
        kube.put(lifetime_claim(new_uid(), 20, reserved_for=[POD, OTHER_POD]))
        record = await eventually(lambda: device_state(kube).record, "ready")
        await eventually(lambda: len(kube.stored(ResourceSlice)) == 1, "pool published")

        await expire(reconciler, clock, 25)
        await eventually(lambda: taints.supported is False, "taints found unsupported")

        def told() -> list[Any] | None:
            found = [e for e in events(kube, "NamespaceExpired") if e.involvedObject.kind == "Pod"]
            return found if len(found) == 2 else None

        pod_events = await eventually(told, "both pods told")
        writes = kube.calls.count("apply ResourceSlice")
        await asyncio.sleep(0.5)
        assert kube.calls.count("apply ResourceSlice") == writes, "no endless rewriting"

    assert sorted((e.involvedObject.name, e.involvedObject.uid) for e in pod_events) == sorted(
        [POD, OTHER_POD]
    )
    assert all(e.type == "Warning" for e in pod_events)
    assert bindings(kube, record.namespace) == set(), "revoked credentials stop them"
    assert slot_taints(kube) == {}


async def test_a_restarted_controller_taints_again_without_repeating_events() -> None:
    kube = MemoryKube()
    clock = Clock()
    async with running_reconciler(kube, clock=clock) as reconciler:
        kube.put(lifetime_claim(new_uid(), 20))
        await eventually(lambda: device_state(kube).record, "ready")
        await expire(reconciler, clock, 25)
        assert len(events(kube, "NamespaceExpired")) == 1

    taints = SlotTaints()
    async with running_reconciler(kube, clock=clock, taints=taints) as reconciler:
        await settled(reconciler)
        assert list(taints.by_device()) == ["slot-0"]

    assert len(events(kube, "NamespaceExpired")) == 1


# -- the GC verdict -------------------------------------------------------------------------------


def test_gc_deletes_an_expired_namespace_only_once_nothing_is_reserved() -> None:
    uid = new_uid()
    expiry = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    namespace = NamespaceView(
        name="ephemeral-ns-abcde",
        uid="ns-uid",
        claim_uid=uid,
        device="space.slot-0",
        signature=None,
        deleting=False,
        created=expiry - timedelta(seconds=20),
        expires_at=expiry,
    )
    recorded = {
        "driver": DEFAULT_DRIVER_NAME,
        "pool": "space",
        "device": "slot-0",
        "data": {
            "namespace": namespace.name,
            "serviceAccount": "space-user",
            "server": "https://x",
        },
        "conditions": [
            {
                "type": CONDITION_READY,
                "status": "True",
                "reason": "Provisioned",
                "message": "",
                "lastTransitionTime": "2026-11-30T11:59:40Z",
            }
        ],
    }
    in_use = make_claim(uid, status_devices=[recorded], reserved_for=[POD])
    unused = make_claim(uid, status_devices=[recorded])

    def verdict(claim: ResourceClaim, now: datetime) -> str:
        view = ClaimView(claim, DEFAULT_DRIVER_NAME)
        result = judge(namespace, {uid: view}, frozenset(), True, now)
        return result.why if result.delete else "keep"

    before, after = expiry - timedelta(seconds=1), expiry + timedelta(seconds=1)
    assert verdict(unused, before) == "keep"
    assert verdict(in_use, after) == "keep"
    assert verdict(unused, after) == "expired"
    assert verdict(unused, expiry) == "expired"


async def test_a_warm_namespace_expires_a_lifetime_after_its_hand_over() -> None:
    kube = MemoryKube()
    kube.put(warm_pool.device_class(lifetimeSeconds=600))
    clock = Clock()
    clock.jump(3600)  # hand-over happens an hour after the warm namespaces were made
    async with running_reconciler(kube, warm=warm_pool.warm(), clock=clock) as reconciler:
        await eventually(lambda: len(warm_pool.ready_warm(kube)) == 2, "filled")
        await settled(reconciler)
        made = {ns.metadata.name or "" for ns in warm_pool.ready_warm(kube) if ns.metadata}
        assert all(annotation(kube, name) is None for name in made), "no lifetime before"
        configs = [
            (SOURCE_CLASS, namespace_config(lifetimeSeconds=600), []),
            (SOURCE_CLAIM, namespace_config(lifetimeSeconds=30), ["ns"]),
        ]
        kube.put(make_claim(new_uid(), configs=configs, reserved_for=[POD]))
        record = await eventually(lambda: device_state(kube).record, "ready")
        handed_over = clock()

    assert record.namespace in made, "the lifetime does not keep a claim from the warm pool"
    assert record.expires_at is not None
    assert timedelta(seconds=29) <= record.expires_at - handed_over <= timedelta(seconds=31)
    assert annotation(kube, record.namespace) == status_data(kube)[EXPIRES_AT_FIELD]

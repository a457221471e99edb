"""The controller's side of device health: a recorded namespace deleted or terminating
behind the driver's back is reported in the device's NamespaceHealthy condition (which the
kubelet plugin turns into the pod's device health), and never made again."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from space_dra.contract import (
    CONDITION_FAILED,
    CONDITION_HEALTHY,
    CONDITION_READY,
    DEFAULT_DRIVER_NAME,
    ClaimView,
    ManagementLabels,
    NamespaceRecord,
    NamespaceView,
)
from space_dra.controller.lifecycle import judge_health
from space_dra.controller.ownership import Signer
from space_dra.controller.status import DeviceOutcome, Health, device_status
from space_dra.kube_memory import MemoryKube
from tests.support.claims import (
    SERVER,
    condition,
    make_claim,
    new_uid,
    ready_device,
)
from tests.support.controller import (
    claim_view,
    device_state,
    events,
    eventually,
    namespaces,
    running_reconciler,
    settled,
)

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)


def conditions(kube: MemoryKube, index: int = 0) -> dict[str, Any]:
    view = claim_view(kube)
    return view.device_conditions(view.our_devices()[index])


def health(kube: MemoryKube, index: int = 0) -> tuple[str, str, str] | None:
    found = conditions(kube, index).get(CONDITION_HEALTHY)
    return (found.status, found.reason, found.message) if found else None


async def provisioned(kube: MemoryKube, devices: int = 1) -> list[str]:
    """The namespaces of the claim's devices, once all are ready."""

    def ready(index: int) -> NamespaceRecord | None:
        return device_state(kube, index=index).record

    names = []
    for index in range(devices):
        record = await eventually(functools.partial(ready, index), f"device {index} ready")
        names.append(record.namespace)
    return names


def reason_of(kube: MemoryKube) -> str:
    found = health(kube)
    return found[1] if found else ""


async def test_a_namespace_deleted_out_of_band_is_reported_and_not_made_again() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(new_uid()))
        [name] = await provisioned(kube)
        assert health(kube) is None, "no condition while all is well"

        kube.remove(Namespace, name)
        status, reason, message = await eventually(lambda: health(kube), "NamespaceHealthy")
        await settled(reconciler)

    assert (status, reason) == ("False", "NamespaceDeleted")
    assert name in message and "outside the driver" in message
    # What was provisioned stays recorded: the plugin reads the condition next to it.
    found = conditions(kube)
    assert found[CONDITION_READY].status == "True"
    assert found[CONDITION_FAILED].status == "False"
    assert device_state(kube).record == NamespaceRecord(name, "space-user", SERVER)
    assert namespaces(kube) == {}, "a namespace deleted behind our back is not made again"
    [event] = events(kube, "NamespaceDeleted")
    assert event.type == "Warning" and name in (event.message or "")


async def test_a_terminating_namespace_then_gone() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube):
        kube.put(make_claim(new_uid()))
        [name] = await provisioned(kube)
        # Something else holds the namespace in Terminating with a finalizer of its own.
        stored = namespaces(kube)[name]
        assert stored.metadata is not None
        stored.metadata.finalizers = ["example.com/slow"]
        kube.put(stored)
        await kube.delete(Namespace, name)

        terminating = await eventually(lambda: health(kube), "NamespaceTerminating")
        assert terminating[:2] == ("False", "NamespaceTerminating")
        assert name in terminating[2]

        stored = namespaces(kube)[name]
        assert stored.metadata is not None
        stored.metadata.finalizers = []
        kube.put(stored)  # the last finalizer goes: the namespace is gone
        await eventually(lambda: reason_of(kube) == "NamespaceDeleted", "deleted")

    assert sorted(e.reason or "" for e in events(kube) if e.type == "Warning") == [
        "NamespaceDeleted",
        "NamespaceTerminating",
    ]


async def test_health_returns_when_the_namespace_shows_up_again() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube):
        kube.put(make_claim(new_uid()))
        [name] = await provisioned(kube)
        # Someone strips the management label: the namespace leaves our watch's view...
        stored = namespaces(kube)[name]
        assert stored.metadata is not None and stored.metadata.labels is not None
        labels = dict(stored.metadata.labels)
        stored.metadata.labels = {}
        kube.put(stored)
        await eventually(lambda: (health(kube) or ("",))[0] == "False", "reported gone")

        # ...and puts it back.
        stored.metadata.labels = labels
        kube.put(stored)
        back = await eventually(
            lambda: (health(kube) or ("",))[0] == "True" and health(kube), "healthy again"
        )

    assert back == ("True", "NamespaceActive", f"namespace {name} is active")
    assert {e.reason for e in events(kube)} == {
        "NamespaceProvisioned",
        "NamespaceDeleted",
        "NamespaceActive",
    }


async def test_only_the_device_whose_namespace_went_is_reported() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube):
        kube.put(make_claim(new_uid(), devices=[("a", "slot-0"), ("b", "slot-1")]))
        first, second = await provisioned(kube, devices=2)
        kube.remove(Namespace, second)
        await eventually(lambda: health(kube, 1), "device 1 reported")

    assert health(kube, 0) is None
    assert health(kube, 1)[:2] == ("False", "NamespaceDeleted")  # type: ignore[index]
    assert list(namespaces(kube)) == [first]


def test_other_status_writes_keep_the_health_condition() -> None:
    uid = new_uid()
    entry = ready_device("slot-0", "ns-a")
    entry["conditions"].append(
        condition(CONDITION_HEALTHY, "False", "NamespaceDeleted", "ns-a was deleted")
    )
    view = ClaimView(make_claim(uid, status_devices=[entry]), DEFAULT_DRIVER_NAME)
    device = view.our_devices()[0]
    record = NamespaceRecord("ns-a", "space-user", SERVER)

    kept = device_status(view, DeviceOutcome(device, record=record))
    [healthy] = [c for c in kept.conditions or [] if c.type == CONDITION_HEALTHY]
    assert (healthy.status, healthy.reason) == ("False", "NamespaceDeleted")
    assert healthy.lastTransitionTime is not None
    assert healthy.lastTransitionTime.isoformat().startswith("2026-11-26")

    told = device_status(
        view, DeviceOutcome(device, record=record, health=Health(True, "NamespaceActive", "ok"))
    )
    [healthy] = [c for c in told.conditions or [] if c.type == CONDITION_HEALTHY]
    assert (healthy.status, healthy.reason) == ("True", "NamespaceActive")


def test_judge_health() -> None:
    record = NamespaceRecord("ns-a", "space-user", SERVER)
    live = NamespaceView.of(Namespace(metadata=ObjectMeta(name="ns-a")), LABELS)
    going = NamespaceView.of(
        Namespace(
            metadata=ObjectMeta(name="ns-a", deletionTimestamp=datetime(2026, 1, 1, tzinfo=UTC))
        ),
        LABELS,
    )
    sick = Health(False, "NamespaceDeleted", "gone")
    well = Health(True, "NamespaceActive", "namespace ns-a is active")

    assert judge_health(record, live, None) is None
    assert judge_health(record, live, well) == well
    assert judge_health(record, live, sick) == well
    assert judge_health(record, None, None) is not None
    assert judge_health(record, None, None).reason == "NamespaceDeleted"  # type: ignore[union-attr]
    assert judge_health(record, going, None).reason == "NamespaceTerminating"  # type: ignore[union-attr]


async def test_a_changed_ownership_key_does_not_make_namespaces_look_gone() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube):
        kube.put(make_claim(new_uid()))
        [name] = await provisioned(kube)
    # The key Secret was replaced: our namespaces no longer verify (GC keeps them), but
    # they are there, and the pods using them are fine.
    async with running_reconciler(kube, signer=Signer(b"x" * 32)) as reconciler:
        reconciler.requeue_all()
        await settled(reconciler)

    assert health(kube) is None
    assert list(namespaces(kube)) == [name]

"""Publishing the pool as ResourceSlices, against the in-memory API server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.resource_v1 import DeviceClass, ResourceSlice

from space_dra.contract import CONDITION_FAILED, CONDITION_READY, DEFAULT_DRIVER_NAME, POOL_NAME
from space_dra.controller.slices import MAX_DEVICES_PER_SLICE, PoolSpec, SlicePublisher
from space_dra.kube_memory import MemoryKube
from tests.support.controller import eventually


@contextlib.asynccontextmanager
async def publishing(kube: MemoryKube, spec: PoolSpec) -> AsyncIterator[SlicePublisher]:
    publisher = SlicePublisher(kube, spec)
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def devices(kube: MemoryKube) -> list[Any]:
    return [d for s in kube.stored(ResourceSlice) if s.spec for d in s.spec.devices or []]


def generations(kube: MemoryKube) -> set[int]:
    return {s.spec.pool.generation for s in kube.stored(ResourceSlice) if s.spec}


def published(kube: MemoryKube, size: int) -> bool:
    return len(devices(kube)) == size and len(generations(kube)) == 1


async def test_publishes_the_pool_with_typed_attributes() -> None:
    kube = MemoryKube()
    spec = PoolSpec(DEFAULT_DRIVER_NAME, 3, {"profile": "standard", "tier": 2, "fast": True})
    async with publishing(kube, spec):
        await eventually(lambda: published(kube, 3), "three devices")
    [published_slice] = kube.stored(ResourceSlice)
    assert published_slice.spec and published_slice.metadata
    assert published_slice.metadata.labels == {f"{DEFAULT_DRIVER_NAME}/pool": POOL_NAME}
    assert published_slice.spec.allNodes
    assert published_slice.spec.pool.name == POOL_NAME
    assert published_slice.spec.pool.resourceSliceCount == 1
    assert published_slice.spec.pool.generation == 1
    assert [d.name for d in devices(kube)] == ["slot-0", "slot-1", "slot-2"]
    assert devices(kube)[2].attributes == {
        "index": {"int": 2},
        "profile": {"string": "standard"},
        "tier": {"int": 2},
        "fast": {"bool": True},
    }


async def test_an_unchanged_pool_is_not_written_again() -> None:
    kube = MemoryKube()
    async with publishing(kube, PoolSpec(DEFAULT_DRIVER_NAME, 2)) as publisher:
        await eventually(lambda: published(kube, 2), "published")
        writes = kube.calls.count("apply ResourceSlice")
        await publisher.sync()
        await asyncio.sleep(0.3)  # our own writes echoing back must not cause more
    assert kube.calls.count("apply ResourceSlice") == writes
    assert generations(kube) == {1}


async def test_a_resized_pool_bumps_the_generation_and_drops_stale_slices() -> None:
    kube = MemoryKube()
    big = MAX_DEVICES_PER_SLICE + 10
    async with publishing(kube, PoolSpec(DEFAULT_DRIVER_NAME, big)):
        await eventually(lambda: published(kube, big), "two slices")
    assert len(kube.stored(ResourceSlice)) == 2
    assert {s.spec.pool.resourceSliceCount for s in kube.stored(ResourceSlice) if s.spec} == {2}

    async with publishing(kube, PoolSpec(DEFAULT_DRIVER_NAME, 4)):  # restarted with a new size
        await eventually(lambda: published(kube, 4), "one slice of four")
    [small] = kube.stored(ResourceSlice)
    assert small.spec and small.spec.pool.generation == 2
    assert small.spec.pool.resourceSliceCount == 1
    assert [d.name for d in devices(kube)] == ["slot-0", "slot-1", "slot-2", "slot-3"]


async def test_slices_deleted_behind_its_back_come_back_with_a_higher_generation() -> None:
    kube = MemoryKube()
    async with publishing(kube, PoolSpec(DEFAULT_DRIVER_NAME, 2)):
        await eventually(lambda: published(kube, 2), "published")
        [name] = [s.metadata.name for s in kube.stored(ResourceSlice) if s.metadata]
        await kube.delete(ResourceSlice, name or "")
        await eventually(lambda: published(kube, 2) and generations(kube) == {2}, "re-created")


async def test_a_failed_write_is_retried() -> None:
    kube = MemoryKube()
    kube.fail_next("apply", ResourceSlice)
    async with publishing(kube, PoolSpec(DEFAULT_DRIVER_NAME, 1)):
        await eventually(lambda: published(kube, 1), "published after a retry", within=5)


async def test_binding_conditions_on_and_off() -> None:
    kube = MemoryKube()
    async with publishing(kube, PoolSpec(DEFAULT_DRIVER_NAME, 1, binding_conditions="on")):
        await eventually(lambda: published(kube, 1), "published")
    [device] = devices(kube)
    assert device.bindingConditions == [CONDITION_READY]
    assert device.bindingFailureConditions == [CONDITION_FAILED]

    async with publishing(kube, PoolSpec(DEFAULT_DRIVER_NAME, 1, binding_conditions="off")):
        await eventually(lambda: generations(kube) == {2}, "republished")
    [device] = devices(kube)
    assert not device.bindingConditions and not device.bindingFailureConditions


def feature_gate_off(verb: str, resource_slice: Any) -> None:
    """An API server without DRADeviceBindingConditions drops the fields."""
    for device in resource_slice.spec.devices or []:
        device.bindingConditions = None
        device.bindingFailureConditions = None


async def test_auto_discovers_that_the_api_server_drops_binding_conditions() -> None:
    kube = MemoryKube()
    kube.admit(ResourceSlice, feature_gate_off)
    spec = PoolSpec(DEFAULT_DRIVER_NAME, 1, binding_conditions="auto")
    async with publishing(kube, spec) as publisher:
        await eventually(lambda: not publisher.binding_conditions, "discovered")
    assert not devices(kube)[0].bindingConditions


async def test_auto_keeps_binding_conditions_the_api_server_keeps() -> None:
    kube = MemoryKube()
    spec = PoolSpec(DEFAULT_DRIVER_NAME, 1, binding_conditions="auto")
    async with publishing(kube, spec) as publisher:
        await eventually(lambda: published(kube, 1), "published")
        assert publisher.binding_conditions
    assert devices(kube)[0].bindingConditions == [CONDITION_READY]


async def test_the_device_class_owns_the_slices_when_it_exists() -> None:
    kube = MemoryKube()
    owner = await kube.create(DeviceClass(metadata=ObjectMeta(name="space")))
    spec = PoolSpec(DEFAULT_DRIVER_NAME, 1, owner_device_class="space")
    async with publishing(kube, spec):
        await eventually(lambda: published(kube, 1), "published")
    [published_slice] = kube.stored(ResourceSlice)
    references = published_slice.metadata.ownerReferences if published_slice.metadata else None
    assert owner.metadata
    assert [(r.kind, r.name, r.uid) for r in references or []] == [
        ("DeviceClass", "space", owner.metadata.uid)
    ]


async def test_a_missing_owner_device_class_only_leaves_the_slices_unowned() -> None:
    kube = MemoryKube()
    spec = PoolSpec(DEFAULT_DRIVER_NAME, 1, owner_device_class="missing")
    async with publishing(kube, spec):
        await eventually(lambda: published(kube, 1), "published")
    [published_slice] = kube.stored(ResourceSlice)
    assert published_slice.metadata and not published_slice.metadata.ownerReferences


async def test_slices_of_other_drivers_are_left_alone() -> None:
    kube = MemoryKube()
    async with publishing(kube, PoolSpec("gpu.example.com", 1)):
        await eventually(lambda: published(kube, 1), "the other driver's pool")
    async with publishing(kube, PoolSpec(DEFAULT_DRIVER_NAME, 2)):
        await eventually(lambda: len(devices(kube)) == 3, "ours beside theirs")
    drivers = sorted(s.spec.driver for s in kube.stored(ResourceSlice) if s.spec)
    assert drivers == sorted([DEFAULT_DRIVER_NAME, "gpu.example.com"])

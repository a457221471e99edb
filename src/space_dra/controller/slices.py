"""Publish the pool of namespace slots as ResourceSlices.

The pool ``space`` is available on all nodes (``allNodes``) and has N devices
``slot-0`` .. ``slot-<N-1>``: N caps how many ephemeral namespaces can exist, so a
burst of claims leaves pods Pending with the scheduler's reason instead of
flooding the cluster. Slot names are stable, so changing N only adds or removes
the slots at the end; existing allocations keep their devices.

Devices carry the configured attributes (for CEL selectors) and, where the
cluster supports it, binding conditions so the scheduler binds a pod only after
its namespace is ready. Support is discovered by writing a slice with the fields
and reading it back: an API server with the feature gate off drops them.

The slot of an expired namespace carries a ``NoExecute`` taint (see :mod:`lifecycle`,
which fills :class:`SlotTaints`), so Kubernetes evicts the pods using it; whether the
cluster keeps device taints (``DRADeviceTaints``: beta in 1.36, GA in 1.37) is found
out the same way, at the first write of a taint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.models.resource_v1 import (
    Device,
    DeviceAttribute,
    DeviceTaint,
    ResourcePool,
    ResourceSliceSpec,
)
from lightkube.resources.resource_v1 import ResourceSlice

from space_dra.contract import CONDITION_FAILED, CONDITION_READY, POOL_NAME
from space_dra.controller.informer import Informer, key_of
from space_dra.controller.owner import device_class_owner
from space_dra.kube import ControllerAPI, KubeError, NotFound
from space_dra.logs import log_event
from space_dra.metrics import POOL_SIZE

log = logging.getLogger(__name__)

# The API allows 128 devices per slice, but only 64 once any of them has a taint.
MAX_DEVICES_PER_SLICE = 64


@dataclass(frozen=True)
class PoolSpec:
    driver: str
    size: int
    attributes: Mapping[str, str | int | bool] = field(default_factory=dict)
    # "auto" (discover), "on" or "off".
    binding_conditions: str = "off"
    # The DeviceClass that owns the slices, so deleting it (helm uninstall)
    # garbage-collects them; slices are cluster-scoped, so a Deployment cannot own them.
    owner_device_class: str = ""


class SlotTaints:
    """The taints the slots should carry, by the claim that holds them, and whether the
    cluster keeps them (None until the first write of a taint tells)."""

    def __init__(self) -> None:
        self._by_claim: dict[str, dict[str, DeviceTaint]] = {}
        self.supported: bool | None = None
        self._on_change: list[Callable[[], None]] = []
        self._on_verdict: list[Callable[[bool], None]] = []

    def on_change(self, callback: Callable[[], None]) -> None:
        self._on_change.append(callback)

    def on_verdict(self, callback: Callable[[bool], None]) -> None:
        self._on_verdict.append(callback)

    def set(self, claim_uid: str, taints: Mapping[str, DeviceTaint]) -> None:
        """The taints (device name -> taint) of the slots ``claim_uid`` holds; {} for none."""
        if self._by_claim.get(claim_uid, {}) == taints:
            return
        if taints:
            self._by_claim[claim_uid] = dict(taints)
        else:
            del self._by_claim[claim_uid]
        for callback in self._on_change:
            callback()

    def by_device(self) -> dict[str, list[DeviceTaint]]:
        found: dict[str, list[DeviceTaint]] = {}
        for taints in self._by_claim.values():
            for device, taint in taints.items():
                found.setdefault(device, []).append(taint)
        return found

    def verdict(self, supported: bool) -> None:
        if self.supported == supported:
            return
        self.supported = supported
        for callback in self._on_verdict:
            callback(supported)


def _attribute(value: str | int | bool) -> DeviceAttribute:
    if isinstance(value, bool):
        return DeviceAttribute(bool=value)
    if isinstance(value, int):
        return DeviceAttribute(int=value)
    return DeviceAttribute(string=value)


def slice_name(driver: str, index: int) -> str:
    return f"{driver}-{POOL_NAME}-{index}"


def desired_devices(
    spec: PoolSpec,
    with_binding_conditions: bool,
    taints: Mapping[str, list[DeviceTaint]] | None = None,
) -> list[Device]:
    devices = []
    for index in range(spec.size):
        attributes = {name: _attribute(value) for name, value in spec.attributes.items()}
        attributes["index"] = DeviceAttribute(int=index)
        device = Device(name=f"slot-{index}", attributes=attributes)
        device.taints = (taints or {}).get(device.name) or None
        if with_binding_conditions:
            device.bindingConditions = [CONDITION_READY]
            device.bindingFailureConditions = [CONDITION_FAILED]
        devices.append(device)
    return devices


def desired_slices(
    spec: PoolSpec,
    generation: int,
    with_binding_conditions: bool,
    owner: OwnerReference | None = None,
    taints: Mapping[str, list[DeviceTaint]] | None = None,
) -> list[ResourceSlice]:
    devices = desired_devices(spec, with_binding_conditions, taints)
    chunks = [
        devices[i : i + MAX_DEVICES_PER_SLICE]
        for i in range(0, len(devices), MAX_DEVICES_PER_SLICE)
    ]
    chunks = chunks or [[]]
    return [
        ResourceSlice(
            metadata=ObjectMeta(
                name=slice_name(spec.driver, index),
                labels={f"{spec.driver}/pool": POOL_NAME},
                ownerReferences=[owner] if owner else None,
            ),
            spec=ResourceSliceSpec(
                driver=spec.driver,
                pool=ResourcePool(
                    name=POOL_NAME, generation=generation, resourceSliceCount=len(chunks)
                ),
                allNodes=True,
                devices=chunk,
            ),
        )
        for index, chunk in enumerate(chunks)
    ]


def _content(slices: list[ResourceSlice]) -> list[Any]:
    """What matters for equality: names and device lists, not generation."""
    return sorted(
        (
            s.metadata.name if s.metadata else "",
            [o.uid for o in (s.metadata.ownerReferences or [])] if s.metadata else [],
            [d.to_dict() for d in (s.spec.devices or [])] if s.spec else [],
        )
        for s in slices
    )


class SlicePublisher:
    def __init__(
        self, kube: ControllerAPI, spec: PoolSpec, taints: SlotTaints | None = None
    ) -> None:
        self.kube = kube
        self.spec = spec
        self.taints = taints or SlotTaints()
        self.binding_conditions: bool = spec.binding_conditions != "off"
        # The highest generation this process published: slices deleted behind
        # our back must not make the generation go backwards.
        self._generation = 0
        self.owner: OwnerReference | None = None
        # Until the pool is out, the scheduler has no device of ours to allocate.
        self.published = False
        self._dirty = asyncio.Event()
        self.informer: Informer[ResourceSlice] = Informer(
            kube, ResourceSlice, self._on_event, fields={"spec.driver": spec.driver}
        )
        self.taints.on_change(self._dirty.set)

    def _on_event(self, event: str, old: Any, new: Any) -> None:
        self._dirty.set()

    def _ours(self) -> list[ResourceSlice]:
        return [
            s
            for s in self.informer.cache.values()
            if s.spec is not None
            and s.spec.driver == self.spec.driver
            and s.spec.pool.name == POOL_NAME
        ]

    async def sync(self) -> None:
        """Make the published slices match the spec; bump the generation on any change."""
        current = self._ours()
        generation = max(
            (s.spec.pool.generation for s in current if s.spec), default=self._generation
        )
        # Where the cluster drops taints, writing them again would never converge.
        taints = self.taints.by_device() if self.taints.supported is not False else {}
        wanted = desired_slices(self.spec, generation, self.binding_conditions, self.owner, taints)
        if _content(current) == _content(wanted) and all(
            s.spec is not None and s.spec.pool.resourceSliceCount == len(wanted) for s in current
        ):
            return
        generation = max(generation, self._generation) + 1
        self._generation = generation
        wanted = desired_slices(self.spec, generation, self.binding_conditions, self.owner, taints)
        for obj in wanted:
            applied = await self.kube.apply(obj)
            # Write through, so the next sync compares against what we just wrote
            # even before the watch echoes it back.
            self.informer.cache[key_of(applied)] = applied
            self._check_binding_support(applied)
            self._check_taint_support(obj, applied)
        wanted_names = {s.metadata.name for s in wanted if s.metadata}
        for stale in current:
            name = stale.metadata.name if stale.metadata else None
            if name and name not in wanted_names:
                with contextlib.suppress(NotFound):
                    await self.kube.delete(ResourceSlice, name)
                self.informer.cache.pop(key_of(stale), None)
        POOL_SIZE.set(self.spec.size)
        log_event(
            log,
            logging.INFO,
            "pool_published",
            driver=self.spec.driver,
            devices=self.spec.size,
            slices=len(wanted),
            generation=generation,
            binding_conditions=self.binding_conditions,
        )

    def _check_binding_support(self, applied: ResourceSlice) -> None:
        if self.spec.binding_conditions != "auto" or not self.binding_conditions:
            return
        devices = (applied.spec.devices if applied.spec else None) or []
        if devices and not devices[0].bindingConditions:
            # The API server dropped the field: the feature gate is off.
            self.binding_conditions = False
            self._dirty.set()
            log_event(
                log, logging.WARNING, "binding_conditions_unsupported", driver=self.spec.driver
            )

    def _check_taint_support(self, wanted: ResourceSlice, applied: ResourceSlice) -> None:
        sent = {d.name for d in (wanted.spec.devices if wanted.spec else None) or [] if d.taints}
        if not sent:
            return
        kept = {d.name for d in (applied.spec.devices if applied.spec else None) or [] if d.taints}
        supported = sent <= kept
        if not supported:
            # The API server dropped the field: the DRADeviceTaints feature gate is off.
            self._dirty.set()
            log_event(log, logging.WARNING, "device_taints_unsupported", driver=self.spec.driver)
        self.taints.verdict(supported)

    async def run(self) -> None:
        self.owner = await device_class_owner(self.kube, self.spec.owner_device_class)
        watcher = asyncio.create_task(self.informer.run(), name="slice-informer")
        try:
            await self.informer.synced.wait()
            self._dirty.set()
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                try:
                    await self.sync()
                    self.published = True
                except KubeError as exc:
                    log_event(log, logging.ERROR, "pool_publish_failed", error=str(exc))
                    await asyncio.sleep(2)
                    self._dirty.set()
                # Coalesce bursts of slice events (our own writes echo back).
                await asyncio.sleep(0.2)
        finally:
            watcher.cancel()

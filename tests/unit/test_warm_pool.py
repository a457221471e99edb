"""The warm pool: namespaces made ahead of claims, handed over with one write, never twice,
never beyond the pool's cap, and replaced when the default settings change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import RoleBinding
from lightkube.resources.resource_v1 import DeviceClass

from space_dra.config import SOURCE_CLAIM, SOURCE_CLASS, Policy
from space_dra.contract import (
    DEFAULT_DRIVER_NAME,
    TOKEN_MINTER_BINDING,
    WORKLOAD_BINDING,
    WORKLOAD_SERVICE_ACCOUNT,
    DeviceRef,
    ManagementLabels,
)
from space_dra.controller import warm as warm_module
from space_dra.controller.namespaces import ManagedNamespaces
from space_dra.controller.warm import WarmOptions, WarmPool
from space_dra.kube import KubeError
from space_dra.kube_memory import MemoryKube
from tests.support.claims import make_claim, namespace_config, new_uid
from tests.support.controller import (
    SIGNER,
    device_state,
    eventually,
    running_reconciler,
    settled,
)

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)
CLASS = "space"


def device_class(**defaults: Any) -> DeviceClass:
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": CLASS},
        "spec": {
            "config": [
                {
                    "opaque": {
                        "driver": DEFAULT_DRIVER_NAME,
                        "parameters": namespace_config(**defaults),
                    }
                }
            ]
        },
    }
    klass = DeviceClass.from_dict(body)
    assert isinstance(klass, DeviceClass)
    return klass


def warm(size: int = 2, pool_size: int = 4) -> WarmOptions:
    return WarmOptions(size=size, pool_size=pool_size, device_class=CLASS, policy=Policy())


def filled(kube: MemoryKube, count: int) -> list[Namespace] | None:
    """The ready warm namespaces once there are ``count`` of them."""
    made = ready_warm(kube)
    return made if len(made) == count else None


def ready_warm(kube: MemoryKube) -> list[Namespace]:
    return [
        ns
        for ns in kube.stored(Namespace)
        if ns.metadata
        and not ns.metadata.deletionTimestamp
        and (ns.metadata.labels or {}).get(LABELS.warm, "")
        and not (ns.metadata.labels or {}).get(LABELS.warm, "").startswith("filling-")
    ]


def stored_metadata(kube: MemoryKube, name: str) -> tuple[Namespace, ObjectMeta]:
    [found] = [ns for ns in kube.stored(Namespace) if ns.metadata and ns.metadata.name == name]
    assert found.metadata is not None
    return found, found.metadata


def in_namespace(kube: MemoryKube, res: type[Any], namespace: str) -> set[str]:
    return {obj.metadata.name for obj in kube.stored(res) if obj.metadata.namespace == namespace}


def class_config(**defaults: Any) -> list[tuple[str, dict[str, Any], list[str]]]:
    return [(SOURCE_CLASS, namespace_config(**defaults), [])]


async def test_the_pool_fills_with_complete_unclaimed_namespaces() -> None:
    kube = MemoryKube()
    kube.put(device_class(networkPolicy="deny-ingress"))
    async with running_reconciler(kube, warm=warm()):
        made = await eventually(lambda: filled(kube, 2), "filled")
        for ns in made:
            assert ns.metadata is not None and ns.metadata.labels is not None
            name = ns.metadata.name or ""
            assert (
                LABELS.claim_uid not in ns.metadata.labels
                or not ns.metadata.labels[LABELS.claim_uid]
            )
            assert in_namespace(kube, ServiceAccount, name) == {WORKLOAD_SERVICE_ACCOUNT}
            assert in_namespace(kube, RoleBinding, name) == {WORKLOAD_BINDING, TOKEN_MINTER_BINDING}
            assert SIGNER.verify(
                (ns.metadata.annotations or {}).get(LABELS.ownership), name, "", "warm.namespace"
            ), "signed, so only we ever delete it"
            [owner] = ns.metadata.ownerReferences or []
            assert (owner.kind, owner.name) == ("DeviceClass", CLASS), "uninstall removes it"


async def test_a_default_claim_takes_one_with_two_writes_and_the_pool_refills() -> None:
    kube = MemoryKube()
    kube.put(device_class())
    async with running_reconciler(kube, warm=warm()) as reconciler:
        await eventually(lambda: len(ready_warm(kube)) == 2, "filled")
        await settled(reconciler)
        warm_names = {ns.metadata.name for ns in ready_warm(kube) if ns.metadata}
        before = len(kube.calls)
        uid = new_uid()
        kube.put(make_claim(uid, configs=class_config()))
        record = await eventually(lambda: device_state(kube).record, "ready")
        assert record.namespace in warm_names
        writes = [
            call
            for call in kube.calls[before:]
            if (call.split()[0] in ("create", "replace", "apply") and "Namespace" in call)
            or "ResourceClaimStatus" in call
        ]
        claim_writes = [
            c for c in writes if c in ("replace Namespace", "apply ResourceClaimStatus")
        ]
        assert claim_writes[:2] == ["replace Namespace", "apply ResourceClaimStatus"]
        [handed] = [
            ns
            for ns in kube.stored(Namespace)
            if ns.metadata and ns.metadata.name == record.namespace
        ]
        assert handed.metadata is not None and handed.metadata.labels is not None
        assert handed.metadata.labels[LABELS.claim_uid] == uid
        assert LABELS.warm not in handed.metadata.labels
        assert not handed.metadata.ownerReferences, "the claim's now: not removed with the class"
        assert SIGNER.verify(
            (handed.metadata.annotations or {}).get(LABELS.ownership),
            record.namespace,
            uid,
            "space.slot-0",
        )
        await eventually(lambda: len(ready_warm(kube)) == 2, "refilled")


async def test_a_claim_asking_for_more_gets_a_cold_namespace() -> None:
    kube = MemoryKube()
    kube.put(device_class())
    async with running_reconciler(kube, warm=warm()):
        await eventually(lambda: len(ready_warm(kube)) == 2, "filled")
        warm_names = {ns.metadata.name for ns in ready_warm(kube) if ns.metadata}
        own = [*class_config(), (SOURCE_CLAIM, namespace_config(role="view"), ["ns"])]
        kube.put(make_claim(new_uid(), configs=own))
        record = await eventually(lambda: device_state(kube).record, "ready")
        assert record.namespace not in warm_names


async def test_two_claims_never_share_a_warm_namespace() -> None:
    kube = MemoryKube()
    kube.put(device_class())
    async with running_reconciler(kube, warm=warm(size=1, pool_size=4)) as reconciler:
        await eventually(lambda: len(ready_warm(kube)) == 1, "filled")
        kube.put(make_claim(new_uid(), name="a", configs=class_config()))
        kube.put(make_claim(new_uid(), name="b", configs=class_config()))
        a = await eventually(lambda: device_state(kube, "a").record, "a ready")
        b = await eventually(lambda: device_state(kube, "b").record, "b ready")
        assert a.namespace != b.namespace
        await settled(reconciler)


async def test_warm_namespaces_count_in_the_pool() -> None:
    kube = MemoryKube()
    kube.put(device_class())
    async with running_reconciler(kube, warm=warm(size=2, pool_size=3)):
        await eventually(lambda: len(ready_warm(kube)) == 2, "filled")
        kube.put(make_claim(new_uid(), name="a", configs=class_config(role="view")))
        kube.put(make_claim(new_uid(), name="b", configs=class_config(role="view")))
        await eventually(lambda: device_state(kube, "b").record, "b ready")
        # Two slots held: one warm namespace at most, the surplus one deleted.
        await eventually(lambda: len(ready_warm(kube)) == 1, "shrunk to the free slots")
        live = [
            ns for ns in kube.stored(Namespace) if ns.metadata and not ns.metadata.deletionTimestamp
        ]
        assert len(live) <= 3


async def test_changed_defaults_replace_the_pool() -> None:
    kube = MemoryKube()
    kube.put(device_class())
    async with running_reconciler(kube, warm=warm()) as reconciler:
        old = await eventually(lambda: filled(kube, 2), "filled")
        old_names = {ns.metadata.name for ns in old if ns.metadata}
        kube.put(device_class(podSecurity="restricted"))
        assert reconciler.warm is not None
        reconciler.warm.wake()

        def replaced() -> bool:
            names = {ns.metadata.name for ns in ready_warm(kube) if ns.metadata}
            return len(names) == 2 and not names & old_names

        await eventually(replaced, "replaced", within=10)
        for ns in ready_warm(kube):
            assert ns.metadata is not None and ns.metadata.labels is not None
            assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"


async def test_the_sweep_leaves_warm_namespaces_to_the_pool() -> None:
    kube = MemoryKube()
    kube.put(device_class())
    async with running_reconciler(kube, warm=warm()) as reconciler:
        await eventually(lambda: len(ready_warm(kube)) == 2, "filled")
        names = {ns.metadata.name for ns in ready_warm(kube) if ns.metadata}
        await reconciler.sweep()
        await asyncio.sleep(0.1)
        assert {ns.metadata.name for ns in ready_warm(kube) if ns.metadata} == names


async def test_a_reinstall_never_hands_over_the_earlier_installations_pool() -> None:
    # helm uninstall + install: a new DeviceClass of the same name, while the garbage collector
    # is still removing the namespaces the old one owned. Handing one of those to a claim would
    # give the claim a namespace that is deleted under it.
    kube = MemoryKube()
    kube.put(device_class())
    async with running_reconciler(kube, warm=warm()) as reconciler:
        old = await eventually(lambda: filled(kube, 2), "filled")
        old_names = {ns.metadata.name for ns in old if ns.metadata}
        kube.remove(DeviceClass, CLASS)
        kube.put(device_class())
        assert reconciler.warm is not None
        reconciler.warm.wake()
        [new_class] = kube.stored(DeviceClass)
        assert new_class.metadata is not None
        new_owner = new_class.metadata.uid

        def owned_by_new_class() -> bool:
            made = ready_warm(kube)
            return len(made) == 2 and all(
                [ref.uid for ref in (ns.metadata.ownerReferences or [])] == [new_owner]
                for ns in made
                if ns.metadata
            )

        await eventually(owned_by_new_class, "a pool of the new class", within=10)
        kube.put(make_claim(new_uid(), configs=class_config()))
        record = await eventually(lambda: device_state(kube).record, "ready")
        assert record.namespace not in old_names


async def test_a_failed_make_never_lets_the_pool_outgrow_its_cap() -> None:
    # One namespace of a refill fails while the others are still being filled: until they
    # are done, the next refill must count them, not start as many again beside them.
    kube = MemoryKube()
    kube.put(device_class())
    namespaces = ManagedNamespaces(kube, LABELS, SIGNER, lambda view: None)
    release = asyncio.Event()
    fills = 0

    async def fill(name: str, settings: object) -> None:
        nonlocal fills
        fills += 1
        if fills == 1:
            raise KubeError("injected", 500, "Internal")
        await release.wait()

    pool = WarmPool(kube, LABELS, SIGNER, namespaces, warm(size=4, pool_size=4), lambda: 0, fill)
    first = asyncio.create_task(pool.refill())
    await asyncio.sleep(0.2)  # one failed; three wait in their fill
    second = asyncio.create_task(pool.refill())
    await asyncio.sleep(0.2)
    live = [
        ns for ns in kube.stored(Namespace) if ns.metadata and not ns.metadata.deletionTimestamp
    ]
    release.set()
    with pytest.raises(KubeError):
        await first
    await second
    assert len(live) <= 4, f"{len(live)} warm namespaces at once for a pool of 4"


class GatedKube(MemoryKube):
    """Holds every call named in ``gated`` (such as "apply ServiceAccount", a namespace's
    fill) while ``gate`` is closed; ``held`` counts them."""

    def __init__(self, *gated: str) -> None:
        super().__init__()
        self.gated = set(gated)
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = 0

    async def _enter(self, verb: str, res: Any, call: str | None = None) -> None:
        if f"{verb} {res.__name__}" in self.gated and not self.gate.is_set():
            self.held += 1
            await self.gate.wait()
        await super()._enter(verb, res, call)


@contextlib.asynccontextmanager
async def bare_pool(
    kube: MemoryKube,
    options: WarmOptions,
    held: Callable[[], int] = lambda: 0,
    claims_idle: asyncio.Event | None = None,
) -> AsyncIterator[WarmPool]:
    """A pool on its own (no reconciler), with the namespace watch running and an empty fill."""
    namespaces = ManagedNamespaces(kube, LABELS, SIGNER, lambda view: None)
    watch = asyncio.create_task(namespaces.informer.run())

    async def fill(name: str, settings: object) -> None:
        return None

    try:
        yield WarmPool(
            kube, LABELS, SIGNER, namespaces, options, held, fill, claims_idle=claims_idle
        )
    finally:
        watch.cancel()


async def test_namespaces_handed_over_during_a_refill_are_refilled_when_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A burst: the second claim takes a warm namespace while the refill for the first is
    # still filling. Its wake-up must start the next refill at once, not after the
    # periodic one (made an hour here, so only the wake-up can refill in time).
    monkeypatch.setattr(warm_module, "REFILL_SECONDS", 3600.0)
    kube = GatedKube("apply ServiceAccount")
    kube.put(device_class())
    async with running_reconciler(kube, warm=warm(size=2, pool_size=6)):
        await eventually(lambda: len(ready_warm(kube)) == 2, "filled")
        kube.gate.clear()
        kube.put(make_claim(new_uid(), configs=class_config()))
        await eventually(lambda: kube.held == 1, "the refill for the first claim filling")
        kube.put(make_claim(new_uid(), configs=class_config()))
        await eventually(lambda: not ready_warm(kube), "the second claim took the other one")
        kube.gate.set()
        await eventually(lambda: len(ready_warm(kube)) == 2, "refilled for both claims")


async def test_a_namespace_the_pool_is_trimming_is_never_handed_to_a_claim() -> None:
    # The slots filled up with claims, so the pool trims its surplus one delete at a time.
    # A claim arriving meanwhile must not take a namespace the trim is about to delete.
    kube = GatedKube("delete Namespace")
    kube.put(device_class())
    held = 0
    async with bare_pool(kube, warm(size=2, pool_size=4), lambda: held) as pool:
        await pool.refill()
        await eventually(lambda: len(pool.available()) == 2, "the pool seen full")
        held = 4  # every slot taken: both warm namespaces are surplus now
        kube.gate.clear()
        trim = asyncio.create_task(pool.refill())
        await eventually(lambda: kube.held == 1, "the trim deleting its first namespace")
        handed = await pool.hand_over(
            pool.key, new_uid(), "team/claim", DeviceRef("ns", "space", "slot-0"), frozenset()
        )
        kube.gate.set()
        await trim
        assert handed is None, f"offered {handed.name}, which the trim was deleting"


async def test_a_namespace_changed_since_the_trim_judged_it_is_not_deleted() -> None:
    # Another writer (the API server orders the two) handed it over after the pool took
    # its view: the version-conditional delete is refused, the namespace stays.
    kube = MemoryKube()
    kube.put(device_class())
    async with bare_pool(kube, warm(size=1, pool_size=4)) as pool:
        await pool.refill()
        [view] = await eventually(pool.available, "the pool seen full")
        stored, meta = stored_metadata(kube, view.name)
        meta.labels = {**(meta.labels or {}), "changed": "yes"}
        await kube.replace(stored)
        await pool._delete(view, unchanged=True)
        assert not stored_metadata(kube, view.name)[1].deletionTimestamp


async def test_the_refill_gives_way_to_claims_being_provisioned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its writes would share the API server with the claims' own: it waits for them.
    monkeypatch.setattr(warm_module, "REFILL_DEFER_SECONDS", 3600.0)
    kube = MemoryKube()
    kube.put(device_class())
    claims_idle = asyncio.Event()
    async with bare_pool(kube, warm(size=2, pool_size=4), claims_idle=claims_idle) as pool:
        refilling = asyncio.create_task(pool.run())
        try:
            await asyncio.sleep(0.3)
            assert not kube.stored(Namespace), "refilled while claims were being provisioned"
            claims_idle.set()
            await eventually(lambda: len(ready_warm(kube)) == 2, "filled once the claims were done")
        finally:
            refilling.cancel()


async def test_a_pool_turned_off_removes_the_namespaces_it_kept() -> None:
    kube = MemoryKube()
    kube.put(device_class())
    async with running_reconciler(kube, warm=warm(size=2)):
        await eventually(lambda: len(ready_warm(kube)) == 2, "filled")
    async with running_reconciler(kube, warm=warm(size=0)):
        await eventually(lambda: not ready_warm(kube), "the kept namespaces removed")

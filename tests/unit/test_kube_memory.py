"""The in-memory API server behaves like the real one where our code depends on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lightkube.models.core_v1 import ResourceQuotaSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.resource_v1 import AllocatedDeviceStatus
from lightkube.models.resource_v1 import ResourceClaimStatus as ClaimStatusModel
from lightkube.resources.core_v1 import ConfigMap, Namespace, ResourceQuota
from lightkube.resources.resource_v1 import ResourceClaim, ResourceClaimStatus

from space_dra.kube import (
    Conflict,
    ControllerAPI,
    Forbidden,
    Gone,
    Invalid,
    KubeAPI,
    KubeError,
    LightkubeAPI,
    NotFound,
)
from space_dra.kube_memory import MemoryKube
from tests.support.claims import make_claim, new_uid


def _lightkube_conforms(api: LightkubeAPI) -> tuple[ControllerAPI, KubeAPI]:
    """Checked by mypy: the real adapter implements both protocols."""
    return api, api


def _memory_conforms(api: MemoryKube) -> tuple[ControllerAPI, KubeAPI]:
    return api, api


def config_map(name: str, namespace: str = "ns", **labels: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace=namespace, labels=labels or None))


async def collect(events: AsyncIterator[tuple[str, Any]], count: int) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    async for event, obj in events:
        seen.append((event, obj.metadata.name))
        if len(seen) == count:
            break
    return seen


async def test_create_assigns_identity_and_honours_generate_name() -> None:
    kube = MemoryKube()
    first = await kube.create(Namespace(metadata=ObjectMeta(generateName="ephemeral-ns-")))
    second = await kube.create(Namespace(metadata=ObjectMeta(generateName="ephemeral-ns-")))
    assert first.metadata and second.metadata
    assert first.metadata.name and first.metadata.name.startswith("ephemeral-ns-")
    assert len(first.metadata.name) == len("ephemeral-ns-") + 5
    assert first.metadata.name != second.metadata.name
    assert first.metadata.uid and first.metadata.uid != second.metadata.uid
    assert first.metadata.creationTimestamp is not None
    assert int(second.metadata.resourceVersion or 0) > int(first.metadata.resourceVersion or 0)
    fetched = await kube.get(Namespace, first.metadata.name)
    assert fetched.metadata and fetched.metadata.uid == first.metadata.uid


async def test_create_refuses_taken_names_and_nameless_objects() -> None:
    kube = MemoryKube()
    await kube.create(config_map("a"))
    with pytest.raises(Conflict, match="already exists"):
        await kube.create(config_map("a"))
    with pytest.raises(Invalid, match="name or generateName"):
        await kube.create(ConfigMap(metadata=ObjectMeta(namespace="ns")))
    with pytest.raises(Invalid, match="namespace is required"):
        await kube.create(ConfigMap(metadata=ObjectMeta(name="b")))


async def test_objects_returned_are_copies() -> None:
    kube = MemoryKube()
    created = await kube.create(config_map("a", app="x"))
    assert created.metadata and created.metadata.labels
    created.metadata.labels["app"] = "changed"
    stored = await kube.get(ConfigMap, "a", "ns")
    assert stored.metadata and stored.metadata.labels == {"app": "x"}

    # Untyped fields too (lightkube's from_dict alone would share their containers).
    parameters = {"quota": {"hard": ["pods"]}}
    kube.put(make_claim(new_uid(), configs=[("FromClaim", parameters, ["ns"])]))
    parameters["quota"]["hard"].append("put after")
    claim = await kube.get_claim("default", "test-claim")
    read = claim.status.allocation.devices.config[0].opaque.parameters  # type: ignore[union-attr,index]
    assert read == {"quota": {"hard": ["pods"]}}
    read["quota"]["hard"].append("changed by a reader")
    again = await kube.get_claim("default", "test-claim")
    assert again.status.allocation.devices.config[0].opaque.parameters == {  # type: ignore[union-attr,index]
        "quota": {"hard": ["pods"]}
    }


async def test_replace_refuses_a_stale_resource_version() -> None:
    kube = MemoryKube()
    created = await kube.create(config_map("a"))
    created.data = {"k": "1"}
    replaced = await kube.replace(created)
    assert replaced.metadata and created.metadata
    assert replaced.metadata.uid == created.metadata.uid
    created.data = {"k": "2"}  # still carries the old resourceVersion
    with pytest.raises(Conflict, match="has been modified"):
        await kube.replace(created)
    with pytest.raises(NotFound):
        await kube.replace(config_map("missing"))


async def test_delete_honours_the_uid_precondition() -> None:
    kube = MemoryKube()
    created = await kube.create(config_map("a"))
    assert created.metadata
    with pytest.raises(Conflict, match="Precondition failed"):
        await kube.delete(ConfigMap, "a", "ns", uid=new_uid())
    await kube.delete(ConfigMap, "a", "ns", uid=created.metadata.uid)
    with pytest.raises(NotFound):
        await kube.get(ConfigMap, "a", "ns")
    with pytest.raises(NotFound):
        await kube.delete(ConfigMap, "a", "ns")


async def test_finalizers_hold_a_deleted_object_until_removed() -> None:
    kube = MemoryKube()
    held = config_map("a")
    assert held.metadata
    held.metadata.finalizers = ["example.com/hold"]
    await kube.create(held)
    await kube.delete(ConfigMap, "a", "ns")
    deleting = await kube.get(ConfigMap, "a", "ns")
    assert deleting.metadata and deleting.metadata.deletionTimestamp is not None
    deleting.metadata.finalizers = []
    await kube.replace(deleting)
    with pytest.raises(NotFound):
        await kube.get(ConfigMap, "a", "ns")


async def test_deleting_a_namespace_deletes_its_contents() -> None:
    kube = MemoryKube()
    await kube.create(Namespace(metadata=ObjectMeta(name="ns")))
    await kube.create(config_map("inside"))
    await kube.create(config_map("elsewhere", namespace="other"))
    await kube.delete(Namespace, "ns")
    assert [c.metadata.name for c in kube.stored(ConfigMap) if c.metadata] == ["elsewhere"]


async def test_list_filters_by_labels_and_fields() -> None:
    kube = MemoryKube()
    await kube.create(config_map("a", app="x"))
    await kube.create(config_map("b", app="y"))
    await kube.create(config_map("c", namespace="other", app="x"))
    items, version = await kube.list(ConfigMap, labels={"app": "x"})
    assert [i.metadata.name for i in items if i.metadata] == ["a", "c"]
    items, _ = await kube.list(ConfigMap, labels={"app": "x"}, fields={"metadata.namespace": "ns"})
    assert [i.metadata.name for i in items if i.metadata] == ["a"]
    assert version == "3"


async def test_apply_creates_merges_and_skips_no_op_writes() -> None:
    kube = MemoryKube()
    quota = ResourceQuota(
        metadata=ObjectMeta(name="q", namespace="ns", labels={"a": "1"}),
        spec=ResourceQuotaSpec(hard={"pods": "1"}),
    )
    first = await kube.apply(quota)
    again = await kube.apply(quota)
    assert first.metadata and again.metadata
    assert again.metadata.resourceVersion == first.metadata.resourceVersion, "nothing changed"
    quota.spec = ResourceQuotaSpec(hard={"pods": "2"})
    changed = await kube.apply(quota)
    assert changed.spec and changed.spec.hard == {"pods": "2"}
    assert changed.metadata and changed.metadata.uid == first.metadata.uid


async def test_status_apply_replaces_only_the_drivers_entries_and_checks_the_uid() -> None:
    kube = MemoryKube()
    uid = new_uid()
    kube.put(make_claim(uid))
    other = AllocatedDeviceStatus(driver="gpu.example.com", pool="p", device="d")
    ours = AllocatedDeviceStatus(driver="space.resource.example.com", pool="space", device="x")

    def body(claim_uid: str, *devices: AllocatedDeviceStatus) -> ResourceClaimStatus:
        return ResourceClaimStatus(
            metadata=ObjectMeta(name="test-claim", namespace="default", uid=claim_uid),
            status=ClaimStatusModel(devices=list(devices)),
        )

    await kube.apply(body(uid, other), name="test-claim", namespace="default")
    await kube.apply(body(uid, ours), name="test-claim", namespace="default")
    stored = await kube.get_claim("default", "test-claim")
    assert stored.status and stored.status.allocation, "the allocation is untouched"
    assert sorted(d.driver for d in stored.status.devices or []) == [
        "gpu.example.com",
        "space.resource.example.com",
    ]
    with pytest.raises(Invalid, match="immutable"):
        await kube.apply(body(new_uid(), ours), name="test-claim", namespace="default")
    with pytest.raises(NotFound):
        await kube.apply(body(uid, ours), name="missing", namespace="default")


async def test_watch_replays_then_follows_with_selector_transitions() -> None:
    kube = MemoryKube()
    await kube.create(config_map("before", app="x"))
    _, version = await kube.list(ConfigMap)
    await kube.create(config_map("replayed", app="x"))
    await kube.create(config_map("ignored", app="y"))
    watching = asyncio.create_task(collect(kube.watch(ConfigMap, version, labels={"app": "x"}), 4))
    await asyncio.sleep(0.01)
    moved = await kube.get(ConfigMap, "replayed", "ns")
    assert moved.metadata
    moved.metadata.labels = {"app": "y"}  # leaves the selector: DELETED for this watch
    await kube.replace(moved)
    ignored = await kube.get(ConfigMap, "ignored", "ns")
    assert ignored.metadata
    ignored.metadata.labels = {"app": "x"}  # enters it: ADDED
    await kube.replace(ignored)
    await kube.delete(ConfigMap, "before", "ns")
    assert await asyncio.wait_for(watching, 1) == [
        ("ADDED", "replayed"),
        ("DELETED", "replayed"),
        ("ADDED", "ignored"),
        ("DELETED", "before"),
    ]


async def test_watch_from_a_compacted_version_is_gone() -> None:
    kube = MemoryKube()
    await kube.create(config_map("a"))
    kube.compact()
    with pytest.raises(Gone):
        await collect(kube.watch(ConfigMap, "0"), 1)


async def test_end_watches_ends_or_fails_open_watches() -> None:
    kube = MemoryKube()
    quiet = asyncio.create_task(collect(kube.watch(ConfigMap, "0"), 1))
    await asyncio.sleep(0.01)
    kube.end_watches()
    assert await asyncio.wait_for(quiet, 1) == []
    failing = asyncio.create_task(collect(kube.watch(ConfigMap, "0"), 1))
    await asyncio.sleep(0.01)
    kube.end_watches(Gone("expired", 410, "Expired"))
    with pytest.raises(Gone):
        await asyncio.wait_for(failing, 1)


async def test_fail_next_fails_only_matching_calls_the_given_number_of_times() -> None:
    kube = MemoryKube()
    kube.fail_next("create", ResourceQuota, Invalid("quota refused", 422, "Invalid"))
    kube.fail_next("get", times=2)
    await kube.create(config_map("a"))  # another kind: not affected
    with pytest.raises(Invalid, match="quota refused"):
        await kube.create(ResourceQuota(metadata=ObjectMeta(name="q", namespace="ns")))
    await kube.create(ResourceQuota(metadata=ObjectMeta(name="q", namespace="ns")))
    for _ in range(2):
        with pytest.raises(KubeError) as failed:
            await kube.get(ConfigMap, "a", "ns")
        assert failed.value.status == 500
    await kube.get(ConfigMap, "a", "ns")


async def test_admission_hooks_rewrite_or_refuse_writes() -> None:
    kube = MemoryKube()

    def no_widgets(verb: str, quota: Any) -> None:
        if "widgets" in (quota.spec.hard or {}):
            raise Invalid(f"{verb}: widgets is not a known resource", 422, "Invalid")
        quota.metadata.labels = {"admitted": verb}

    kube.admit(ResourceQuota, no_widgets)
    applied = await kube.apply(
        ResourceQuota(
            metadata=ObjectMeta(name="q", namespace="ns"),
            spec=ResourceQuotaSpec(hard={"pods": "1"}),
        )
    )
    assert applied.metadata and applied.metadata.labels == {"admitted": "apply"}
    with pytest.raises(Invalid, match="widgets"):
        await kube.create(
            ResourceQuota(
                metadata=ObjectMeta(name="w", namespace="ns"),
                spec=ResourceQuotaSpec(hard={"widgets": "1"}),
            )
        )


async def test_put_plays_another_actor_and_a_new_uid_replaces_the_object() -> None:
    kube = MemoryKube()
    first, second = new_uid(), new_uid()
    kube.put(make_claim(first))
    _, version = await kube.list(ResourceClaim)
    kube.put(make_claim(second))
    watching = collect(kube.watch(ResourceClaim, version), 2)
    assert await asyncio.wait_for(watching, 1) == [
        ("DELETED", "test-claim"),
        ("ADDED", "test-claim"),
    ]
    claim = await kube.get_claim("default", "test-claim")
    assert claim.metadata and claim.metadata.uid == second


async def test_tokens_only_for_known_service_accounts() -> None:
    kube = MemoryKube()
    with pytest.raises(Forbidden):
        await kube.create_token("ns", "worker", 600)
    kube.service_accounts.add(("ns", "worker"))
    token = await kube.create_token("ns", "worker", 600)
    assert token.token.startswith("memtoken.")
    assert kube.tokens_issued == [("ns", "worker", 600)]

"""The controller refuses what one tenant must not get, whatever DeviceClass it names.

Admission refuses these for the chart's DeviceClass; the controller refuses them again
for any class that selects our devices: too many devices in one claim, a claim made
inside a namespace this driver provisioned, and anything outside the installation's
policy (which a DeviceClass can only narrow).
"""

from __future__ import annotations

from typing import Any

from lightkube.resources.rbac_authorization_v1 import RoleBinding

from space_dra.config import SOURCE_CLAIM, SOURCE_CLASS, Policy
from space_dra.contract import WORKLOAD_BINDING
from space_dra.kube_memory import MemoryKube
from tests.support.claims import make_claim, namespace_config, new_uid, ready_device
from tests.support.controller import (
    claim_view,
    device_state,
    events,
    eventually,
    namespaces,
    running_reconciler,
    settled,
    signed_namespace,
)


async def test_a_claim_with_more_devices_than_the_policy_allows_gets_none() -> None:
    kube = MemoryKube()
    devices = [(f"r{i}", f"slot-{i}") for i in range(5)]
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(new_uid(), devices=devices))
        await eventually(lambda: device_state(kube, index=4).failure, "refused")
        await settled(reconciler)
        view = claim_view(kube)
        for device in view.our_devices():
            failure = view.device_state(device).failure or ""
            assert failure.startswith("TooManyDevices:")
            assert "at most 4" in failure
        assert namespaces(kube) == {}
        # One Event for the claim: the other devices are refused from memory.
        assert [e.reason for e in events(kube)].count("TooManyNamespaces") == 1


async def test_the_cap_comes_from_the_installation_and_a_class_cannot_raise_it() -> None:
    kube = MemoryKube()
    devices = [("a", "slot-0"), ("b", "slot-1"), ("c", "slot-2")]
    widening: list[tuple[str, dict[str, Any], list[str]]] = [
        (SOURCE_CLASS, namespace_config(policy={"maxDevicesPerClaim": 32}), [])
    ]
    async with running_reconciler(kube, policy=Policy(max_devices_per_claim=2)) as reconciler:
        kube.put(make_claim(new_uid(), devices=devices, configs=widening))
        await eventually(lambda: device_state(kube).failure, "refused")
        await settled(reconciler)
        assert "at most 2" in (device_state(kube).failure or "")
        assert namespaces(kube) == {}


def put_parent(kube: MemoryKube, parent: str) -> None:
    """A provisioned namespace and the claim that holds it."""
    uid = new_uid()
    kube.put(signed_namespace(parent, uid))
    kube.put(make_claim(uid, name="parent", status_devices=[ready_device("slot-0", parent)]))


async def test_a_claim_inside_a_provisioned_namespace_is_refused() -> None:
    kube = MemoryKube()
    parent = "ephemeral-ns-prnt1"
    put_parent(kube, parent)
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(new_uid(), namespace=parent))
        failure = await eventually(lambda: device_state(kube).failure, "refused")
        await settled(reconciler)
        assert failure.startswith("NestedClaim:")
        assert set(namespaces(kube)) == {parent}


async def test_nested_claims_when_the_policy_allows_them() -> None:
    kube = MemoryKube()
    parent = "ephemeral-ns-prnt2"
    put_parent(kube, parent)
    async with running_reconciler(kube, policy=Policy(allow_nested_claims=True)):
        kube.put(make_claim(new_uid(), namespace=parent))
        record = await eventually(lambda: device_state(kube).record, "provisioned")
        assert record.namespace != parent


async def test_an_unsigned_namespace_with_our_labels_does_not_count_as_provisioned() -> None:
    kube = MemoryKube()
    forged = signed_namespace("forged-ns", new_uid())
    assert forged.metadata is not None and forged.metadata.annotations is not None
    forged.metadata.annotations.clear()  # labels copied, no signature
    kube.put(forged)
    async with running_reconciler(kube):
        kube.put(make_claim(new_uid(), namespace="forged-ns"))
        await eventually(lambda: device_state(kube).record, "provisioned")


async def test_the_installation_policy_applies_to_a_class_without_our_config() -> None:
    kube = MemoryKube()
    installation = Policy(allowed_roles=("view",))
    async with running_reconciler(kube, policy=installation):
        kube.put(make_claim(new_uid()))  # no opaque config at all
        record = await eventually(lambda: device_state(kube).record, "provisioned")
        binding = kube_object(kube, RoleBinding, record.namespace, WORKLOAD_BINDING)
        assert binding.roleRef.name == "view"

        other = new_uid()
        asks_admin = [(SOURCE_CLAIM, namespace_config(role="admin"), ["ns"])]
        kube.put(make_claim(other, name="wants-admin", configs=asks_admin))
        failure = await eventually(lambda: device_state(kube, "wants-admin").failure, "refused")
        assert failure.startswith("InvalidConfig:") and "'admin' is not allowed" in failure


def kube_object(kube: MemoryKube, res: type[RoleBinding], namespace: str, name: str) -> RoleBinding:
    for obj in kube.stored(res):
        if obj.metadata and (obj.metadata.namespace, obj.metadata.name) == (namespace, name):
            return obj
    raise AssertionError(f"{res.__name__} {namespace}/{name} not stored")

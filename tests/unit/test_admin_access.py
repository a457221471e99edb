"""adminAccess is refused (docs/security.md, "Admin access"): an admin-access allocation of a
slot already in use makes nothing and leaves the slot's tenant alone."""

from __future__ import annotations

from space_dra.kube_memory import MemoryKube
from tests.support.claims import make_claim, new_uid
from tests.support.controller import (
    device_state,
    events,
    eventually,
    namespaces,
    running_reconciler,
    settled,
)


async def test_an_admin_access_claim_on_a_slot_in_use_gets_nothing() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube) as reconciler:
        kube.put(make_claim(new_uid(), name="tenant"))
        record = await eventually(lambda: device_state(kube, "tenant").record, "tenant ready")
        # The scheduler may give an admin-access request the very slot the tenant holds.
        kube.put(make_claim(new_uid(), name="auditor", admin_access=True))
        failure = await eventually(lambda: device_state(kube, "auditor").failure, "refused")
        await settled(reconciler)

    assert failure.startswith("InvalidConfig: ")
    assert "adminAccess" in failure and "does not support" in failure
    assert list(namespaces(kube)) == [record.namespace], "no namespace beyond the pool"
    assert device_state(kube, "tenant").record == record
    [event] = events(kube, "InvalidNamespaceConfig")
    assert event.involvedObject.name == "auditor"

"""The controller's parts wired to an in-memory API server, for unit tests.

``running_reconciler`` runs the real Reconciler (real informers, real work queue)
against a MemoryKube; tests play the user and the scheduler with ``kube.put`` and
wait for the outcome with ``eventually`` and ``settled``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, TypeVar

from lightkube.resources.core_v1 import Event, Namespace
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.config import Policy, Settings
from space_dra.contract import (
    DEFAULT_DRIVER_NAME,
    ClaimView,
    DeviceRef,
    DeviceState,
    ManagementLabels,
)
from space_dra.controller.manifests import namespace_object
from space_dra.controller.ownership import Signer
from space_dra.controller.provision import ProvisionerOptions
from space_dra.controller.reconciler import Reconciler, ReconcilerOptions
from space_dra.controller.slices import SlotTaints
from space_dra.kube_memory import MemoryKube
from tests.support.claims import SERVER

T = TypeVar("T")

CONTROLLER_NAMESPACE = "space-dra"
PLUGIN_SERVICE_ACCOUNT = "space-dra/space-dra-kubelet-plugin"
TOKEN_MINTER_ROLE = "test-token-minter"
SIGNER = Signer(b"k" * 32)
PROVISIONING = ProvisionerOptions(
    driver=DEFAULT_DRIVER_NAME,
    plugin_service_account=PLUGIN_SERVICE_ACCOUNT,
    token_minter_cluster_role=TOKEN_MINTER_ROLE,
    pod_api_server=SERVER,
)
OPTIONS = ReconcilerOptions(
    provisioning=PROVISIONING,
    protected_namespaces=frozenset({CONTROLLER_NAMESPACE}),
    resync_seconds=3600.0,
    workers=4,
)


@contextlib.asynccontextmanager
async def running_reconciler(
    kube: MemoryKube,
    rejection_memory_seconds: float = 300.0,
    policy: Policy | None = None,
    template_quota_wait_seconds: float = 30.0,
    taints: SlotTaints | None = None,
    signer: Signer = SIGNER,
    **changes: Any,
) -> AsyncIterator[Reconciler]:
    """The reconciler running (caches synced, first sweep done) until the block ends;
    ``policy`` is the installation's (the built-in one when None); ``taints`` are shared
    with a slice publisher the test runs, if any."""
    provisioning = replace(
        PROVISIONING,
        rejection_memory_seconds=rejection_memory_seconds,
        policy=policy or Policy(),
        template_quota_wait_seconds=template_quota_wait_seconds,
    )
    options = replace(OPTIONS, provisioning=provisioning, **changes)
    reconciler = Reconciler(kube, signer, options, taints)
    task = asyncio.create_task(reconciler.run())
    try:
        await eventually(lambda: reconciler.synced, "caches synced")
        await settled(reconciler)
        yield reconciler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], T | None], what: str, within: float = 5.0) -> T:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def settled(reconciler: Reconciler, quiet_for: float = 0.1) -> None:
    """Wait until the work queue has been empty for ``quiet_for`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    quiet_since = loop.time()
    while loop.time() - quiet_since < quiet_for:
        if len(reconciler.queue):
            quiet_since = loop.time()
        if loop.time() > deadline:
            raise AssertionError("the work queue never settled")
        await asyncio.sleep(0.01)


def namespaces(kube: MemoryKube) -> dict[str, Namespace]:
    return {
        ns.metadata.name: ns for ns in kube.stored(Namespace) if ns.metadata and ns.metadata.name
    }


def events(kube: MemoryKube, reason: str | None = None) -> list[Event]:
    return [e for e in kube.stored(Event) if reason is None or e.reason == reason]


def claim_view(kube: MemoryKube, name: str = "test-claim") -> ClaimView:
    for claim in kube.stored(ResourceClaim):
        if claim.metadata and claim.metadata.name == name:
            return ClaimView(claim, DEFAULT_DRIVER_NAME)
    raise AssertionError(f"claim {name} is not stored")


def device_state(kube: MemoryKube, name: str = "test-claim", index: int = 0) -> DeviceState:
    view = claim_view(kube, name)
    return view.device_state(view.our_devices()[index])


def signed_namespace(
    name: str, claim_uid: str, device: str = "slot-0", signer: Signer = SIGNER
) -> Namespace:
    """A namespace as the controller creates it for ``claim_uid``'s device."""
    return namespace_object(
        ManagementLabels(DEFAULT_DRIVER_NAME),
        signer,
        name,
        claim_uid,
        f"default/{name}",
        DeviceRef("ns", "space", device),
        Settings(),
    )

"""The controller process against the in-memory API server: a leadership term, its
end when another replica takes the Lease, readiness, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Secret
from lightkube.resources.resource_v1 import ResourceSlice

from space_dra.contract import DEFAULT_DRIVER_NAME
from space_dra.controller.main import Controller, default_pod_api_server
from space_dra.controller.options import ControllerOptions
from space_dra.kube_memory import MemoryKube
from tests.support.claims import make_claim, new_uid
from tests.support.controller import (
    CONTROLLER_NAMESPACE,
    PLUGIN_SERVICE_ACCOUNT,
    TOKEN_MINTER_ROLE,
    device_state,
    eventually,
)

OPTIONS = ControllerOptions(
    driver=DEFAULT_DRIVER_NAME,
    namespace=CONTROLLER_NAMESPACE,
    identity="me",
    plugin_service_account=PLUGIN_SERVICE_ACCOUNT,
    token_minter_cluster_role=TOKEN_MINTER_ROLE,
    ownership_secret="space-dra-ownership",
    pool_size=2,
    pod_api_server="https://api.example.com:6443",
    http_address="127.0.0.1",
    http_port=0,
)


async def lease_holder(kube: MemoryKube) -> str | None:
    lease = await kube.get(Lease, OPTIONS.lease_name, OPTIONS.namespace)
    return lease.spec.holderIdentity if lease.spec else None


async def test_a_term_runs_everything_until_another_replica_takes_the_lease() -> None:
    kube = MemoryKube()
    controller = Controller(kube, OPTIONS)
    term = asyncio.create_task(controller.term())
    await eventually(
        lambda: controller.elector.leading and controller.readyz() is None, "leading and ready"
    )
    assert await lease_holder(kube) == "me"
    assert kube.stored(Secret), "the ownership key was created"
    assert kube.stored(ResourceSlice), "ready means the pool is published"

    kube.put(make_claim(new_uid()))
    record = await eventually(lambda: device_state(kube).record, "provisioned")
    assert record.server == OPTIONS.pod_api_server

    kube.put(
        Lease(
            metadata=ObjectMeta(name=OPTIONS.lease_name, namespace=OPTIONS.namespace),
            spec=LeaseSpec(
                holderIdentity="other", leaseDurationSeconds=15, renewTime=datetime.now(UTC)
            ),
        )
    )
    await asyncio.wait_for(term, 5)  # the next renewal (every 2 s) finds it taken
    assert controller.reconciler is None
    assert not controller.elector.leading


def test_readiness() -> None:
    kube = MemoryKube()
    standby = Controller(kube, OPTIONS)
    assert standby.readyz() is None, "a standby replica is ready"
    alone = Controller(kube, replace(OPTIONS, leader_elect=False))
    assert alone.readyz() == "caches not synced yet"


async def test_the_leader_is_not_ready_until_its_pool_is_published() -> None:
    kube = MemoryKube()
    kube.fail_next("apply", ResourceSlice)  # the publisher retries 2 s later
    controller = Controller(kube, OPTIONS)
    term = asyncio.create_task(controller.term())
    try:
        await eventually(lambda: controller.reconciler and controller.reconciler.synced, "synced")
        assert controller.readyz() == "pool not published yet"
        await eventually(lambda: controller.readyz() is None, "ready once published")
        assert kube.stored(ResourceSlice)
    finally:
        term.cancel()
        await asyncio.gather(term, return_exceptions=True)


def test_the_pod_api_server_defaults_to_the_in_cluster_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = MemoryKube(server="https://127.0.0.1:6443")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert default_pod_api_server(kube) == "https://127.0.0.1:6443"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert default_pod_api_server(kube) == "https://10.96.0.1:443"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert default_pod_api_server(kube) == "https://[fd00::1]:443"
    controller = Controller(kube, replace(OPTIONS, pod_api_server=None))
    assert controller.server == "https://[fd00::1]:443"


async def http_get(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    status = (await reader.readline()).decode()
    writer.close()
    await writer.wait_closed()
    return status


async def test_sigterm_stops_cleanly_and_hands_the_lease_over() -> None:
    kube = MemoryKube()
    kube.fail_next("get", Secret)  # the key is read again after a failure
    controller = Controller(kube, OPTIONS)
    running = asyncio.create_task(controller.run())
    await eventually(
        lambda: controller.elector.leading and controller.readyz() is None, "leading and ready"
    )
    assert "200 OK" in await http_get(controller.http.port, "/readyz")
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(running, 5) == 0
    assert await lease_holder(kube) is None, "released for a standby to take at once"

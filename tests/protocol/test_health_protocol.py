"""Device health end to end: the namespace plugin on real sockets, both health streams open.

The plugin runs with short intervals against the in-memory API server; what a broken API
server or a deleted claim looks like comes from :class:`FlakyKube`, a wrapper that fails
the calls it is told to. Every test watches the v1 and the v1alpha1 stream at once, as a
1.37 and a 1.36 kubelet would, and checks that both see the same change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from space_dra.contract import CONDITION_FAILED, CONDITION_HEALTHY, WORKLOAD_SERVICE_ACCOUNT
from space_dra.kube import Forbidden, IssuedToken, KubeError, NotFound
from space_dra.kube_memory import MemoryKube
from space_dra.proto.dra_health.v1 import api_pb2 as health_v1
from space_dra.proto.dra_health.v1alpha1 import api_pb2 as health_v1alpha1
from tests.protocol.conftest import Dirs, Harness, serving
from tests.support.claims import condition, make_claim, new_uid, ready_device

CHECK_INTERVAL = 0.2
THRESHOLD = 3
APIS = (health_v1, health_v1alpha1)
# health_v1 and health_v1alpha1 number the states alike (tests/unit/test_generated_stubs.py).
NAMES = {
    health_v1.HEALTHY: "Healthy",
    health_v1.UNHEALTHY: "Unhealthy",
    health_v1.UNKNOWN: "Unknown",
}


class FlakyKube:
    """A MemoryKube whose claim reads or token requests fail while an error is set."""

    def __init__(self) -> None:
        self.inner = MemoryKube()
        self.claim_error: KubeError | None = None
        self.token_error: KubeError | None = None
        self.failed_token_requests = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_claim(self, namespace: str, name: str) -> Any:
        if self.claim_error is not None:
            raise self.claim_error
        return await self.inner.get_claim(namespace, name)

    async def create_token(
        self, namespace: str, service_account: str, seconds: int, binding: Any = None
    ) -> IssuedToken:
        try:
            if self.token_error is not None:
                raise self.token_error
            return await self.inner.create_token(namespace, service_account, seconds, binding)
        except KubeError:
            self.failed_token_requests += 1
            raise


class Streams:
    """Both versions of the health stream, read until they say what a test waits for."""

    def __init__(self, harness: Harness) -> None:
        self.calls = {api: harness.kubelet.watch_health(api) for api in APIS}
        self.latest: dict[Any, list[tuple[str, str, str]]] = {api: [] for api in APIS}

    async def until(
        self, wanted: Callable[[list[tuple[str, str, str]]], bool], within: float = 5.0
    ) -> list[tuple[str, str, str]]:
        """Read each stream until ``wanted`` holds for its latest list of (device, health,
        message); return that list, the same on both streams."""
        for api, call in self.calls.items():
            deadline = time.monotonic() + within
            while not wanted(self.latest[api]) or not self.latest[api]:
                response: Any = await asyncio.wait_for(call.read(), deadline - time.monotonic())
                self.latest[api] = [
                    (d.device.device_name, NAMES[d.health], d.message) for d in response.devices
                ]
        first, second = self.latest.values()
        assert first == second, "v1 and v1alpha1 report the same"
        return first

    def close(self) -> None:
        for call in self.calls.values():
            call.cancel()


def health_is(status: str) -> Callable[[list[tuple[str, str, str]]], bool]:
    return lambda devices: bool(devices) and all(health == status for _, health, _ in devices)


@pytest.fixture
async def flaky() -> FlakyKube:
    return FlakyKube()


@pytest.fixture
async def plugin(dirs: Dirs, flaky: FlakyKube) -> AsyncIterator[Harness]:
    async with serving(
        dirs,
        flaky,
        health_check_interval=CHECK_INTERVAL,
        credential_check_interval=CHECK_INTERVAL,
        health_failure_threshold=THRESHOLD,
    ) as harness:
        yield harness


def add_claim(flaky: FlakyKube, *status_devices: dict[str, Any], **claim: Any) -> str:
    uid = new_uid()
    for device in status_devices:
        flaky.inner.service_accounts.add((device["data"]["namespace"], WORKLOAD_SERVICE_ACCOUNT))
    flaky.inner.put_claim(make_claim(uid, status_devices=list(status_devices), **claim))
    return uid


async def prepared(plugin: Harness, flaky: FlakyKube, namespace: str = "ns-a") -> str:
    uid = add_claim(flaky, ready_device("slot-0", namespace))
    response = await plugin.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    return uid


async def test_a_prepared_claim_reports_healthy_on_both_streams(
    plugin: Harness, flaky: FlakyKube
) -> None:
    streams = Streams(plugin)
    await prepared(plugin, flaky)
    assert await streams.until(health_is("Healthy")) == [
        ("slot-0", "Healthy", "namespace ns-a is ready")
    ]
    streams.close()


async def test_the_device_marked_failed_turns_unhealthy_with_the_reason_within_the_interval(
    plugin: Harness, flaky: FlakyKube
) -> None:
    streams = Streams(plugin)
    uid = await prepared(plugin, flaky)
    await streams.until(health_is("Healthy"))

    failed = ready_device("slot-0", "ns-a")
    failed["conditions"].append(
        condition(CONDITION_FAILED, "True", "NamespaceLost", "ns-a was deleted")
    )
    started = time.monotonic()
    flaky.inner.put_claim(make_claim(uid, status_devices=[failed]))
    [(_, _, message)] = await streams.until(health_is("Unhealthy"))
    assert message == "the controller marked namespace ns-a failed: NamespaceLost: ns-a was deleted"
    assert time.monotonic() - started < 3 * CHECK_INTERVAL + 1, "seen at the next check"

    flaky.inner.put_claim(make_claim(uid, status_devices=[ready_device("slot-0", "ns-a")]))
    await streams.until(health_is("Healthy"))
    streams.close()


async def test_namespace_healthy_false_from_the_controller_is_honoured(
    plugin: Harness, flaky: FlakyKube
) -> None:
    streams = Streams(plugin)
    uid = await prepared(plugin, flaky)
    deleted = ready_device("slot-0", "ns-a")
    deleted["conditions"].append(
        condition(CONDITION_HEALTHY, "False", "NamespaceDeleted", "deleted outside the driver")
    )
    flaky.inner.put_claim(make_claim(uid, status_devices=[deleted]))
    [(_, _, message)] = await streams.until(health_is("Unhealthy"))
    assert message == "namespace ns-a: NamespaceDeleted: deleted outside the driver"
    deleted["conditions"][-1] = condition(CONDITION_HEALTHY, "True", "NamespaceActive")
    flaky.inner.put_claim(make_claim(uid, status_devices=[deleted]))
    await streams.until(health_is("Healthy"))
    streams.close()


async def test_refused_token_requests_turn_unhealthy_past_the_threshold_then_recover(
    plugin: Harness, flaky: FlakyKube
) -> None:
    streams = Streams(plugin)
    await prepared(plugin, flaky)
    await streams.until(health_is("Healthy"))

    # What the API server answers once the minting RoleBinding is gone: a 403.
    flaky.inner.service_accounts.discard(("ns-a", WORKLOAD_SERVICE_ACCOUNT))
    [(_, _, message)] = await streams.until(health_is("Unhealthy"))
    assert flaky.failed_token_requests >= THRESHOLD, "not before the threshold"
    assert message.startswith(
        f"cannot refresh the credentials for namespace ns-a: {THRESHOLD} attempts in a row failed"
    )
    assert "cannot create token for ns-a/space-user" in message

    flaky.inner.service_accounts.add(("ns-a", WORKLOAD_SERVICE_ACCOUNT))
    assert await streams.until(health_is("Healthy")) == [
        ("slot-0", "Healthy", "namespace ns-a is ready")
    ]
    streams.close()


async def test_a_terminating_namespace_is_unhealthy_at_the_first_refusal(
    plugin: Harness, flaky: FlakyKube
) -> None:
    streams = Streams(plugin)
    await prepared(plugin, flaky)
    flaky.token_error = Forbidden(
        "create token for ServiceAccount ns-a/space-user: unable to create new content in "
        "namespace ns-a because it is being terminated",
        403,
        "Forbidden",
    )
    [(_, _, message)] = await streams.until(health_is("Unhealthy"))
    assert flaky.failed_token_requests < THRESHOLD
    assert message.startswith("namespace ns-a is gone or being deleted")
    streams.close()


async def test_an_unreachable_api_server_is_unknown_then_healthy_again(
    plugin: Harness, flaky: FlakyKube
) -> None:
    streams = Streams(plugin)
    await prepared(plugin, flaky)
    await streams.until(health_is("Healthy"))
    outage = KubeError("get ResourceClaim default/test-claim: ConnectError: connection refused")
    flaky.claim_error = outage
    flaky.token_error = KubeError("create token: ConnectError: connection refused")
    [(_, _, message)] = await streams.until(health_is("Unknown"))
    assert message.startswith("cannot tell whether namespace ns-a is usable")
    assert "connection refused" in message
    flaky.claim_error = flaky.token_error = None
    await streams.until(health_is("Healthy"))
    streams.close()


async def test_a_deleted_claim_is_unhealthy(plugin: Harness, flaky: FlakyKube) -> None:
    streams = Streams(plugin)
    await prepared(plugin, flaky)
    flaky.claim_error = NotFound("resourceclaims default/test-claim not found", 404, "NotFound")
    [(_, _, message)] = await streams.until(health_is("Unhealthy"))
    assert message == "ResourceClaim default/test-claim no longer exists"
    streams.close()


async def test_only_the_affected_device_of_a_claim_turns_unhealthy(
    plugin: Harness, flaky: FlakyKube
) -> None:
    streams = Streams(plugin)
    devices = [("a", "slot-0"), ("b", "slot-1")]
    uid = add_claim(
        flaky, ready_device("slot-0", "ns-a"), ready_device("slot-1", "ns-b"), devices=devices
    )
    await plugin.kubelet.prepare(("default", "test-claim", uid))
    await streams.until(health_is("Healthy"))
    flaky.inner.service_accounts.discard(("ns-b", WORKLOAD_SERVICE_ACCOUNT))
    report = await streams.until(lambda d: any(h == "Unhealthy" for _, h, _ in d))
    assert [(device, health) for device, health, _ in sorted(report)] == [
        ("slot-0", "Healthy"),
        ("slot-1", "Unhealthy"),
    ]
    streams.close()


async def test_health_survives_a_plugin_restart(dirs: Dirs, flaky: FlakyKube) -> None:
    options = {
        "health_check_interval": CHECK_INTERVAL,
        "credential_check_interval": CHECK_INTERVAL,
        "health_failure_threshold": THRESHOLD,
    }
    async with serving(dirs, flaky, **options) as first:
        uid = await prepared(first, flaky)
    failed = ready_device("slot-0", "ns-a")
    failed["conditions"].append(condition(CONDITION_FAILED, "True", "NamespaceLost", "gone"))
    flaky.inner.put_claim(make_claim(uid, status_devices=[failed]))
    async with serving(dirs, flaky, **options) as second:
        streams = Streams(second)
        [(_, _, message)] = await streams.until(health_is("Unhealthy"))
        assert message.endswith("NamespaceLost: gone"), "the recovered claim is checked too"
        streams.close()

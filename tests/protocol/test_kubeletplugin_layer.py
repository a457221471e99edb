"""The kubelet protocol layer's own promises, with a toy driver behind real sockets.

The namespace driver and the twin test what a driver does; these test what the layer
guarantees whatever the driver does: the serialization it chose, an answer for every
UID when the driver raises or forgets a claim, share IDs on v1 only, the registration
verdict, and the health stream of a driver that reports health.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from grpc_health.v1 import health_pb2

from space_dra import kubeletplugin as kp
from space_dra.proto.dra.v1beta1 import api_pb2 as v1beta1
from space_dra.proto.dra_health.v1 import api_pb2 as health_v1
from space_dra.proto.dra_health.v1alpha1 import api_pb2 as health_v1alpha1
from tests.protocol.conftest import Dirs, Kubelet
from tests.protocol.test_plugin_protocol import get_info, health, notify
from tests.support.claims import new_uid

TOY = "toy.example.com"
SHARE_ID = "5d6e7f80-91a2-4b3c-8d4e-5f6a7b8c9d0e"


class ToyDriver:
    """Prepares anything after a short pause; records what it saw and what overlapped."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.running: Counter[str] = Counter()
        self.calls_running = 0
        self.most_calls_at_once = 0
        self.same_claim_overlapped = False
        self.crash_for: set[str] = set()
        self.forget: set[str] = set()

    async def _call(self, claims: Sequence[kp.Claim]) -> None:
        uids = [claim.uid for claim in claims]
        self.batches.append(uids)
        if any(self.running[uid] for uid in uids):
            self.same_claim_overlapped = True
        self.running.update(uids)
        self.calls_running += 1
        self.most_calls_at_once = max(self.most_calls_at_once, self.calls_running)
        try:
            await asyncio.sleep(0.05)
        finally:
            self.running.subtract(uids)
            self.calls_running -= 1
        if self.crash_for & set(uids):
            raise RuntimeError("boom")

    async def prepare_resource_claims(
        self, claims: Sequence[kp.Claim]
    ) -> dict[str, kp.PrepareResult]:
        await self._call(claims)
        return {
            claim.uid: [
                kp.Device(
                    ("req",), "pool", f"dev-{claim.name}", (f"{TOY}/toy={claim.uid}",), SHARE_ID
                )
            ]
            for claim in claims
            if claim.uid not in self.forget
        }

    async def unprepare_resource_claims(
        self, claims: Sequence[kp.Claim]
    ) -> dict[str, kp.UnprepareResult]:
        await self._call(claims)
        return {claim.uid: None for claim in claims if claim.uid not in self.forget}


class HealthyToy(ToyDriver):
    def __init__(self) -> None:
        super().__init__()
        self.changes = kp.ChangeSignal()
        self.report = [kp.DeviceHealth("pool", "dev-a", kp.HealthStatus.HEALTHY)]

    @property
    def health_changes(self) -> kp.ChangeSignal:
        return self.changes

    def device_health(self) -> list[kp.DeviceHealth]:
        return self.report


async def serve(dirs: Dirs, driver: ToyDriver, **options: Any) -> kp.KubeletPlugin:
    plugin = kp.KubeletPlugin(
        driver,
        kp.Options(
            driver_name=TOY,
            plugins_dir=dirs.plugins,
            registrar_dir=dirs.registry,
            grace_seconds=0.5,
            **options,
        ),
    )
    await plugin.start()
    return plugin


@pytest.fixture
async def toy(dirs: Dirs) -> AsyncIterator[tuple[ToyDriver, Kubelet]]:
    driver = ToyDriver()
    plugin = await serve(dirs, driver)
    kubelet = Kubelet(plugin.paths.dra)
    try:
        yield driver, kubelet
    finally:
        await kubelet.close()
        await plugin.stop()


def claims(count: int) -> list[tuple[str, str, str]]:
    return [("default", f"c{i}", new_uid()) for i in range(count)]


@pytest.mark.parametrize(
    ("serialization", "batched", "overlapping"),
    [
        (kp.Serialization.PER_CLAIM, False, True),
        (kp.Serialization.GLOBAL, True, False),
        (kp.Serialization.NONE, True, True),
    ],
)
async def test_serialization_modes(
    dirs: Dirs, serialization: kp.Serialization, batched: bool, overlapping: bool
) -> None:
    driver = ToyDriver()
    plugin = await serve(dirs, driver, serialization=serialization)
    kubelet = Kubelet(plugin.paths.dra)
    try:
        shared = ("default", "shared", new_uid())
        first, second = [shared, *claims(2)], [shared, *claims(2)]
        responses = await asyncio.gather(kubelet.prepare(*first), kubelet.prepare(*second))
        for request, response in zip((first, second), responses, strict=True):
            assert {uid: e.error for uid, e in response.claims.items()} == {
                uid: "" for _, _, uid in request
            }
        assert all(len(batch) == (3 if batched else 1) for batch in driver.batches)
        assert (driver.most_calls_at_once > 1) == overlapping
        if serialization is not kp.Serialization.NONE:
            assert not driver.same_claim_overlapped, "one claim is never in two calls at once"
    finally:
        await kubelet.close()
        await plugin.stop()


async def test_a_crash_or_a_forgotten_claim_still_gets_an_answer(
    toy: tuple[ToyDriver, Kubelet],
) -> None:
    driver, kubelet = toy
    crashing, forgotten, fine = claims(3)
    driver.crash_for.add(crashing[2])
    driver.forget.add(forgotten[2])
    response = await kubelet.prepare(crashing, forgotten, fine)
    assert response.claims[crashing[2]].error == (
        f"claim {crashing[2]}: internal error: RuntimeError: boom"
    )
    assert "returned no result" in response.claims[forgotten[2]].error
    assert response.claims[fine[2]].error == ""
    again = await kubelet.unprepare(crashing, forgotten, fine)
    assert "internal error" in again.claims[crashing[2]].error
    assert "returned no result" in again.claims[forgotten[2]].error
    assert again.claims[fine[2]].error == ""


async def test_duplicates_collapse_and_conflicts_and_bad_uids_never_reach_the_driver(
    toy: tuple[ToyDriver, Kubelet],
) -> None:
    driver, kubelet = toy
    uid, other = new_uid(), new_uid()
    response = await kubelet.prepare(
        ("default", "a", uid),
        ("default", "a", uid),
        ("default", "b", other),
        ("elsewhere", "b", other),
        ("default", "c", "not-a-uid"),
        ("default", "d", ""),
    )
    assert driver.batches == [[uid]]
    assert response.claims[uid].error == ""
    assert "names this UID for both default/b and elsewhere/b" in response.claims[other].error
    assert "'not-a-uid' is not a Kubernetes UID" in response.claims["not-a-uid"].error
    assert "empty claim UID" in response.claims[""].error


async def test_share_ids_are_sent_over_v1_only(toy: tuple[ToyDriver, Kubelet]) -> None:
    _, kubelet = toy
    [request] = claims(1)
    [device] = (await kubelet.prepare(request)).claims[request[2]].devices
    assert (device.share_id, list(device.cdi_device_ids)) == (SHARE_ID, [f"{TOY}/toy={request[2]}"])
    # v1beta1 has no field for it: the layer must leave it out, not fail.
    assert "share_id" not in v1beta1.Device.DESCRIPTOR.fields_by_name
    [old] = (await kubelet.prepare(request, api=v1beta1)).claims[request[2]].devices
    assert (old.device_name, list(old.request_names)) == ("dev-c0", ["req"])


async def test_the_registration_verdict_reaches_the_hook_and_the_probes(dirs: Dirs) -> None:
    verdicts: list[tuple[bool, str]] = []
    plugin = await serve(
        dirs, ToyDriver(), on_registration=lambda ok, error: verdicts.append((ok, error))
    )
    try:
        assert plugin.problem() is None
        await notify(plugin.paths.registration, registered=False, error="endpoint taken")
        assert plugin.problem() == "the kubelet rejected the registration: endpoint taken"
        assert await health(plugin.paths.dra) == health_pb2.HealthCheckResponse.NOT_SERVING
        await notify(plugin.paths.registration, registered=True)
        assert verdicts == [(False, "endpoint taken"), (True, "")]
        assert plugin.problem() is None
        assert await health(plugin.paths.dra) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await plugin.stop()
    assert not plugin.paths.registration.exists() and not plugin.paths.dra.exists()
    assert plugin.problem() == f"registration socket {plugin.paths.registration} is missing"


async def test_a_health_reporter_gets_both_health_streams(dirs: Dirs) -> None:
    driver = HealthyToy()
    plugin = await serve(dirs, driver)
    kubelet = Kubelet(plugin.paths.dra)
    try:
        info = await get_info(plugin.paths.registration)
        assert list(info.supported_versions)[-2:] == [
            "v1.DRAResourceHealth",
            "v1alpha1.DRAResourceHealth",
        ]
        streams = {api: kubelet.watch_health(api) for api in (health_v1, health_v1alpha1)}
        for api, stream in streams.items():
            first: Any = await asyncio.wait_for(stream.read(), 5)
            assert [(d.device.device_name, d.health) for d in first.devices] == [
                ("dev-a", api.HEALTHY)
            ]
        driver.report = [
            kp.DeviceHealth("pool", "dev-a", kp.HealthStatus.UNHEALTHY, "lamp broke"),
            kp.DeviceHealth("pool", "dev-b", kp.HealthStatus.UNKNOWN, "x" * 5000),
        ]
        driver.changes.notify()
        for api, stream in streams.items():
            update: Any = await asyncio.wait_for(stream.read(), 5)
            a, b = update.devices
            assert (a.device.device_name, a.health, a.message) == (
                "dev-a",
                api.UNHEALTHY,
                "lamp broke",
            )
            assert (b.device.device_name, b.health) == ("dev-b", api.UNKNOWN)
            assert len(b.message) <= 1024, "the kubelet keeps at most 1024 characters"
            stream.cancel()
    finally:
        await kubelet.close()
        await plugin.stop()


async def test_a_device_reported_twice_is_sent_once_with_its_worst_health(dirs: Dirs) -> None:
    driver = HealthyToy()
    driver.report = [
        kp.DeviceHealth("pool", "shared", kp.HealthStatus.HEALTHY, "claim one is fine"),
        kp.DeviceHealth("pool", "shared", kp.HealthStatus.UNHEALTHY, "claim two is not"),
        kp.DeviceHealth("pool", "shared", kp.HealthStatus.UNKNOWN, "claim three cannot tell"),
    ]
    plugin = await serve(dirs, driver)
    kubelet = Kubelet(plugin.paths.dra)
    try:
        stream = kubelet.watch_health(health_v1)
        first: Any = await asyncio.wait_for(stream.read(), 5)
        assert [(d.device.device_name, d.health, d.message) for d in first.devices] == [
            ("shared", health_v1.UNHEALTHY, "claim two is not")
        ]
        stream.cancel()
    finally:
        await kubelet.close()
        await plugin.stop()


async def test_stop_without_start_is_harmless(dirs: Dirs) -> None:
    plugin = kp.KubeletPlugin(ToyDriver(), kp.Options(TOY, dirs.plugins, dirs.registry))
    await plugin.stop()
    assert not dirs.plugins.exists() and not dirs.registry.exists()

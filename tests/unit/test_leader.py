"""Leader election on a Lease in the in-memory API server: acquire, renew, lose,
expiry, the renew deadline, conflicts and release."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from space_dra.controller.leader import LeaderElector, LeaseOptions
from space_dra.kube import Conflict
from space_dra.kube_memory import MemoryKube
from tests.support.controller import eventually

OPTIONS = LeaseOptions(
    namespace="space-dra",
    name="space-dra-controller",
    identity="me",
    lease_duration=1.0,
    renew_deadline=0.6,
    retry=0.05,
)


def held_by(holder: str, renewed_ago: float, transitions: int = 3) -> Lease:
    renewed = datetime.now(UTC) - timedelta(seconds=renewed_ago)
    return Lease(
        metadata=ObjectMeta(name=OPTIONS.name, namespace=OPTIONS.namespace),
        spec=LeaseSpec(
            holderIdentity=holder,
            leaseDurationSeconds=15,
            acquireTime=renewed - timedelta(minutes=5),
            renewTime=renewed,
            leaseTransitions=transitions,
        ),
    )


async def lease(kube: MemoryKube) -> LeaseSpec:
    stored = await kube.get(Lease, OPTIONS.name, OPTIONS.namespace)
    assert stored.spec is not None
    return stored.spec


async def test_acquires_a_missing_lease() -> None:
    kube = MemoryKube()
    elector = LeaderElector(kube, OPTIONS)
    await asyncio.wait_for(elector.acquire(), 1)
    assert elector.leading
    spec = await lease(kube)
    assert (spec.holderIdentity, spec.leaseTransitions, spec.leaseDurationSeconds) == ("me", 0, 1)


async def test_keeps_renewing_while_leading() -> None:
    kube = MemoryKube()
    elector = LeaderElector(kube, OPTIONS)
    await elector.acquire()
    first = (await lease(kube)).renewTime
    renewing = asyncio.create_task(elector.keep_leading())
    await asyncio.sleep(0.3)
    spec = await lease(kube)
    assert spec.renewTime is not None and first is not None and spec.renewTime > first
    assert spec.acquireTime is not None and spec.acquireTime <= first, "acquireTime is kept"
    assert spec.leaseTransitions == 0
    assert elector.leading and not renewing.done()
    renewing.cancel()


async def test_stops_leading_when_another_replica_holds_the_lease() -> None:
    kube = MemoryKube()
    elector = LeaderElector(kube, OPTIONS)
    await elector.acquire()
    renewing = asyncio.create_task(elector.keep_leading())
    kube.put(held_by("other", renewed_ago=0))
    await asyncio.wait_for(renewing, 1)
    assert not elector.leading
    assert (await lease(kube)).holderIdentity == "other"


async def test_takes_over_only_an_expired_lease() -> None:
    kube = MemoryKube()
    elector = LeaderElector(kube, OPTIONS)
    kube.put(held_by("other", renewed_ago=5))
    assert not await elector.try_acquire_or_renew(), "renewed 5 s ago, lasts 15 s"
    kube.put(held_by("other", renewed_ago=20))
    assert await elector.try_acquire_or_renew()
    spec = await lease(kube)
    assert (spec.holderIdentity, spec.leaseTransitions) == ("me", 4)
    assert spec.acquireTime is not None
    assert spec.acquireTime > datetime.now(UTC) - timedelta(seconds=5), "a new term"


async def test_stops_at_the_renew_deadline_when_the_api_server_is_unreachable() -> None:
    kube = MemoryKube()
    elector = LeaderElector(kube, OPTIONS)
    await elector.acquire()
    kube.fail_next("get", Lease, times=1000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(elector.keep_leading(), 2)
    assert not elector.leading
    assert OPTIONS.renew_deadline - 0.1 <= loop.time() - started < OPTIONS.lease_duration


async def test_a_conflicting_write_loses_the_round() -> None:
    kube = MemoryKube()
    elector = LeaderElector(kube, OPTIONS)
    kube.fail_next("create", Lease, Conflict("leases already exists", 409))
    assert not await elector.try_acquire_or_renew(), "another candidate created it first"
    kube.put(held_by("other", renewed_ago=20))
    kube.fail_next("replace", Lease, Conflict("the object has been modified", 409))
    assert not await elector.try_acquire_or_renew(), "another candidate took it first"


async def test_acquire_retries_through_api_errors() -> None:
    kube = MemoryKube()
    elector = LeaderElector(kube, OPTIONS)
    kube.fail_next("get", Lease, times=2)
    await asyncio.wait_for(elector.acquire(), 1)
    assert elector.leading


async def test_release_hands_the_lease_over_at_once() -> None:
    kube = MemoryKube()
    elector = LeaderElector(kube, OPTIONS)
    await elector.acquire()
    await elector.release()
    assert not elector.leading
    spec = await lease(kube)
    assert (spec.holderIdentity, spec.leaseDurationSeconds) == (None, 1)
    standby = LeaderElector(kube, replace(OPTIONS, identity="standby"))
    assert await standby.try_acquire_or_renew(), "no need to wait for the lease to expire"
    await elector.release()  # not leading: nothing to do
    assert (await lease(kube)).holderIdentity == "standby"


async def test_release_never_clears_another_holder() -> None:
    kube = MemoryKube()
    elector = LeaderElector(kube, OPTIONS)
    await elector.acquire()
    kube.put(held_by("other", renewed_ago=0))
    kube.fail_next("get", Lease)  # and an error is only logged
    await elector.release()
    await eventually(lambda: not elector.leading, "not leading")
    elector.leading = True
    await elector.release()
    assert (await lease(kube)).holderIdentity == "other"

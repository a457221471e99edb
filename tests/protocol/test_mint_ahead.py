"""Tokens minted when the controller lists the node on a namespace, before the kubelet asks.

Real gRPC over a real unix socket; the in-memory API server stands in for the cluster and
records every TokenRequest, so each test can count them: the prepare takes the token minted
ahead instead of making its own, and nothing is minted for another node or when the switch
is off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from space_dra.contract import (
    DEFAULT_DRIVER_NAME,
    POOL_NAME,
    WORKLOAD_SERVICE_ACCOUNT,
    DeviceRef,
    ManagementLabels,
    device_label,
)
from space_dra.kube import Forbidden
from space_dra.kube_memory import MemoryKube
from space_dra.metrics import REGISTRY
from space_dra.plugin import ahead
from space_dra.plugin.ahead import MintAhead
from space_dra.plugin.plan import Planner
from tests.protocol.conftest import Dirs, Harness, serving
from tests.support.claims import make_claim, new_uid, ready_device
from tests.support.controller import eventually

NODE = "node-a"
LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)


@pytest.fixture
async def ahead_harness(dirs: Dirs) -> AsyncIterator[Harness]:
    async with serving(dirs, node_name=NODE, mint_ahead=True) as started:
        yield started


def add_claim(kube: MemoryKube, recorded: bool = True) -> tuple[str, str]:
    """An allocated claim, its device made ready by the controller unless not ``recorded``
    (the record not written yet): (claim UID, its namespace)."""
    uid = new_uid()
    namespace = f"ephemeral-ns-{uid[:5]}"
    kube.service_accounts.add((namespace, WORKLOAD_SERVICE_ACCOUNT))
    ready = [ready_device("slot-0", namespace)] if recorded else None
    kube.put_claim(make_claim(uid, status_devices=ready))
    return uid, namespace


async def list_nodes(kube: MemoryKube, uid: str, namespace: str, *nodes: str) -> None:
    """What the controller writes when a pod of the claim is bound to ``nodes``."""
    await kube.create(
        Namespace(
            metadata=ObjectMeta(
                name=namespace,
                labels={
                    **LABELS.managed,
                    LABELS.claim_uid: uid,
                    LABELS.device: device_label(DeviceRef("ns", POOL_NAME, "slot-0")),
                },
                annotations={LABELS.nodes: ",".join(nodes), LABELS.claim_ref: "default/test-claim"},
            )
        )
    )


def counted(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("space_dra_plugin_tokens_ahead_total", {"outcome": outcome})
        or 0.0
    )


async def test_the_prepare_takes_the_token_minted_when_the_node_was_listed(
    ahead_harness: Harness,
) -> None:
    kube = ahead_harness.kube
    uid, namespace = add_claim(kube)
    await list_nodes(kube, uid, namespace, NODE)
    await eventually(lambda: kube.tokens_issued or None, "a token minted ahead")
    before = counted("used")

    response = await ahead_harness.kubelet.prepare(("default", "test-claim", uid))

    assert response.claims[uid].error == ""
    assert kube.tokens_issued == [(namespace, WORKLOAD_SERVICE_ACCOUNT, 3600)], "no second mint"
    assert counted("used") == before + 1
    token = (ahead_harness.dirs.artifacts / uid / "token").read_text()
    assert token.startswith("memtoken.")
    assert ahead_harness.server.driver.state.prepared[uid].devices[0].token_expires_at > 0


def claim_reads(kube: MemoryKube) -> int:
    return kube.calls.count("get_claim")


async def test_the_prepare_uses_the_claim_read_ahead_instead_of_reading_it(
    ahead_harness: Harness,
) -> None:
    kube = ahead_harness.kube
    uid, namespace = add_claim(kube)
    await list_nodes(kube, uid, namespace, NODE)
    await eventually(lambda: kube.tokens_issued or None, "a token minted ahead")
    reads = claim_reads(kube)
    response = await ahead_harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    assert claim_reads(kube) == reads, "the prepare made no API call"


async def test_a_record_written_after_the_node_was_listed_is_read_again(
    ahead_harness: Harness,
) -> None:
    kube = ahead_harness.kube
    uid, namespace = add_claim(kube, recorded=False)
    await list_nodes(kube, uid, namespace, NODE)
    await eventually(lambda: kube.tokens_issued or None, "a token minted ahead")
    kube.put_claim(make_claim(uid, status_devices=[ready_device("slot-0", namespace)]))
    await asyncio.sleep(0.5)  # past the re-reads
    reads = claim_reads(kube)
    response = await ahead_harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    assert claim_reads(kube) == reads
    assert len(kube.tokens_issued) == 1


async def test_a_claim_read_too_long_ago_is_read_again(
    ahead_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ahead, "READ_AHEAD_SECONDS", 0.0)
    kube = ahead_harness.kube
    uid, namespace = add_claim(kube)
    await list_nodes(kube, uid, namespace, NODE)
    await eventually(lambda: kube.tokens_issued or None, "a token minted ahead")
    reads = claim_reads(kube)
    response = await ahead_harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    assert claim_reads(kube) == reads + 1
    assert len(kube.tokens_issued) == 1, "the token minted ahead is still used"


async def test_nothing_is_minted_for_a_namespace_that_lists_another_node(
    ahead_harness: Harness,
) -> None:
    kube = ahead_harness.kube
    uid, namespace = add_claim(kube)
    await list_nodes(kube, uid, namespace, "node-b")
    await asyncio.sleep(0.3)
    assert kube.tokens_issued == []
    response = await ahead_harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    assert len(kube.tokens_issued) == 1


async def test_a_refused_head_start_leaves_the_prepare_to_mint(ahead_harness: Harness) -> None:
    kube = ahead_harness.kube
    uid, namespace = add_claim(kube)
    kube.fail_next("create_token", error=Forbidden("not yet", 403, "Forbidden"), times=1)
    await list_nodes(kube, uid, namespace, NODE)
    await asyncio.sleep(0.3)
    assert kube.tokens_issued == []
    response = await ahead_harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    assert len(kube.tokens_issued) == 1


async def test_a_prepared_claim_gets_no_second_token_when_its_namespace_changes(
    ahead_harness: Harness,
) -> None:
    kube = ahead_harness.kube
    uid, namespace = add_claim(kube)
    response = await ahead_harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    await list_nodes(kube, uid, namespace, NODE)
    await asyncio.sleep(0.3)
    assert len(kube.tokens_issued) == 1


async def test_with_the_switch_off_tokens_are_minted_by_the_prepare_only(dirs: Dirs) -> None:
    async with serving(dirs, node_name=NODE) as harness:
        uid, namespace = add_claim(harness.kube)
        await list_nodes(harness.kube, uid, namespace, NODE)
        await asyncio.sleep(0.3)
        assert harness.kube.tokens_issued == []
        assert not [c for c in harness.kube.calls if c in ("list Namespace", "watch Namespace")]


async def test_a_token_nobody_takes_is_dropped_after_a_minute(dirs: Dirs) -> None:
    kube = MemoryKube()
    now = [0.0]
    options = dirs.options(node_name=NODE, mint_ahead=True).driver
    minted: list[str] = []

    async def mint(
        uid: str, namespace: str, account: str, lifetime: int
    ) -> tuple[str, float, float]:
        minted.append(namespace)
        return "token", 0.0, float(lifetime)

    minter = MintAhead(
        kube,
        options,
        Planner(kube, options, lambda: 0.0),
        mint,
        lambda _: False,
        monotonic=lambda: now[0],
    )
    uid, namespace = add_claim(kube)
    await list_nodes(kube, uid, namespace, NODE)
    (item,), _ = await kube.list(Namespace)
    minter.seen(item)
    await eventually(lambda: minted or None, "the head start")
    unused = counted("unused")

    now[0] += ahead.KEEP_SECONDS + 1
    other_uid, other_namespace = add_claim(kube)
    await list_nodes(kube, other_uid, other_namespace, NODE)
    minter.seen(
        next(
            n
            for n in (await kube.list(Namespace))[0]
            if n.metadata and n.metadata.name == other_namespace
        )
    )

    assert counted("unused") == unused + 1
    assert await minter.take(uid, namespace, WORKLOAD_SERVICE_ACCOUNT, 3600) is None
    await minter.stop()


async def test_the_prepare_never_waits_for_a_re_read_of_the_claim(
    ahead_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ahead, "RECORD_RETRIES", (30.0,))
    kube = ahead_harness.kube
    minter = ahead_harness.server.driver.ahead
    uid, namespace = add_claim(kube, recorded=False)
    await list_nodes(kube, uid, namespace, NODE)
    await eventually(lambda: kube.tokens_issued or None, "a token minted ahead")
    kube.put_claim(make_claim(uid, status_devices=[ready_device("slot-0", namespace)]))

    response = await ahead_harness.kubelet.prepare(("default", "test-claim", uid))

    assert response.claims[uid].error == ""
    assert minter._reading, "the re-read is still waiting; the prepare did not"
    assert len(kube.tokens_issued) == 1


async def test_a_token_nobody_takes_goes_without_another_event(
    ahead_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ahead, "KEEP_SECONDS", 0.2)
    kube = ahead_harness.kube
    minter = ahead_harness.server.driver.ahead
    unused = counted("unused")
    uid, namespace = add_claim(kube)
    await list_nodes(kube, uid, namespace, NODE)
    await eventually(lambda: kube.tokens_issued or None, "a token minted ahead")
    await eventually(lambda: not minter._waiting or None, "the unused token dropped")
    assert counted("unused") == unused + 1


async def test_a_restarted_plugin_mints_nothing_ahead_for_the_claims_it_prepared(
    dirs: Dirs,
) -> None:
    kube = MemoryKube()
    async with serving(dirs, kube, node_name=NODE, mint_ahead=True) as first:
        uid, namespace = add_claim(kube)
        response = await first.kubelet.prepare(("default", "test-claim", uid))
        assert response.claims[uid].error == ""
        await list_nodes(kube, uid, namespace, NODE)
        await asyncio.sleep(0.2)
    minted, calls = counted("minted"), len(kube.calls)
    # The restarted plugin's first list shows the namespace listing this node again.
    async with serving(dirs, kube, node_name=NODE, mint_ahead=True) as restarted:
        await eventually(
            lambda: "list Namespace" in kube.calls[calls:] or None,
            "the restarted plugin's namespace list",
        )
        await asyncio.sleep(0.3)
        assert uid in restarted.server.driver.state.prepared
    assert counted("minted") == minted

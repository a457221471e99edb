"""Tokens are minted with the node's authorization: bound to the Node, naming the claim.

The API server (the chart's admission policy) lets a node's plugin mint only for a
namespace whose claim has a pod on that node and whose claim UID matches the one on the
request; these tests check what the plugin sends and that it waits out the moment
between the kubelet's call and the controller recording the node.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from space_dra.contract import DEFAULT_DRIVER_NAME, WORKLOAD_SERVICE_ACCOUNT, ManagementLabels
from space_dra.kube import Forbidden, TokenBinding
from space_dra.kube_memory import MemoryKube
from space_dra.plugin.server import PluginServer
from tests.protocol.conftest import Dirs, Harness, Kubelet
from tests.support.claims import make_claim, new_uid, ready_device

NODE = "node-a"
CLAIM_UID_KEY = ManagementLabels(DEFAULT_DRIVER_NAME).claim_uid


@pytest.fixture
async def node_harness(dirs: Dirs) -> AsyncIterator[Harness]:
    kube = MemoryKube()
    server = PluginServer(kube, dirs.options(node_name=NODE, wait_timeout=2.0))
    await server.start()
    harness = Harness(dirs, kube, server, Kubelet(server.paths.dra))
    try:
        yield harness
    finally:
        await harness.kubelet.close()
        await harness.server.stop()


def add_ready_claim(h: Harness) -> tuple[str, str]:
    uid = new_uid()
    namespace = f"ephemeral-ns-{uid[:5]}"
    h.kube.service_accounts.add((namespace, WORKLOAD_SERVICE_ACCOUNT))
    h.kube.put_claim(make_claim(uid, status_devices=[ready_device("slot-0", namespace)]))
    return uid, namespace


def not_on_this_node() -> Forbidden:
    return Forbidden(
        "ValidatingAdmissionPolicy denied request: space-dra: node node-a runs no pod of the claim",
        403,
        "Forbidden",
    )


async def test_tokens_are_bound_to_the_node_and_name_the_claim(node_harness: Harness) -> None:
    uid, namespace = add_ready_claim(node_harness)
    response = await node_harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    assert node_harness.kube.tokens_issued == [(namespace, WORKLOAD_SERVICE_ACCOUNT, 3600)]
    assert node_harness.kube.token_bindings == [TokenBinding(NODE, {CLAIM_UID_KEY: uid})]


async def test_a_refusal_is_retried_until_the_node_is_authorized(node_harness: Harness) -> None:
    uid, _ = add_ready_claim(node_harness)
    node_harness.kube.fail_next("create_token", error=not_on_this_node(), times=3)
    response = await node_harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    assert len(node_harness.kube.tokens_issued) == 1
    assert (node_harness.dirs.artifacts / uid / "token").read_text().startswith("memtoken.")


async def test_a_lasting_refusal_fails_within_the_budget_and_leaves_nothing(
    node_harness: Harness,
) -> None:
    uid, _ = add_ready_claim(node_harness)
    node_harness.kube.fail_next("create_token", error=not_on_this_node(), times=1000)
    started = time.monotonic()
    response = await node_harness.kubelet.prepare(("default", "test-claim", uid))
    elapsed = time.monotonic() - started
    assert "runs no pod of the claim" in response.claims[uid].error
    assert uid in response.claims[uid].error
    assert 1.5 <= elapsed < 8, "waits for the budget (2 s here), not for the kubelet's timeout"
    assert node_harness.kube.tokens_issued == []
    assert list(node_harness.dirs.cdi.iterdir()) == []
    assert list(node_harness.dirs.artifacts.iterdir()) == []


async def test_other_errors_are_not_retried(node_harness: Harness) -> None:
    uid, _ = add_ready_claim(node_harness)
    node_harness.kube.fail_next("create_token", times=1)  # a 500
    started = time.monotonic()
    response = await node_harness.kubelet.prepare(("default", "test-claim", uid))
    assert "unavailable" in response.claims[uid].error
    assert time.monotonic() - started < 1.0


async def test_without_a_node_name_tokens_are_not_bound(dirs: Dirs) -> None:
    kube = MemoryKube()
    server = PluginServer(kube, dirs.options())
    await server.start()
    kubelet = Kubelet(server.paths.dra)
    try:
        uid, _ = add_ready_claim(Harness(dirs, kube, server, kubelet))
        response = await kubelet.prepare(("default", "test-claim", uid))
        assert response.claims[uid].error == ""
        assert kube.token_bindings == [None]
    finally:
        await kubelet.close()
        await server.stop()

"""The plugin over real sockets with an unreadable checkpoint: it starts, says so once
(log line and metric, by reason), and forgets no prepared claim.

An unknown format version is what a rollback to an older plugin finds after a newer
one wrote the checkpoint; corruption can also appear while the plugin runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from space_dra.metrics import REGISTRY
from space_dra.plugin.server import PluginServer
from tests.protocol.conftest import Harness, Kubelet
from tests.protocol.test_plugin_protocol import DRIVER, add_ready_claim


def recoveries(reason: str) -> float:
    found = REGISTRY.get_sample_value(
        "space_dra_plugin_checkpoint_recoveries_total", {"reason": reason}
    )
    return found or 0.0


def checkpoint_of(harness: Harness) -> Path:
    return harness.dirs.plugins / DRIVER / "checkpoint.json"


def unreadable_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        getattr(record, "space_fields", {})
        for record in caplog.records
        if record.getMessage() == "checkpoint_unreadable"
    ]


async def restart(harness: Harness) -> None:
    await harness.kubelet.close()
    await harness.server.stop()
    harness.server = PluginServer(harness.kube, harness.dirs.options())
    await harness.server.start()
    harness.kubelet = Kubelet(harness.server.paths.dra)


async def test_a_checkpoint_of_an_unknown_future_version_is_set_aside_and_rebuilt(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    uid = add_ready_claim(harness)
    await harness.kubelet.prepare(("default", "test-claim", uid))
    checkpoint = checkpoint_of(harness)
    future = json.loads(checkpoint.read_text())
    future["version"] = 2
    future["claims"] = {uid: {"shape": "from a newer plugin"}}
    checkpoint.write_text(json.dumps(future))
    before = recoveries("unsupported_version")

    caplog.set_level(logging.ERROR)
    await restart(harness)

    [aside] = checkpoint.parent.glob("checkpoint.json.corrupt-*")
    assert json.loads(aside.read_text()) == future, "kept intact for the newer plugin"
    rebuilt = json.loads(checkpoint.read_text())
    assert rebuilt["version"] == 1
    assert list(rebuilt["claims"]) == [uid], "rebuilt from the CDI spec on the node"
    assert recoveries("unsupported_version") == before + 1
    [event] = unreadable_events(caplog)
    assert event["reason"] == "unsupported_version"
    assert "format version 2, this plugin reads version 1" in str(event["error"])
    assert event["rebuilt_claims"] == 1
    # Serving, and the claim is known again without asking the API server.
    calls = harness.kube.calls.count("get_claim")
    response = await harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    assert harness.kube.calls.count("get_claim") == calls


async def test_corruption_while_running_forgets_no_prepared_claim(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    first = add_ready_claim(harness, name="first")
    await harness.kubelet.prepare(("default", "first", first))
    checkpoint_of(harness).write_text("\x00\x00 truncated")
    before = recoveries("corrupt")

    caplog.set_level(logging.ERROR)
    second = add_ready_claim(harness, name="second")
    response = await harness.kubelet.prepare(("default", "second", second))
    assert response.claims[second].error == ""

    assert recoveries("corrupt") == before + 1
    assert [event["reason"] for event in unreadable_events(caplog)] == ["corrupt"]
    on_disk = json.loads(checkpoint_of(harness).read_text())["claims"]
    assert sorted(on_disk) == sorted([first, second])
    assert sorted(harness.server.driver.state.prepared) == sorted([first, second])

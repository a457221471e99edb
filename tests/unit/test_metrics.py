"""The metrics operators rely on: process and build info, work queue, informer relists.

Values are read from the process's registry, as /metrics exposes them. Metrics are
process-global, so each test compares before and after.
"""

from __future__ import annotations

import asyncio
import platform
from typing import Any

import pytest
from lightkube.resources.core_v1 import ConfigMap

from space_dra import __version__, cli, metrics
from space_dra.controller.informer import Informer
from space_dra.controller.workqueue import WorkQueue
from space_dra.kube import Gone
from space_dra.kube_memory import MemoryKube
from space_dra.metrics import REGISTRY, announce_component, exposition
from tests.support.controller import eventually
from tests.unit.test_workqueue_and_informer import Recorder, config_map, running, started


def value(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_process_and_runtime_metrics_are_registered() -> None:
    text = exposition().decode()
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "process_max_fds",
        "python_info",
        "python_gc_collections_total",
    ):
        assert f"\n{name}" in text, name
    assert value("process_resident_memory_bytes") > 0
    assert value("process_start_time_seconds") > 0


@pytest.fixture
def exposing_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """announce_component narrows what the process exposes; undo it after the test."""
    monkeypatch.setattr(metrics._EXPOSED, "hidden_prefix", None)


@pytest.mark.usefixtures("exposing_everything")
def test_build_info_names_version_python_and_component() -> None:
    announce_component("kubelet-plugin", "1.2.3")
    assert (
        value(
            "space_dra_build_info",
            version="1.2.3",
            python_version=platform.python_version(),
            component="kubelet-plugin",
        )
        == 1
    )


@pytest.mark.usefixtures("exposing_everything")
@pytest.mark.parametrize(
    ("component", "own", "foreign"),
    [
        ("controller", "space_dra_controller_leader", "space_dra_plugin_registered"),
        ("kubelet-plugin", "space_dra_plugin_registered", "space_dra_controller_leader"),
    ],
)
def test_a_component_exposes_its_own_metrics_only(component: str, own: str, foreign: str) -> None:
    everything = exposition().decode()
    assert f"\n{own} " in everything
    assert f"\n{foreign} " in everything
    announce_component(component, "1.2.3")
    exposed = exposition().decode()
    assert f"\n{own} " in exposed
    assert f"\n{foreign} " not in exposed
    for shared in ("space_dra_build_info", "space_dra_api_writes", "process_cpu_seconds_total"):
        assert f"\n# HELP {shared}" in exposed


@pytest.mark.usefixtures("kept_logging", "exposing_everything")
def test_each_component_records_its_build_info_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run(_args: Any) -> int:
        return 0

    monkeypatch.setattr("space_dra.controller.main.run", run)
    assert cli.main(["controller"]) == 0
    labels = {"python_version": platform.python_version(), "component": "controller"}
    assert value("space_dra_build_info", version=__version__, **labels) == 1


async def test_workqueue_depth_counts_waiting_keys() -> None:
    release = asyncio.Event()

    async def process(_key: str) -> None:
        await release.wait()

    queue: WorkQueue[str] = WorkQueue(process, workers=1, name="depth-test")
    for key in ("a", "b", "c", "a"):
        queue.add(key)
    assert value("space_dra_controller_workqueue_depth", queue="depth-test") == 3
    async with started(queue):
        # One key is being processed; two wait.
        await eventually(
            lambda: value("space_dra_controller_workqueue_depth", queue="depth-test") == 2,
            "a worker took a key",
        )
        release.set()
        await eventually(lambda: len(queue) == 0, "all processed")
    assert value("space_dra_controller_workqueue_depth", queue="depth-test") == 0


async def test_workqueue_retries_count_failures() -> None:
    attempts: list[str] = []

    async def process(key: str) -> None:
        attempts.append(key)
        if len(attempts) <= 2:
            raise RuntimeError("transient")

    before = value("space_dra_controller_workqueue_retries_total", queue="retry-test")
    queue: WorkQueue[str] = WorkQueue(process, workers=1, name="retry-test")
    async with started(queue):
        queue.add("a")
        await eventually(lambda: len(attempts) == 3, "two retries, then success", within=3)
    after = value("space_dra_controller_workqueue_retries_total", queue="retry-test")
    assert after - before == 2


async def test_informer_relists_are_counted_by_kind_but_not_the_first_list() -> None:
    kube = MemoryKube()
    await kube.create(config_map("a", v="1"))
    before = value("space_dra_controller_informer_relists_total", kind="ConfigMap")
    informer: Informer[ConfigMap] = Informer(kube, ConfigMap, Recorder())
    async with running(informer):
        assert value("space_dra_controller_informer_relists_total", kind="ConfigMap") == before
        kube.end_watches(Gone("too old resource version", 410, "Expired"))
        kube.compact()
        await eventually(lambda: informer.relists == 2, "a relist", within=3)
    assert value("space_dra_controller_informer_relists_total", kind="ConfigMap") == before + 1

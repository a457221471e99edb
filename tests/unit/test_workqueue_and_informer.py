"""The work queue (one worker per key, dedupe, backoff) and the informer (list, watch,
relist after Gone, write-through), against the in-memory API server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from space_dra.controller.informer import Informer, key_of
from space_dra.controller.workqueue import WorkQueue
from space_dra.kube import Gone
from space_dra.kube_memory import MemoryKube
from tests.support.controller import eventually


@contextlib.asynccontextmanager
async def started(queue: WorkQueue[Any]) -> AsyncIterator[WorkQueue[Any]]:
    queue.start()
    try:
        yield queue
    finally:
        await queue.stop()


async def test_a_waiting_key_is_processed_once() -> None:
    seen: list[str] = []

    async def process(key: str) -> None:
        seen.append(key)

    queue: WorkQueue[str] = WorkQueue(process, workers=2)
    for key in ("a", "a", "b", "a"):
        queue.add(key)
    assert len(queue) == 2
    async with started(queue):
        await eventually(lambda: len(queue) == 0 and len(seen) == 2, "both keys processed")
    assert sorted(seen) == ["a", "b"]


async def test_idle_only_once_every_key_waiting_or_running_is_done() -> None:
    release = asyncio.Event()

    async def process(key: str) -> None:
        await release.wait()

    queue: WorkQueue[str] = WorkQueue(process, workers=1)
    assert queue.idle.is_set()
    queue.add("a")
    queue.add("b")
    assert not queue.idle.is_set()
    queue.start()
    try:
        await asyncio.sleep(0.05)
        assert not queue.idle.is_set(), "idle while a key runs and another waits"
        release.set()
        await asyncio.wait_for(queue.idle.wait(), 2)
    finally:
        await queue.stop()


async def test_a_key_added_while_it_runs_runs_again_afterwards_never_concurrently() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    runs: list[str] = []
    release = asyncio.Event()

    async def process(key: str) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        runs.append(key)
        if len(runs) == 1:
            await release.wait()
        running.discard(key)

    queue: WorkQueue[str] = WorkQueue(process, workers=4)
    async with started(queue):
        queue.add("a")
        await eventually(lambda: runs == ["a"], "the first run")
        queue.add("a")
        queue.add("a")
        await asyncio.sleep(0.05)
        assert runs == ["a"], "not while the first run is active"
        release.set()
        await eventually(lambda: runs == ["a", "a"], "exactly one more run")
        await asyncio.sleep(0.05)
    assert runs == ["a", "a"]
    assert overlaps == []


async def test_failures_are_retried_with_growing_backoff_reset_by_success() -> None:
    attempts: list[float] = []
    outcomes = iter([False, False, True, False, True])

    async def process(key: str) -> None:
        attempts.append(time.monotonic())
        if not next(outcomes):
            raise RuntimeError("transient")

    queue: WorkQueue[str] = WorkQueue(process, workers=1)
    async with started(queue):
        queue.add("a")
        await eventually(lambda: len(attempts) == 3, "two retries", within=3)
        queue.add("a")
        await eventually(lambda: len(attempts) == 5, "one more retry", within=3)
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.2
    assert gaps[1] >= 0.4, "the second retry waits twice as long"
    assert gaps[3] < 0.35, "a success resets the backoff"


def config_map(name: str, **data: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace="ns"), data=data or None)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, str | None]] = []

    def __call__(self, event: str, old: Any, new: Any) -> None:
        def value(obj: Any) -> str | None:
            return None if obj is None else (obj.data or {}).get("v", "")

        self.events.append((event, value(old), value(new)))


@contextlib.asynccontextmanager
async def running(informer: Informer[Any]) -> AsyncIterator[Informer[Any]]:
    task = asyncio.create_task(informer.run())
    try:
        await eventually(informer.synced.is_set, "synced")
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_lists_then_follows_the_watch() -> None:
    kube = MemoryKube()
    await kube.create(config_map("a", v="1"))
    recorder = Recorder()
    informer: Informer[ConfigMap] = Informer(kube, ConfigMap, recorder)
    async with running(informer):
        assert recorder.events == [("ADDED", None, "1")]
        current = await kube.get(ConfigMap, "a", "ns")
        current.data = {"v": "2"}
        await kube.replace(current)
        await kube.create(config_map("b", v="3"))
        await kube.delete(ConfigMap, "a", "ns")
        await eventually(lambda: len(recorder.events) == 4, "three more events")
        assert list(informer.cache) == [("ns", "b")]
    assert recorder.events == [
        ("ADDED", None, "1"),
        ("MODIFIED", "1", "2"),
        ("ADDED", None, "3"),
        ("DELETED", "2", None),
    ]


async def test_selectors_are_passed_to_list_and_watch() -> None:
    kube = MemoryKube()
    labelled = config_map("ours")
    assert labelled.metadata
    labelled.metadata.labels = {"app": "x"}
    await kube.create(labelled)
    await kube.create(config_map("theirs"))
    informer: Informer[ConfigMap] = Informer(
        kube, ConfigMap, Recorder(), labels={"app": "x"}, fields={"metadata.namespace": "ns"}
    )
    async with running(informer):
        await kube.create(config_map("later"))
        await asyncio.sleep(0.05)
        assert list(informer.cache) == [("ns", "ours")]


async def test_after_gone_it_relists_and_reports_what_it_missed() -> None:
    kube = MemoryKube()
    await kube.create(config_map("kept", v="1"))
    await kube.create(config_map("dropped", v="1"))
    recorder = Recorder()
    informer: Informer[ConfigMap] = Informer(kube, ConfigMap, recorder)
    async with running(informer):
        recorder.events.clear()
        kube.end_watches(Gone("too old resource version", 410, "Expired"))
        # While the watch is down: one object changes, one goes, one comes.
        current = await kube.get(ConfigMap, "kept", "ns")
        current.data = {"v": "2"}
        await kube.replace(current)
        await kube.delete(ConfigMap, "dropped", "ns")
        await kube.create(config_map("new", v="1"))
        kube.compact()  # and the watch's resourceVersion is too old to resume from
        await eventually(lambda: informer.relists == 2, "a relist", within=3)
        await eventually(lambda: len(recorder.events) == 3, "what it missed")
    assert sorted(recorder.events, key=str) == sorted(
        [("DELETED", "1", None), ("MODIFIED", "1", "2"), ("ADDED", None, "1")], key=str
    )


async def test_a_failing_handler_does_not_stop_the_informer() -> None:
    kube = MemoryKube()
    seen: list[str] = []

    def handler(event: str, old: Any, new: Any) -> None:
        seen.append(event)
        raise ValueError("handler bug")

    informer: Informer[ConfigMap] = Informer(kube, ConfigMap, handler)
    async with running(informer):
        await kube.create(config_map("a"))
        await kube.create(config_map("b"))
        await eventually(lambda: len(seen) == 2, "both events")
        assert len(informer.cache) == 2


async def test_write_through_only_moves_cached_entries_forward() -> None:
    kube = MemoryKube()
    informer: Informer[ConfigMap] = Informer(kube, ConfigMap, Recorder())
    first = await kube.create(config_map("a", v="1"))
    await informer._relist()
    first.data = {"v": "2"}
    newer = await kube.replace(first)
    informer.remember(newer)
    assert informer.cache[key_of(newer)].data == {"v": "2"}
    informer.remember(first)  # older than the cached entry
    assert informer.cache[key_of(newer)].data == {"v": "2"}

    del informer.cache[key_of(newer)]  # the watch reported it deleted
    informer.remember(newer)
    assert key_of(newer) not in informer.cache, "a deleted object is never re-inserted"


@pytest.mark.parametrize(("new", "old", "newer"), [("5", "4", True), ("4", "5", False)])
async def test_opaque_resource_versions_are_never_compared(new: str, old: str, newer: bool) -> None:
    kube = MemoryKube()
    informer: Informer[ConfigMap] = Informer(kube, ConfigMap, Recorder())
    cached = config_map("a", v="cached")
    assert cached.metadata
    cached.metadata.resourceVersion = old
    informer.cache[key_of(cached)] = cached
    candidate = config_map("a", v="candidate")
    assert candidate.metadata
    candidate.metadata.resourceVersion = new
    informer.remember(candidate)
    assert (informer.cache[key_of(cached)].data or {})["v"] == ("candidate" if newer else "cached")
    candidate.metadata.resourceVersion = "opaque-x"
    informer.remember(candidate)
    assert (informer.cache[key_of(cached)].data or {})["v"] == ("candidate" if newer else "cached")

"""Pod start, interleaved: the same pod with a claim of each driver and without one.

Each round creates one pod of every kind, in a shuffled order, one at a time (a pod
with a claim gets a fresh claim), and waits until it is Running; creation -> Running
is measured on one clock from a watch. All pods run on the first node, where the
comparison drivers run and whose kubelet is scraped.

After each pod with a claim the kubelet's ``/metrics`` are read: its histogram
``dra_grpc_operations_duration_seconds`` (per driver and method) starts at 0.1 s, too
coarse for a 20 ms call, but its ``_sum`` is exact, and exactly one prepare happened
since the previous scrape, so the growth of ``_sum`` is that call's duration as the
kubelet saw it. Pods are deleted in batches (a node runs at most 110 pods); the
unprepare calls of a batch give a mean per driver.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from lightkube.resources.core_v1 import Pod

from bench.env import BenchEnv, from_yaml, now, wait_until, watching
from bench.stats import Calls, Sample, histogram_calls, summary
from space_dra.contract import DEFAULT_DRIVER_NAME
from tests.support.workloads import claim_manifest, pod_manifest

KUBELET_HISTOGRAM = "dra_grpc_operations_duration_seconds"
PLUGIN_HISTOGRAM = "space_dra_plugin_prepare_claim_duration_seconds"


@dataclass(frozen=True)
class Kind:
    """A kind of pod: ``device_class`` None is the pod without a claim."""

    name: str
    device_class: str | None = None
    driver: str | None = None


PLAIN = Kind("plain")
OURS = Kind("ours", DEFAULT_DRIVER_NAME, DEFAULT_DRIVER_NAME)


def driver_kind(name: str, driver: str) -> Kind:
    """A comparison driver's pods: its DeviceClass is named after the driver."""
    return Kind(name, driver, driver)


def schedule(kinds: Sequence[Kind], rounds: int, seed: int) -> list[list[Kind]]:
    """``rounds`` rounds of every kind once, each round in its own shuffled order."""
    rng = random.Random(seed)
    order = []
    for _ in range(rounds):
        this = list(kinds)
        rng.shuffle(this)
        order.append(this)
    return order


def kubelet_calls(before: list[Sample], after: list[Sample], driver: str, method: str) -> Calls:
    """The kubelet's gRPC calls to ``driver``'s ``method`` (any API version) in between."""

    def of(samples: list[Sample]) -> list[Sample]:
        return [
            s
            for s in samples
            if s.labels.get("driver_name") == driver
            and s.labels.get("method_name", "").endswith(f"/{method}")
        ]

    return histogram_calls(of(before), of(after), KUBELET_HISTOGRAM)


def overheads(starts: dict[str, list[float]], reference: str = PLAIN.name) -> dict[str, Any]:
    """Each kind's start time against the reference kind's, from the same run."""
    base = summary(starts[reference])
    result: dict[str, Any] = {}
    for kind, samples in starts.items():
        if kind == reference or not samples:
            continue
        mine = summary(samples)
        result[kind] = {
            "p50_s": round(mine["p50"] - base["p50"], 4),
            "p99_s": round(mine["p99"] - base["p99"], 4),
            "ratio_p50": round(mine["p50"] / base["p50"], 3),
        }
    return result


def plain_pod(namespace: str, name: str, image: str, node: str | None = None) -> str:
    """The same pod as :func:`pod_manifest` makes, without the claim."""
    doc = yaml.safe_load(pod_manifest(namespace, name, image, claim="x", node=node))
    doc["spec"].pop("resourceClaims")
    doc["spec"]["containers"][0].pop("resources")
    return yaml.safe_dump(doc)


class PodStarts:
    """One interleaved run over ``kinds`` on the first node."""

    def __init__(self, env: BenchEnv, kinds: Sequence[Kind], label: str = "p") -> None:
        self.env = env
        self.kinds = list(kinds)
        self.label = label
        self.running: dict[str, float] = {}
        self.starts: dict[str, list[float]] = {k.name: [] for k in self.kinds}
        self.prepare: dict[str, list[float]] = {k.name: [] for k in self.kinds if k.driver}
        self.plugin_prepare: list[float] = []
        self.irregular: list[dict[str, Any]] = []
        self.unprepare: dict[str, Calls] = {}
        self._kubelet: list[Sample] = []
        self._plugin: list[Sample] = []

    def _seen(self, pod: Pod, at: float) -> None:
        name = (pod.metadata.name if pod.metadata else None) or ""
        if pod.status and pod.status.phase == "Running" and name not in self.running:
            self.running[name] = at

    async def run(
        self, rounds: int, *, batch: int = 10, warmup: int = 1, seed: int = 1
    ) -> dict[str, Any]:
        order = schedule(self.kinds, warmup + rounds, seed)
        async with watching(self.env.api, Pod, self._seen, namespace=self.env.namespace):
            self._scrape()
            for index, round_kinds in enumerate(order):
                for kind in round_kinds:
                    await self._one(kind, index, measured=index >= warmup)
                if (index + 1 - warmup) % batch == 0 or index + 1 == len(order):
                    await self._clear()
        return self.result(rounds, seed)

    def _scrape(self) -> tuple[list[Sample], list[Sample]]:
        before = (self._kubelet, self._plugin)
        self._kubelet = self.env.kubelet_metrics()
        if any(k is OURS for k in self.kinds):
            self._plugin = self.env.metrics("kubelet-plugin", self.env.node)
        return before

    async def _one(self, kind: Kind, index: int, measured: bool) -> None:
        env, ns = self.env, self.env.namespace
        name = f"{self.label}-{kind.name}-{index}"
        image = env.cluster.testbox_image
        if kind.device_class:
            claim = claim_manifest(ns, name, device_class=kind.device_class)
            await env.api.create(from_yaml(claim))
            pod = pod_manifest(ns, name, image, claim=name, node=env.node)
        else:
            pod = plain_pod(ns, name, image, env.node)
        started = now()
        await env.api.create(from_yaml(pod))
        await wait_until(lambda: name in self.running, f"pod {ns}/{name} Running", 120)
        if not measured:
            if kind.driver:
                self._scrape()
            return
        self.starts[kind.name].append(self.running[name] - started)
        if not kind.driver:
            return
        kubelet_before, plugin_before = self._scrape()
        calls = kubelet_calls(kubelet_before, self._kubelet, kind.driver, "NodePrepareResources")
        if calls.single is not None:
            self.prepare[kind.name].append(calls.single)
        else:
            self.irregular.append({"pod": name, "calls": calls.count, "seconds": calls.seconds})
        if kind is OURS:
            own = histogram_calls(plugin_before, self._plugin, PLUGIN_HISTOGRAM)
            if own.single is not None:
                self.plugin_prepare.append(own.single)

    async def _clear(self) -> None:
        """Delete the batch (unprepare calls counted per driver), then let the cluster settle."""
        before = self.env.kubelet_metrics()
        await asyncio.to_thread(self.env.delete_all)
        if any(k is OURS for k in self.kinds):
            await self.env.wait_claim_namespaces_gone()
        await asyncio.sleep(2)
        self._scrape()
        for kind in self.kinds:
            if kind.driver:
                calls = kubelet_calls(before, self._kubelet, kind.driver, "NodeUnprepareResources")
                seen = self.unprepare.get(kind.name, Calls(0, 0.0))
                self.unprepare[kind.name] = Calls(
                    seen.count + calls.count, seen.seconds + calls.seconds
                )

    def result(self, rounds: int, seed: int) -> dict[str, Any]:
        return {
            "rounds": rounds,
            "seed": seed,
            "node": self.env.node,
            "pod_start_s": {kind: summary(s) for kind, s in self.starts.items()},
            "overhead": overheads(self.starts) if PLAIN.name in self.starts else {},
            "kubelet_prepare_s": {kind: summary(s) for kind, s in self.prepare.items()},
            "kubelet_unprepare_mean_s": {
                kind: round(c.seconds / c.count, 4) if c.count else None
                for kind, c in self.unprepare.items()
            },
            "plugin_prepare_s": summary(self.plugin_prepare),
            "irregular_calls": self.irregular,
            "samples": {
                "pod_start_s": self.starts,
                "kubelet_prepare_s": self.prepare,
                "plugin_prepare_s": self.plugin_prepare,
            },
        }

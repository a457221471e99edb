"""Phase ``scale``: a pool of 1000 slots, 1000 live namespaces, and one claim shared by 100 pods.

1. ``pool.size`` goes to 1000 (several ResourceSlices of at most 128 devices): from the
   chart upgrade to every slice of the new pool published, and from the new controller
   being Ready to that.
2. 1000 claims allocated at once (the benchmark writes ``status.allocation``): allocation
   -> ready per claim, then the memory of the controller and of each node's plugin with
   1000 live namespaces, then garbage collection of all of them (claims deleted -> every
   namespace deleted or terminating, and -> every namespace gone).
3. One claim used by 100 pods, created one after another (a pod without a claim after
   every fourth, for the reference): each group of four's overhead against the pod
   without a claim started right after it shows whether joining a claim gets slower as
   the claim gains consumers. Every pod also starts more slowly as the node fills up
   (with or without a claim); the interleaved reference cancels that out.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from lightkube.resources.core_v1 import Pod
from lightkube.resources.resource_v1 import ResourceClaim, ResourceSlice

from bench.env import (
    BenchEnv,
    claim_ready,
    from_yaml,
    is_live,
    is_warm,
    now,
    wait_until,
    watching,
)
from bench.podstart import plain_pod
from bench.stats import interleaved_overheads, slope, summary
from space_dra.contract import DEFAULT_DRIVER_NAME
from tests.support.workloads import claim_manifest, pod_manifest


def published_devices(slices: list[ResourceSlice]) -> int:
    """Devices of the newest complete generation of our pool (0 while it is incomplete)."""
    ours = [s for s in slices if s.spec and s.spec.driver == DEFAULT_DRIVER_NAME]
    if not ours:
        return 0
    newest = max(s.spec.pool.generation for s in ours)
    current = [s for s in ours if s.spec.pool.generation == newest]
    if len(current) != current[0].spec.pool.resourceSliceCount:
        return 0
    return sum(len(s.spec.devices or []) for s in current)


async def publish(env: BenchEnv, slots: int) -> dict[str, Any]:
    started = now()
    old = {p["metadata"]["name"] for p in env.release.pods("controller")}
    await asyncio.to_thread(env.install, {"pool.size": slots}, wait=False)
    controller_ready: float | None = None
    while True:
        slices, _ = await env.api.list(ResourceSlice, fields={"spec.driver": DEFAULT_DRIVER_NAME})
        if published_devices(slices) == slots:
            break
        if controller_ready is None:
            fresh = [
                p for p in env.component_pods("controller") if p["metadata"]["name"] not in old
            ]
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for p in fresh
                for c in p["status"].get("conditions", [])
            ):
                controller_ready = now()
        if now() - started > 300:
            raise TimeoutError(f"pool of {slots} not published")
        await asyncio.sleep(0.1)
    done = now()
    await asyncio.to_thread(env.install, {"pool.size": slots})  # rollout finished
    return {
        "slots": slots,
        "slices": len([s for s in slices if s.spec and s.spec.driver == DEFAULT_DRIVER_NAME]),
        "upgrade_to_published_s": round(done - started, 2),
        "controller_ready_to_published_s": (
            round(done - controller_ready, 2) if controller_ready is not None else None
        ),
    }


async def live_namespaces(env: BenchEnv, count: int) -> dict[str, Any]:
    names = [f"s-{i}" for i in range(count)]
    await asyncio.to_thread(env.create_claims, names)
    ready: dict[str, float] = {}

    def seen(claim: ResourceClaim, at: float) -> None:
        name = (claim.metadata.name if claim.metadata else None) or ""
        if name not in ready and claim_ready(claim):
            ready[name] = at

    idle = {"controller": env.memory("controller"), "plugin": env.memory_per_node("kubelet-plugin")}
    async with watching(env.api, ResourceClaim, seen, namespace=env.namespace):
        allocated = await env.allocate(names)
        await wait_until(lambda: len(ready) >= count, f"{count} claims ready", 900)
    await asyncio.sleep(5)  # caches settle
    result: dict[str, Any] = {
        "namespaces": count,
        "ready_latency_s": summary([ready[n] - allocated[n] for n in names]),
        "throughput_per_s": round(count / (max(ready.values()) - min(allocated.values())), 1),
        "memory_mb_idle": idle,
        "memory_mb_loaded": {
            "controller": env.memory("controller"),
            "plugin": env.memory_per_node("kubelet-plugin"),
        },
    }
    started = now()
    await asyncio.to_thread(env.delete_all, "resourceclaims", False)
    # The warm pool refills once the slots are free: its namespaces are not the claims'.
    await env.wait_namespaces(
        lambda items: not [n for n in items if is_live(n) and not is_warm(n)], "GC issued", 900
    )
    result["gc_deleted_s"] = round(now() - started, 2)
    await env.wait_claim_namespaces_gone(limit=1800)
    result["gc_gone_s"] = round(now() - started, 2)
    return result


async def shared_claim(env: BenchEnv, pods: int, plain_every: int = 4) -> dict[str, Any]:
    ns, image = env.namespace, env.cluster.testbox_image
    running: dict[str, float] = {}
    nodes: dict[str, str] = {}

    def seen(pod: Pod, at: float) -> None:
        name = (pod.metadata.name if pod.metadata else None) or ""
        if pod.spec and pod.spec.nodeName:
            nodes[name] = pod.spec.nodeName
        if pod.status and pod.status.phase == "Running" and name not in running:
            running[name] = at

    async def start(name: str, manifest: str) -> float:
        began = now()
        await env.api.create(from_yaml(manifest))
        await wait_until(lambda: name in running, f"pod {name} Running", 120)
        return running[name] - began

    await env.api.create(from_yaml(claim_manifest(ns, "shared")))
    joined: list[float] = []
    plain: list[float] = []
    async with watching(env.api, Pod, seen, namespace=ns):
        for i in range(pods):
            joined.append(
                await start(f"shared-{i}", pod_manifest(ns, f"shared-{i}", image, claim="shared"))
            )
            if i % plain_every == plain_every - 1:
                plain.append(await start(f"alone-{i}", plain_pod(ns, f"alone-{i}", image)))
    result = {
        **shared_claim_figures(joined, plain, plain_every),
        "pods_per_node": {n: list(nodes.values()).count(n) for n in sorted(set(nodes.values()))},
        "plugin_memory_mb": env.memory_per_node("kubelet-plugin"),
    }
    await asyncio.to_thread(env.delete_all)
    await env.wait_claim_namespaces_gone()
    return result


def shared_claim_figures(joined: list[float], plain: list[float], every: int) -> dict[str, Any]:
    """The figures of the shared-claim run from its pod starts (``joined``, in order) and
    those of the pods without a claim started after every ``every`` of them (``plain``)."""
    groups = interleaved_overheads(joined, plain, every)
    edge = max(1, len(groups) // 5)
    first, last = statistics.median(groups[:edge]), statistics.median(groups[-edge:])
    after = [every * (i + 1) for i in range(len(groups))]  # pods joined when measured
    return {
        "pods": len(joined),
        "pod_start_s": summary(joined),
        "without_claim_s": summary(plain),
        "overhead_p50_s": round(statistics.median(joined) - statistics.median(plain), 4),
        "overhead_by_group_s": [round(g, 4) for g in groups],
        "overhead_first_fifth_s": round(first, 4),
        "overhead_last_fifth_s": round(last, 4),
        "overhead_drift_s": round(last - first, 4),
        "overhead_slope_ms_per_pod": round(1000 * slope(after, groups), 3),
        "start_slope_ms_per_pod": round(1000 * slope(list(range(len(joined))), joined), 3),
        "without_claim_slope_ms_per_pod": round(1000 * slope(after, plain), 3),
        "first_10_p50_s": round(statistics.median(joined[:10]), 4),
        "last_10_p50_s": round(statistics.median(joined[-10:]), 4),
        "samples_s": [round(s, 4) for s in joined],
        "without_claim_samples_s": [round(s, 4) for s in plain],
    }


async def run(env: BenchEnv, slots: int, namespaces: int, pods: int) -> dict[str, Any]:
    return {
        "publish": await publish(env, slots),
        "live_namespaces": await live_namespaces(env, namespaces),
        "shared_claim": await shared_claim(env, pods),
    }

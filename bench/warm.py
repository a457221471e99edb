"""Phase ``warm``: a burst of claims against the warm pool, and the same burst without it.

For ``pool.warm`` = 0 and = the burst size, in the same run, with ``pool.size`` large
enough for the burst plus a full pool: the claims are created, then all allocated at
once (the benchmark writes ``status.allocation`` as the scheduler does), and measured:

- allocation -> NamespaceReady per claim (a watch on the claims);
- the controller's API writes (``space_dra_api_writes_total``) by verb and kind over the
  burst. The refill runs at the same time; its writes are told apart by verb and kind:
  those the controller made while filling the pool before the burst are the refill's,
  the rest are the claims' (and ``space_dra_controller_warm_handovers_total`` says how
  many claims took the warm path);
- how fast the pool fills, first from empty and then again after the burst: namespaces
  becoming ready (warm label set, no longer filling) per second, over the middle 80 %.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lightkube.resources.core_v1 import Namespace
from lightkube.resources.resource_v1 import ResourceClaim

from bench.env import LABELS, BenchEnv, claim_ready, now, wait_until, watching
from bench.stats import Sample, by_labels, delta, ramp_rate, summary
from space_dra.controller.warm import FILLING

WRITES = "space_dra_api_writes_total"
HANDOVERS = "space_dra_controller_warm_handovers_total"
NOT_CLAIM_WORK = ("Lease", "ResourceSlice")  # leader election and the pool's publication


class WarmNamespaces:
    """Which namespaces are warm and ready now, and when each first was."""

    def __init__(self) -> None:
        self.ready_at: dict[str, float] = {}
        self.current: set[str] = set()

    def seen(self, namespace: Namespace, at: float) -> None:
        meta = namespace.metadata
        if meta is None or not meta.name:
            return
        value = (meta.labels or {}).get(LABELS.warm)
        if meta.deletionTimestamp or value is None or value.startswith(FILLING):
            self.current.discard(meta.name)
        else:
            self.current.add(meta.name)
            self.ready_at.setdefault(meta.name, at)

    def rate_since(self, since: float) -> float:
        return round(ramp_rate([t for t in self.ready_at.values() if t >= since]), 1)


def writes(samples: list[Sample]) -> dict[str, float]:
    return {
        key: value
        for key, value in by_labels(samples, WRITES, ("verb", "kind")).items()
        if key.split(" ")[-1] not in NOT_CLAIM_WORK
    }


def per_claim(counts: dict[str, float], claims: int) -> dict[str, float]:
    return {key: round(value / claims, 2) for key, value in sorted(counts.items())}


async def burst(env: BenchEnv, size: int, label: str, refill_keys: set[str]) -> dict[str, Any]:
    names = [f"{label}-{i}" for i in range(size)]
    await asyncio.to_thread(env.create_claims, names)
    ready: dict[str, float] = {}

    def seen(claim: ResourceClaim, at: float) -> None:
        name = (claim.metadata.name if claim.metadata else None) or ""
        if name not in ready and claim_ready(claim):
            ready[name] = at

    metrics_before = env.metrics("controller")
    async with watching(env.api, ResourceClaim, seen, namespace=env.namespace):
        allocated = await env.allocate(names)
        await wait_until(lambda: len(ready) >= size, f"{size} claims ready", 60 + size)
    metrics_after = env.metrics("controller")
    grown = delta(writes(metrics_before), writes(metrics_after))
    claims_writes = {k: v for k, v in grown.items() if k not in refill_keys}
    refill_writes = {k: v for k, v in grown.items() if k in refill_keys}
    return {
        "claims": size,
        "ready_latency_s": summary([ready[n] - allocated[n] for n in names]),
        "span_s": round(max(ready.values()) - min(allocated.values()), 3),
        "claim_writes_per_claim": round(sum(claims_writes.values()) / size, 2),
        "claim_writes_per_claim_by_verb_kind": per_claim(claims_writes, size),
        "refill_writes_during_burst": dict(sorted(refill_writes.items())),
        "handovers": delta(
            by_labels(metrics_before, HANDOVERS, ("path",)),
            by_labels(metrics_after, HANDOVERS, ("path",)),
        ),
        "samples_s": [round(ready[n] - allocated[n], 4) for n in names],
    }


async def mode(env: BenchEnv, size: int, pool: int, warm: int) -> dict[str, Any]:
    pool_state = WarmNamespaces()
    result: dict[str, Any] = {"pool_size": pool, "warm": warm}
    async with watching(env.api, Namespace, pool_state.seen, labels=LABELS.managed):
        installed = now()
        await asyncio.to_thread(env.install, {"pool.size": pool, "pool.warm": warm})
        refill_keys: set[str] = set()
        if warm:
            await wait_until(lambda: len(pool_state.current) >= warm, "warm pool full", 600)
            result["fill_rate_per_s"] = pool_state.rate_since(installed)
            result["fill_s"] = round(now() - installed, 2)
            # What the controller wrote since it started, besides claims: the fill's kinds.
            refill_keys = set(writes(env.metrics("controller")))
        started = now()
        result["burst"] = await burst(env, size, f"w{warm}", refill_keys)
        if warm:
            await wait_until(lambda: len(pool_state.current) >= warm, "warm pool refilled", 600)
            result["refill_s"] = round(now() - started, 2)
            result["refill_rate_per_s"] = pool_state.rate_since(started)
    result["memory_mb"] = env.memory("controller")
    gc_started = now()
    await asyncio.to_thread(env.delete_all, "resourceclaims", False)
    await env.wait_claim_namespaces_gone()
    result["gc_s"] = round(now() - gc_started, 2)
    return result


async def run(env: BenchEnv, size: int, pool: int) -> dict[str, Any]:
    return {
        "cold": await mode(env, size, pool, 0),
        "warm": await mode(env, size, pool, size),
    }

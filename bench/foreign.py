"""Phase ``foreign``: the controller's memory against other drivers' claims (issue 10, point 3).

A tenant can create ResourceClaims for another driver carrying up to 32 opaque configs
of up to 10 KiB each, no pod needed; the controller watches every claim in the
cluster. At each level (0, 100, 500 such claims of about 290 KB, with the chart's
defaults) the phase records the controller's memory while the claims arrive through
its watch, then after a restart (the initial list of all of them), its restarts and
whether it was OOM-killed, and how fast it provisions claims of ours meanwhile
(allocation -> ready, the same probe at every level). Each level starts from none.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lightkube import codecs
from lightkube.resources.resource_v1 import ResourceClaim

from bench.env import BenchEnv, claim_ready, from_yaml, now, wait_until, watching
from bench.stats import summary
from tests.support.workloads import claim_manifest

FOREIGN_DRIVER = "foreign.bench.example.com"
# Their own namespace: the benchmark's watch on its probe claims does not read them.
FOREIGN_NS = "space-dra-bench-foreign"
CONFIGS = 32  # the most a claim may carry
CONFIG_BYTES = 9000  # each config's payload; the API allows 10 KiB per opaque config


def foreign_claim(
    namespace: str, name: str, configs: int = CONFIGS, size: int = CONFIG_BYTES
) -> dict[str, Any]:
    """A claim for another driver, ``configs`` opaque configs of about ``size`` bytes."""
    pattern = "0123456789abcdef"
    payload = (pattern * (size // len(pattern) + 1))[:size]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "devices": {
                "requests": [{"name": "r", "exactly": {"deviceClassName": FOREIGN_DRIVER}}],
                "config": [
                    {
                        "requests": ["r"],
                        "opaque": {
                            "driver": FOREIGN_DRIVER,
                            "parameters": {
                                "apiVersion": f"{FOREIGN_DRIVER}/v1",
                                "kind": "Blob",
                                "index": index,
                                "data": payload,
                            },
                        },
                    }
                    for index in range(configs)
                ],
            }
        },
    }


def claim_bytes(claim: dict[str, Any]) -> int:
    return len(json.dumps(claim, separators=(",", ":")))


async def create_foreign(env: BenchEnv, start: int, stop: int) -> None:
    gate = asyncio.Semaphore(8)

    async def one(index: int) -> None:
        async with gate:
            await env.api.create(codecs.from_dict(foreign_claim(FOREIGN_NS, f"foreign-{index}")))

    await asyncio.gather(*(one(i) for i in range(start, stop)))


async def restart_controller(env: BenchEnv) -> float:
    """Delete the controller's pod; seconds until its replacement is Ready."""
    old = env.component_pod("controller")["metadata"]["name"]
    started = now()
    env.cluster.kubectl("delete", "pod", old, "-n", env.release.namespace, "--wait=false")

    def replaced() -> bool:
        return any(
            p["metadata"]["name"] != old
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
            for p in env.component_pods("controller")
        )

    while not replaced():
        if now() - started > 300:
            raise TimeoutError("controller not Ready again after its restart")
        await asyncio.sleep(0.2)
    return now() - started


async def probe(env: BenchEnv, label: str, count: int) -> list[float]:
    """Allocation -> ready of ``count`` claims of ours, one at a time."""
    latencies = []
    ready: dict[str, float] = {}

    def seen(claim: ResourceClaim, at: float) -> None:
        name = (claim.metadata.name if claim.metadata else None) or ""
        if name not in ready and claim_ready(claim):
            ready[name] = at

    async with watching(env.api, ResourceClaim, seen, namespace=env.namespace):
        for index in range(count):
            name = f"probe-{label}-{index}"
            await env.api.create(from_yaml(claim_manifest(env.namespace, name)))
            allocated = (await env.allocate([name], first_slot=index))[name]
            await wait_until(lambda n=name: n in ready, f"claim {name} ready", 60)  # type: ignore[misc]
            latencies.append(ready[name] - allocated)
            await asyncio.sleep(1)  # the warm pool refills, as between real claims
    return latencies


def oom_killed(env: BenchEnv) -> bool:
    return any(
        s.get("lastState", {}).get("terminated", {}).get("reason") == "OOMKilled"
        for p in env.release.pods("controller")
        for s in p.get("status", {}).get("containerStatuses", [])
    )


async def run(env: BenchEnv, levels: list[int], probes: int) -> dict[str, Any]:
    env.install()
    pod = env.component_pod("controller")
    limit = pod["spec"]["containers"][0].get("resources", {}).get("limits", {}).get("memory")
    result: dict[str, Any] = {
        "claim_bytes": claim_bytes(foreign_claim(FOREIGN_NS, "foreign-0")),
        "controller_memory_limit": limit,
        "levels": [],
    }
    env.cluster.kubectl("create", "namespace", FOREIGN_NS, check=False)
    try:
        for level in levels:
            restarts_before = env.restarts("controller")
            began = now()
            await create_foreign(env, 0, level)
            created_s = now() - began
            await asyncio.sleep(10)
            watched = env.memory("controller")
            restart_s = await restart_controller(env)
            await asyncio.sleep(5)
            listed = env.memory("controller")
            latencies = await probe(env, str(level), probes)
            result["levels"].append(
                {
                    "foreign_claims": level,
                    "foreign_mb": round(level * result["claim_bytes"] / 1e6, 1),
                    "create_s": round(created_s, 1),
                    "memory_mb_while_watching": watched,
                    "memory_mb_after_restart": listed,
                    "restart_to_ready_s": round(restart_s, 2),
                    "restarts": env.restarts("controller") - restarts_before,
                    "oom_killed": oom_killed(env),
                    "provision_s": summary(latencies),
                }
            )
            # Each level starts from none: its figures are its own.
            await asyncio.to_thread(delete_foreign, env)
            await asyncio.to_thread(env.delete_all, "resourceclaims", True)
            await env.wait_claim_namespaces_gone()
    finally:
        await asyncio.to_thread(delete_foreign, env)
        await asyncio.to_thread(env.delete_all, "resourceclaims", True)
    return result


def delete_foreign(env: BenchEnv) -> None:
    env.cluster.kubectl("delete", "resourceclaims", "--all", "-n", FOREIGN_NS, timeout=900)

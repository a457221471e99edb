"""Phase ``bindingconditions``: what ``pool.bindingConditions=auto`` costs and what it buys.

For each mode (``off``, the chart's default, and ``auto``) in the same run: pod-start
overhead against pods without a claim (interleaved), and how fast a claim whose
namespace cannot be made (a config the policy refuses) shows its reason on the pod:
pod creation -> the first Warning Event on the pod from our controller, and the first
Warning from anyone (kubelet, scheduler). Also checked: no namespace was made for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lightkube.resources.core_v1 import Event, Pod

from bench.env import LABELS, BenchEnv, from_yaml, now
from bench.podstart import OURS, PLAIN, PodStarts
from bench.stats import summary
from space_dra.contract import CONTROLLER_NAME
from tests.support.claims import namespace_config
from tests.support.workloads import claim_manifest, pod_manifest

MODES = ("off", "auto")
REFUSED = namespace_config(role="cluster-admin")  # not in the chart's policy.allowedRoles


def source_of(event: Event) -> str:
    return (event.source.component if event.source else None) or event.reportingComponent or ""


async def failure(env: BenchEnv, name: str, limit: float = 60) -> dict[str, Any]:
    """Seconds from pod creation to the refusal's Event on the pod, and what else was seen."""
    ns = env.namespace
    claim = await env.api.create(from_yaml(claim_manifest(ns, name, config=REFUSED)))
    started = now()
    await env.api.create(
        from_yaml(pod_manifest(ns, name, env.cluster.testbox_image, claim=name, node=env.node))
    )
    seen: dict[str, Any] = {}
    while "ours_s" not in seen and now() - started < limit:
        events, _ = await env.api.list(
            Event, fields={"metadata.namespace": ns, "involvedObject.name": name}
        )
        for event in events:
            if event.type != "Warning" or event.involvedObject.kind != "Pod":
                continue
            at = round(now() - started, 3)
            seen.setdefault("any_s", at)
            seen.setdefault("any", f"{source_of(event)}: {event.reason}")
            if source_of(event) == CONTROLLER_NAME:
                seen["ours_s"], seen["ours"] = at, event.reason
        await asyncio.sleep(0.1)
    pod = await env.api.get(Pod, name, ns)
    seen["pod_phase"] = pod.status.phase if pod.status else None
    uid = claim.metadata.uid if claim.metadata else ""
    made = [
        n
        for n in await env.managed_namespaces()
        if ((n.metadata.labels if n.metadata else None) or {}).get(LABELS.claim_uid) == uid
    ]
    seen["namespaces_made"] = len(made)
    return seen


async def run(env: BenchEnv, rounds: int, failures: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    try:
        for mode in MODES:
            env.install({"pool.bindingConditions": mode})
            starts = await PodStarts(env, [PLAIN, OURS], label=f"b{mode}").run(rounds)
            refused = []
            for index in range(failures):
                refused.append(await failure(env, f"refused-{mode}-{index}"))
                await asyncio.to_thread(env.delete_all)
            shown = [r["ours_s"] for r in refused if "ours_s" in r]
            result[mode] = {
                "pod_start_s": starts["pod_start_s"],
                "overhead": starts["overhead"],
                "failure_event_on_pod_s": summary(shown),
                "failures": refused,
                "samples": starts["samples"]["pod_start_s"],
            }
    finally:
        env.install()
    return result

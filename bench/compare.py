"""Phase ``compare``: our driver (chart defaults) against the Go baseline, the Python twin,
the upstream example driver (when given) and pods without a claim, in one interleaved run.

The ratios that the goals speak of come from this one run: our kubelet-observed prepare
p50 against the baseline's, and our pod-start overhead against the baseline's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.env import BenchEnv
from bench.hostdrivers import HostDrivers
from bench.podstart import OURS, PLAIN, PodStarts, driver_kind


def ratios(run: dict[str, Any], reference: str = "gobaseline") -> dict[str, Any]:
    """Each driver's kubelet-observed prepare p50 over the reference's, and its pod-start
    overhead p50 minus the reference's (seconds)."""
    prepare = run["kubelet_prepare_s"]
    overhead = run["overhead"]
    if reference not in prepare or not prepare[reference].get("n"):
        return {}
    result: dict[str, Any] = {}
    for kind, stats in prepare.items():
        if kind == reference or not stats.get("n"):
            continue
        result[kind] = {
            "prepare_p50_ratio": round(stats["p50"] / prepare[reference]["p50"], 2),
            "overhead_p50_minus_s": round(
                overhead[kind]["p50_s"] - overhead[reference]["p50_s"], 4
            ),
        }
    return {"reference": reference, "by_driver": result}


async def run(env: BenchEnv, rounds: int, example_binary: Path | None) -> dict[str, Any]:
    env.install()  # the chart's defaults
    drivers = HostDrivers(env.cluster, example_binary)
    drivers.start()
    try:
        kinds = [PLAIN, OURS, *(driver_kind(d.kind, d.driver) for d in drivers.drivers)]
        result = await PodStarts(env, kinds, label="c").run(rounds)
        result["memory_mb"] = {
            "ours_plugin": env.memory("kubelet-plugin", env.node),
            **{d.kind: d.memory() for d in drivers.drivers},
        }
    finally:
        drivers.stop()
    result["drivers"] = {d.kind: d.driver for d in drivers.drivers}
    result["ratios"] = ratios(result)
    return result

"""Benchmarks on the local cluster with the driver installed by its Helm chart.

    make bench                    # = plugin round trip, then .venv/bin/python -m bench.cluster
    .venv/bin/python -m bench.cluster --quick
    .venv/bin/python -m bench.cluster --only warm,foreign     # keeps the other phases' results

Phases (each compares like with like inside one run; the machine is noisy):

- ``compare``: pod start and kubelet-observed prepare for our driver with the chart's
  defaults, the Go baseline (``bench/gobaseline``), the Python twin
  (``bench/twin_driver.py``), the upstream example driver when ``--example-driver`` gives
  its binary, and pods without a claim, interleaved (``bench/podstart.py``);
- ``bindingconditions``: ``pool.bindingConditions`` off against auto: pod-start overhead
  and how fast a refused claim shows on its pod (``bench/tradeoff.py``);
- ``warm``: a burst of claims with and without a warm pool of the burst's size
  (``bench/warm.py``);
- ``scale``: a pool of 1000 slots, 1000 live namespaces and their collection, one claim
  shared by 100 pods (``bench/scale.py``);
- ``foreign``: controller memory against claims of another driver (``bench/foreign.py``).

Results: bench/results/cluster.json and its plots; ``python -m bench.report`` prints the
tables and the goals of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import compare, foreign, scale, tradeoff, warm
from bench.env import BENCH_NS, RESULTS, BenchEnv
from bench.plots import draw
from localcluster import ensure_cluster
from localcluster.driverimage import build_driver_image, import_driver_image
from space_dra.kube import LightkubeAPI
from space_dra.kube_config import load_config
from tests.support.chart import ChartRelease

Phase = Callable[[BenchEnv, argparse.Namespace], Awaitable[dict[str, Any]]]
PHASES: dict[str, Phase] = {
    "compare": lambda env, a: compare.run(env, a.rounds, a.example_driver),
    "bindingconditions": lambda env, a: tradeoff.run(env, a.bc_rounds, a.failures),
    "warm": lambda env, a: warm.run(env, a.burst, a.warm_pool_size),
    "scale": lambda env, a: scale.run(env, a.slots, a.namespaces, a.shared_pods),
    "foreign": lambda env, a: foreign.run(env, a.foreign_levels, a.probes),
}
QUICK = {
    "rounds": 3,
    "bc_rounds": 2,
    "failures": 1,
    "burst": 20,
    "warm_pool_size": 40,
    "slots": 200,
    "namespaces": 50,
    "shared_pods": 8,
    "foreign_levels": [0, 10],
    "probes": 2,
}


def save(result: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cluster = ensure_cluster()
    image = build_driver_image()
    import_driver_image(image)
    release = ChartRelease(cluster, image=image.reference, image_digest=image.digest)
    cluster.kubectl("delete", "namespace", BENCH_NS, "--ignore-not-found", timeout=600)
    cluster.kubectl("create", "namespace", BENCH_NS)
    previous = RESULTS / "cluster.json"
    result: dict[str, Any] = (
        json.loads(previous.read_text()) if args.only and previous.exists() else {}
    )
    result.update(
        {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "kubernetes": cluster.kubernetes_version,
            "nodes": cluster.node_names,
            "image": image.reference,
            "arguments": {k: str(v) for k, v in sorted(vars(args).items())},
        }
    )
    api = LightkubeAPI(load_config(str(cluster.kubeconfig)), "space-dra-bench")
    env = BenchEnv(cluster, release, api)
    try:
        for name in args.only or list(PHASES):
            print(f"== phase {name}", flush=True)
            result[name] = await PHASES[name](env, args)
            save(result)
    finally:
        await asyncio.to_thread(env.install)  # leave the chart's defaults behind
        await api.close()
        save(result)
    result["plots"] = draw(result, RESULTS)
    save(result)
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    numbers = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    add = parser.add_argument
    add("--rounds", type=int, default=20, help="compare: pods of each kind")
    add("--example-driver", type=Path, help="compare: the example driver's kubelet plugin binary")
    add("--bc-rounds", type=int, default=10, help="bindingconditions: pods of each kind per mode")
    add("--failures", type=int, default=3, help="bindingconditions: refused claims per mode")
    add("--burst", type=int, default=200, help="warm: claims allocated at once")
    add("--warm-pool-size", type=int, default=400, help="warm: pool.size (>= 2x the burst)")
    add("--slots", type=int, default=1000, help="scale: pool.size")
    add("--namespaces", type=int, default=1000, help="scale: live namespaces")
    add("--shared-pods", type=int, default=100, help="scale: pods sharing one claim")
    add("--foreign-levels", type=numbers, default=[0, 100, 500], help="foreign: claim counts")
    add("--probes", type=int, default=5, help="foreign: claims of ours provisioned per level")
    add("--quick", action="store_true", help="small sizes, for a smoke run")
    add(
        "--only",
        type=lambda s: s.split(","),
        default=[],
        help=f"run only these phases ({','.join(PHASES)}); keep the others' last results",
    )
    args = parser.parse_args(argv)
    unknown = [p for p in args.only if p not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    if args.warm_pool_size < 2 * args.burst:
        parser.error("--warm-pool-size must be at least twice --burst (the burst plus a full pool)")
    if args.example_driver is not None and not args.example_driver.is_file():
        parser.error(f"--example-driver {args.example_driver}: no such file")
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def main() -> None:
    result = asyncio.run(run(parse()))
    print(json.dumps({k: v for k, v in result.items() if k in ("when", "plots")}, indent=2))
    print("tables: .venv/bin/python -m bench.report")


if __name__ == "__main__":
    main()

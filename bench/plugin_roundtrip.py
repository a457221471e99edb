"""Benchmark: NodePrepareResources + NodeUnprepareResources over the real unix socket.

The plugin runs in its own process with the in-memory Kubernetes adapter, so this
measures the plugin itself (gRPC, files, CDI spec, checkpoint), not an API server.
Reports p50/p99 of a prepare+unprepare round trip for one claim and for one request
carrying 100 claims, the same client's cost for two bare gRPC calls to the same server
(the transport floor), and the plugin's idle RSS; writes bench/results/plugin.json
(``--driver twin``: the twin driver on the same layer, bench/results/plugin-twin.json).

    .venv/bin/python -m bench.plugin_roundtrip [--rounds 300] [--driver twin]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from bench.plugin_server import DRIVERS, uid
from space_dra.proto.dra.v1 import api_pb2 as v1

RESULTS = Path(__file__).resolve().parent / "results"
PREPARE = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources"
UNPREPARE = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodeUnprepareResources"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples) * 1000, 3),
    }


async def roundtrips(socket: Path, batch: int, rounds: int) -> list[float]:
    channel = grpc.aio.insecure_channel(f"unix://{socket}")
    prepare = channel.unary_unary(
        PREPARE,
        request_serializer=v1.NodePrepareResourcesRequest.SerializeToString,
        response_deserializer=v1.NodePrepareResourcesResponse.FromString,
    )
    unprepare = channel.unary_unary(
        UNPREPARE,
        request_serializer=v1.NodeUnprepareResourcesRequest.SerializeToString,
        response_deserializer=v1.NodeUnprepareResourcesResponse.FromString,
    )
    claims = [v1.Claim(namespace="default", name=f"claim-{i}", uid=uid(i)) for i in range(batch)]
    samples = []
    for _ in range(rounds + 5):
        started = time.perf_counter()
        prepared = await prepare(v1.NodePrepareResourcesRequest(claims=claims), timeout=30)
        await unprepare(v1.NodeUnprepareResourcesRequest(claims=claims), timeout=30)
        samples.append(time.perf_counter() - started)
        errors = [entry.error for entry in prepared.claims.values() if entry.error]
        if errors or len(prepared.claims) != batch:
            raise RuntimeError(f"prepare failed: {errors[:3]}")
    await channel.close(None)
    return samples[5:]  # the first rounds warm up caches and connections


async def transport_floor(socket: Path, rounds: int) -> list[float]:
    """Two gRPC health checks per sample: what a round trip costs with no plugin work at all."""
    channel = grpc.aio.insecure_channel(f"unix://{socket}")
    check = channel.unary_unary(
        HEALTH_CHECK,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    samples = []
    for _ in range(rounds + 5):
        started = time.perf_counter()
        await check(health_pb2.HealthCheckRequest(), timeout=30)
        await check(health_pb2.HealthCheckRequest(), timeout=30)
        samples.append(time.perf_counter() - started)
    await channel.close(None)
    return samples[5:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--driver", choices=sorted(DRIVERS), default="space")
    args = parser.parse_args()
    driver_name = DRIVERS[args.driver]
    # As in production: CDI specs, artifacts and sockets on tmpfs, the checkpoint on disk.
    root = Path(tempfile.mkdtemp(prefix="sdra-bench-", dir="/dev/shm"))
    state = Path(tempfile.mkdtemp(prefix="sdra-bench-", dir="/var/tmp"))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.plugin_server",
            "--root",
            str(root),
            "--state",
            str(state),
            "--claims",
            "100",
            "--driver",
            args.driver,
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONPATH": f"src:{os.environ.get('PYTHONPATH', '')}"},
    )
    socket = root / "plugins" / driver_name / "dra.sock"
    try:
        deadline = time.monotonic() + 30
        while not (root / "registry" / f"{driver_name}-reg.sock").exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("plugin did not start")
            time.sleep(0.05)
        time.sleep(0.5)
        idle = rss_mb(server.pid)
        floor = asyncio.run(transport_floor(socket, args.rounds))
        single = asyncio.run(roundtrips(socket, 1, args.rounds))
        batch = asyncio.run(roundtrips(socket, 100, max(20, args.rounds // 10)))
        after = rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": "plugin prepare+unprepare round trip over the unix socket (in-memory adapter)",
        "driver": driver_name,
        "one_claim": summary(single),
        # The same client and server answering two health checks: the part of one_claim
        # that is Python gRPC, not the plugin.
        "transport_floor_two_calls": summary(floor),
        "one_request_100_claims": summary(batch),
        "plugin_rss_mb": {"idle": round(idle, 1), "after_runs": round(after, 1)},
        "goals": {
            "one_claim_p50_ms": 2,
            "one_claim_p99_ms": 10,
            "hundred_claims_ms": 100,
            "idle_rss_mb": 60,
        },
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(exist_ok=True)
    name = "plugin.json" if args.driver == "space" else f"plugin-{args.driver}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

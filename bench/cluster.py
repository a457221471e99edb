"""Benchmarks on the local cluster with the driver installed by its Helm chart.

    make bench                    # = .venv/bin/python -m bench.cluster
    .venv/bin/python -m bench.cluster --quick

Measures, in one run so that ratios compare like with like on a noisy machine:

1. pod-start overhead: creation -> Running for pods with a namespace claim versus
   identical pods without one, interleaved, with and without binding conditions;
2. prepare latency as the plugin and the kubelet see it (their histograms);
3. controller scaling: N claims allocated at once -> NamespaceReady latency,
   throughput, API writes per claim, then garbage-collection throughput;
4. footprint: controller and plugin RSS idle and with 1000 managed namespaces,
   CPU seconds per claim.

For (3) and (4) the claims are allocated by this script the way the scheduler
does it (status.allocation with a slot device), because the scheduler only
allocates for pods and a single node runs at most 110 of them; everything after
the allocation (provisioning, status, GC) is the real controller. Results go to
bench/results/cluster.json and bench/results/*.png; docs/performance.md explains them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.resource_v1 import (
    AllocationResult,
    DeviceAllocationResult,
    DeviceRequestAllocationResult,
)
from lightkube.models.resource_v1 import ResourceClaimStatus as ClaimStatusModel
from lightkube.resources.core_v1 import Namespace, Pod
from lightkube.resources.resource_v1 import ResourceClaim, ResourceClaimStatus

from localcluster import ClusterHandle, ensure_cluster
from localcluster.driverimage import build_driver_image, import_driver_image
from space_dra.contract import CONDITION_READY, DEFAULT_DRIVER_NAME, POOL_NAME, ManagementLabels
from space_dra.kube import LightkubeAPI, load_config
from tests.support.chart import ChartRelease
from tests.support.hostdriver import metric
from tests.support.workloads import claim_manifest, pod_manifest

RESULTS = Path(__file__).resolve().parent / "results"
LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)
BENCH_NS = "space-dra-bench"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 4),
        "p99": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 4),
        "mean": round(statistics.fmean(ordered), 4),
        "max": round(ordered[-1], 4),
    }


def histogram_quantiles(text: str, name: str, labels: str = "") -> dict[str, float]:
    """p50/p99 (upper bucket bounds) and count of a Prometheus histogram's samples."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{") and labels in line:
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append(
                (float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1]))
            )
    merged: dict[float, float] = {}
    for upper, seen in buckets:
        merged[upper] = merged.get(upper, 0.0) + seen
    ordered = sorted(merged.items())
    total = ordered[-1][1] if ordered else 0.0

    def quantile(q: float) -> float:
        for bound, count in ordered:
            if count >= q * total:
                return bound
        return float("nan")

    return (
        {"count": total, "p50_le": quantile(0.5), "p99_le": quantile(0.99)}
        if total
        else {"count": 0}
    )


class Bench:
    def __init__(self, cluster: ClusterHandle, release: ChartRelease, api: LightkubeAPI) -> None:
        self.cluster = cluster
        self.release = release
        self.api = api

    # -- process facts ----------------------------------------------------------------

    def _pid(self, component: str) -> int:
        out = subprocess.run(
            ["pgrep", "-f", f"space-dra {component}"], capture_output=True, text=True, check=False
        )
        pids = [int(p) for p in out.stdout.split()]
        if not pids:
            raise RuntimeError(f"no running space-dra {component}")
        return max(pids)

    def rss_mb(self, component: str) -> float:
        for line in Path(f"/proc/{self._pid(component)}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def cpu_seconds(self, component: str) -> float:
        fields = Path(f"/proc/{self._pid(component)}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self, component: str) -> str:
        pod = self.release.pods(component)[0]["metadata"]["name"]
        port = 8080 if component == "controller" else 8081
        return self.cluster.kubectl(
            "get",
            "--raw",
            f"/api/v1/namespaces/{self.release.namespace}/pods/{pod}:{port}/proxy/metrics",
        )

    def kubelet_metrics(self) -> str:
        return self.cluster.kubectl(
            "get", "--raw", f"/api/v1/nodes/{self.cluster.node_name}/proxy/metrics"
        )

    # -- pod-start overhead -------------------------------------------------------------

    async def pod_start(self, samples: int) -> dict[str, Any]:
        """Creation -> Running, pods with a claim interleaved with pods without one."""
        running: dict[str, float] = {}
        created: dict[str, float] = {}
        _, version = await self.api.list(Pod, fields={"metadata.namespace": BENCH_NS})

        async def watch() -> None:
            async for _, pod in self.api.watch(
                Pod, version, fields={"metadata.namespace": BENCH_NS}
            ):
                name = (pod.metadata.name if pod.metadata else None) or ""
                if name and pod.status and pod.status.phase == "Running" and name not in running:
                    running[name] = time.monotonic()

        watcher = asyncio.create_task(watch())
        image = self.cluster.testbox_image
        try:
            for i in range(samples):
                for kind in ("plain", "claim"):
                    name = f"{kind}-{i}"
                    if kind == "claim":
                        self.cluster.apply(claim_manifest(BENCH_NS, name))
                        manifest = pod_manifest(BENCH_NS, name, image, claim=name)
                    else:
                        doc = yaml.safe_load(pod_manifest(BENCH_NS, name, image, claim="x"))
                        doc["spec"].pop("resourceClaims")
                        doc["spec"]["containers"][0].pop("resources")
                        manifest = yaml.safe_dump(doc)
                    created[name] = time.monotonic()
                    self.cluster.apply(manifest)
                    deadline = time.monotonic() + 120
                    while name not in running:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"pod {name} not Running")
                        await asyncio.sleep(0.02)
        finally:
            watcher.cancel()
        plain = [running[f"plain-{i}"] - created[f"plain-{i}"] for i in range(samples)]
        claim = [running[f"claim-{i}"] - created[f"claim-{i}"] for i in range(samples)]
        self.cluster.kubectl(
            "delete", "pods,resourceclaims", "--all", "-n", BENCH_NS, "--wait=true", timeout=600
        )
        p_plain, p_claim = summary(plain), summary(claim)
        return {
            "without_claim_s": p_plain,
            "with_claim_s": p_claim,
            "overhead_p50_s": round(p_claim["p50"] - p_plain["p50"], 3),
            "overhead_p99_s": round(p_claim["p99"] - p_plain["p99"], 3),
            "ratio_p50": round(p_claim["p50"] / p_plain["p50"], 2),
            "samples": {"without_claim": plain, "with_claim": claim},
        }

    # -- controller scaling -----------------------------------------------------------

    async def allocate(self, names: list[str], first_slot: int) -> dict[str, float]:
        """Write status.allocation as the scheduler would; return when each was written."""
        written: dict[str, float] = {}
        semaphore = asyncio.Semaphore(16)

        async def one(index: int, name: str) -> None:
            status = ResourceClaimStatus(
                metadata=ObjectMeta(name=name, namespace=BENCH_NS),
                status=ClaimStatusModel(
                    allocation=AllocationResult(
                        allocationTimestamp=datetime.now(UTC),
                        devices=DeviceAllocationResult(
                            results=[
                                DeviceRequestAllocationResult(
                                    request="space",
                                    driver=DEFAULT_DRIVER_NAME,
                                    pool=POOL_NAME,
                                    device=f"slot-{first_slot + index}",
                                )
                            ]
                        ),
                    )
                ),
            )
            async with semaphore:
                await self.api.apply(status, name=name, namespace=BENCH_NS)
            written[name] = time.monotonic()

        await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
        return written

    async def scale(self, count: int) -> dict[str, Any]:
        names = [f"s{count}-{i}" for i in range(count)]
        manifests = "---\n".join(claim_manifest(BENCH_NS, n) for n in names)
        self.cluster.kubectl("apply", "-f", "-", input=manifests, timeout=600)
        ready: dict[str, float] = {}
        _, version = await self.api.list(ResourceClaim, fields={"metadata.namespace": BENCH_NS})

        async def watch_ready() -> None:
            async for _, claim in self.api.watch(
                ResourceClaim, version, fields={"metadata.namespace": BENCH_NS}
            ):
                name = (claim.metadata.name if claim.metadata else None) or ""
                for device in (claim.status.devices if claim.status else None) or []:
                    for condition in device.conditions or []:
                        if (
                            condition.type == CONDITION_READY
                            and condition.status == "True"
                            and name not in ready
                        ):
                            ready[name] = time.monotonic()

        writes_before = metric(self.metrics("controller"), "space_dra_api_writes_total")
        lease_before = metric(
            self.metrics("controller"), "space_dra_api_writes_total", 'kind="Lease"'
        )
        cpu_before = self.cpu_seconds("controller")
        watcher = asyncio.create_task(watch_ready())
        await asyncio.sleep(0.5)
        allocated = await self.allocate(names, 0)
        deadline = time.monotonic() + 60 + count
        while len(ready) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ready)}/{count} claims ready")
            await asyncio.sleep(0.05)
        watcher.cancel()
        latencies = [ready[n] - allocated[n] for n in names]
        span = max(ready.values()) - min(allocated.values())
        metrics = self.metrics("controller")
        writes = metric(metrics, "space_dra_api_writes_total") - writes_before
        writes -= metric(metrics, "space_dra_api_writes_total", 'kind="Lease"') - lease_before
        cpu = self.cpu_seconds("controller") - cpu_before
        rss_loaded = self.rss_mb("controller")

        gc_started = time.monotonic()
        self.cluster.kubectl("delete", "resourceclaims", "--all", "-n", BENCH_NS, "--wait=false")
        while True:
            items, _ = await self.api.list(Namespace, labels=LABELS.managed)
            live = [n for n in items if n.metadata and not n.metadata.deletionTimestamp]
            if not live:
                break
            if time.monotonic() - gc_started > 120 + count:
                raise TimeoutError(f"{len(live)} namespaces not deleted ({LABELS.selector})")
            await asyncio.sleep(0.2)
        gc_span = time.monotonic() - gc_started
        await self._wait_namespaces_gone(count)
        return {
            "claims": count,
            "ready_latency_s": summary(latencies),
            "throughput_per_s": round(count / span, 1),
            "api_writes_per_claim_provisioning": round(writes / count, 2),
            "controller_cpu_s_per_claim": round(cpu / count, 4),
            "controller_rss_mb_loaded": rss_loaded,
            "gc_throughput_per_s": round(count / gc_span, 1),
        }

    async def _wait_namespaces_gone(self, count: int) -> None:
        deadline = time.monotonic() + 300 + 2 * count
        while time.monotonic() < deadline:
            items, _ = await self.api.list(Namespace, labels=LABELS.managed)
            if not items:
                return
            await asyncio.sleep(1)

    async def footprint(self, count: int) -> dict[str, Any]:
        idle = {"controller": self.rss_mb("controller"), "plugin": self.rss_mb("kubelet-plugin")}
        names = [f"f-{i}" for i in range(count)]
        for start in range(0, count, 200):
            chunk = names[start : start + 200]
            self.cluster.kubectl(
                "apply",
                "-f",
                "-",
                input="---\n".join(claim_manifest(BENCH_NS, n) for n in chunk),
                timeout=600,
            )
        cpu_before = self.cpu_seconds("controller")
        started = time.monotonic()
        await self.allocate(names, 0)
        while True:
            items, _ = await self.api.list(ResourceClaim, fields={"metadata.namespace": BENCH_NS})
            ready = sum(
                1
                for c in items
                for d in ((c.status.devices if c.status else None) or [])
                for cond in d.conditions or []
                if cond.type == CONDITION_READY and cond.status == "True"
            )
            if ready == count:
                break
            if time.monotonic() - started > 600:
                raise TimeoutError(f"{ready}/{count} ready")
            await asyncio.sleep(1)
        managed = {"controller": self.rss_mb("controller"), "plugin": self.rss_mb("kubelet-plugin")}
        cpu = self.cpu_seconds("controller") - cpu_before
        self.cluster.kubectl(
            "delete", "resourceclaims", "--all", "-n", BENCH_NS, "--wait=false", timeout=600
        )
        await self._wait_namespaces_gone(count)
        return {
            "managed_namespaces": count,
            "rss_mb_idle": idle,
            "rss_mb_at_managed": managed,
            "controller_cpu_s_per_claim": round(cpu / count, 4),
            "provision_wall_s": round(time.monotonic() - started, 1),
        }


def plots(result: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    scaling = result.get("scaling", [])
    if scaling:
        sizes = [s["claims"] for s in scaling]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.plot(sizes, [s["ready_latency_s"]["p50"] for s in scaling], "o-", label="p50")
        left.plot(sizes, [s["ready_latency_s"]["p99"] for s in scaling], "s-", label="p99")
        left.set_xscale("log")
        left.set_xlabel("claims allocated at once")
        left.set_ylabel("allocation -> NamespaceReady (s)")
        left.legend()
        right.plot(
            sizes,
            [s["api_writes_per_claim_provisioning"] for s in scaling],
            "o-",
            label="API writes / claim",
        )
        right.plot(
            sizes,
            [s["controller_cpu_s_per_claim"] * 1000 for s in scaling],
            "s-",
            label="controller CPU ms / claim",
        )
        right.set_xscale("log")
        right.set_xlabel("claims allocated at once")
        right.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "scaling.png", dpi=110)
        made.append("scaling.png")
    starts = result.get("pod_start", {})
    if starts:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, run in starts.items():
            for kind, style in (("without_claim", "--"), ("with_claim", "-")):
                samples = sorted(run["samples"][kind])
                ax.plot(
                    samples,
                    [(i + 1) / len(samples) for i in range(len(samples))],
                    style,
                    label=f"{kind} ({label})",
                )
        ax.set_xlabel("pod creation -> Running (s)")
        ax.set_ylabel("fraction of pods")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(RESULTS / "pod_start.png", dpi=110)
        made.append("pod_start.png")
    return made


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cluster = ensure_cluster()
    image = build_driver_image()
    import_driver_image(image)
    pool = max(args.footprint, *args.sizes) + 8
    release = ChartRelease(
        cluster,
        image=image.reference,
        image_digest=image.digest,
        values={"pool.size": str(pool), **dict(item.split("=", 1) for item in args.set)},
    )
    release.install()
    cluster.kubectl("create", "namespace", BENCH_NS, check=False)
    api = LightkubeAPI(load_config(str(cluster.kubeconfig)), "space-dra-bench")
    bench = Bench(cluster, release, api)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "image": image.reference,
        "pool_size": pool,
        "peer": "sigs.k8s.io/dra-example-driver is not served by the Go module proxy here (403), "
        "so the comparison is against pods without a claim only",
    }

    def save() -> None:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")

    previous = RESULTS / "cluster.json"
    if args.only and previous.exists():
        # Re-running some phases keeps the others' figures from the last run.
        result = {**json.loads(previous.read_text()), **result}
    phases = args.only or ["pod_start", "scaling", "footprint"]
    try:
        if "pod_start" in phases:
            result["pod_start"] = {"binding_conditions": await bench.pod_start(args.pod_samples)}
            plugin_bc = histogram_quantiles(
                bench.metrics("kubelet-plugin"), "space_dra_plugin_prepare_claim_duration_seconds"
            )
            release.values["pool.bindingConditions"] = "off"
            release.install()
            result["pod_start"]["no_binding_conditions"] = await bench.pod_start(args.pod_samples)
            result["prepare_latency"] = {
                "plugin_histogram_binding_conditions": plugin_bc,
                "plugin_histogram_no_binding_conditions": histogram_quantiles(
                    bench.metrics("kubelet-plugin"),
                    "space_dra_plugin_prepare_claim_duration_seconds",
                ),
                "kubelet_grpc_NodePrepareResources": histogram_quantiles(
                    bench.kubelet_metrics(),
                    "dra_grpc_operations_duration_seconds",
                    "NodePrepareResources",
                ),
                "note": "cumulative per plugin pod; p50/p99 are histogram bucket upper bounds",
            }
            release.values.pop("pool.bindingConditions")
            release.install()
            save()
        if "scaling" in phases:
            result["scaling"] = []
            for size in args.sizes:
                result["scaling"].append(await bench.scale(size))
                save()
        if "footprint" in phases:
            result["footprint"] = await bench.footprint(args.footprint)
            save()
    finally:
        await api.close()
        save()
    result["plots"] = plots(result)
    (RESULTS / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 100, 200, 500]
    )
    parser.add_argument(
        "--footprint", type=int, default=1000, help="managed namespaces for the RSS figure"
    )
    parser.add_argument("--pod-samples", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--set", action="append", default=[], help="extra chart values, key=value (repeatable)"
    )
    parser.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=[],
        help="run only these phases (pod_start,scaling,footprint); keep the others' last results",
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.footprint, args.pod_samples = [1, 10], 20, 3
    result = asyncio.run(run(args))
    printable = {k: v for k, v in result.items() if k != "pod_start"}
    printable["pod_start"] = {
        k: {kk: vv for kk, vv in v.items() if kk != "samples"}
        for k, v in result["pod_start"].items()
    }
    print(json.dumps(printable, indent=2))


if __name__ == "__main__":
    main()

"""What every cluster benchmark phase needs: the chart release, metrics, memory, claims.

One :class:`BenchEnv` per run. Phases install the chart with their values, read the
components' and the kubelet's ``/metrics`` through the API server's proxy, read a
pod's memory from ``/proc`` (the local cluster's containers are processes of this
machine, found by the pod UID in their cgroup), create and allocate claims, and
watch objects change with the time they changed on this clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from lightkube import codecs
from lightkube.core import resource as lkr
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.resource_v1 import (
    AllocationResult,
    DeviceAllocationResult,
    DeviceRequestAllocationResult,
)
from lightkube.models.resource_v1 import ResourceClaimStatus as ClaimStatusModel
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.resource_v1 import ResourceClaim, ResourceClaimStatus

from bench.stats import Sample, parse_metrics
from localcluster import ClusterHandle
from space_dra.contract import CONDITION_READY, DEFAULT_DRIVER_NAME, POOL_NAME, ManagementLabels
from space_dra.kube import KubeError, LightkubeAPI
from tests.support.chart import ChartRelease
from tests.support.workloads import claim_manifest

R = TypeVar("R", bound=lkr.Resource)

RESULTS = Path(__file__).resolve().parent / "results"
WORKDIR = RESULTS / "work"  # logs and kubeconfigs of a run (not committed)
BENCH_NS = "space-dra-bench"
LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)
METRICS_PORTS = {"controller": 8080, "kubelet-plugin": 8081}


def now() -> float:
    """The benchmark's clock (monotonic, seconds)."""
    return asyncio.get_running_loop().time()


def claim_ready(claim: ResourceClaim) -> bool:
    devices = (claim.status.devices if claim.status else None) or []
    return bool(devices) and all(
        any(c.type == CONDITION_READY and c.status == "True" for c in d.conditions or [])
        for d in devices
        if d.driver == DEFAULT_DRIVER_NAME
    )


def pod_processes(pod_uid: str, proc: Path = Path("/proc")) -> list[int]:
    """PIDs of the pod's container processes (its cgroup names the pod UID), pause excluded."""
    needles = (f"pod{pod_uid}", f"pod{pod_uid.replace('-', '_')}")
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroups = (entry / "cgroup").read_text()
            command = (entry / "comm").read_text().strip()
        except OSError:
            continue  # gone meanwhile
        if command != "pause" and any(needle in cgroups for needle in needles):
            pids.append(int(entry.name))
    return pids


def memory_mb(pids: Iterable[int], proc: Path = Path("/proc")) -> dict[str, float]:
    """Summed resident set (``VmRSS``) and peak resident set (``VmHWM``) in MB."""
    rss = peak = 0
    for pid in pids:
        try:
            status = (proc / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak += int(line.split()[1])
    return {"rss_mb": round(rss / 1024, 1), "peak_mb": round(peak / 1024, 1)}


def from_yaml(manifest: str) -> Any:
    return codecs.from_dict(yaml.safe_load(manifest))


class BenchEnv:
    """The cluster, the chart release of the driver and an API client, for one run."""

    def __init__(self, cluster: ClusterHandle, release: ChartRelease, api: LightkubeAPI) -> None:
        self.cluster = cluster
        self.release = release
        self.api = api
        self.node = cluster.node_name  # the machine itself: host drivers run there
        self.namespace = BENCH_NS

    # -- the chart ------------------------------------------------------------------

    def install(self, values: dict[str, object] | None = None, *, wait: bool = True) -> None:
        """The chart with its defaults plus ``values`` (dotted keys as in ``--set``)."""
        self.release.values = {key: str(value) for key, value in (values or {}).items()}
        self.release.install(wait=wait)

    def component_pods(self, component: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.release.pods(component)
            if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") == "Running"
        ]

    def component_pod(self, component: str, node: str | None = None) -> dict[str, Any]:
        pods = [
            p
            for p in self.component_pods(component)
            if node is None or p["spec"].get("nodeName") == node
        ]
        if not pods:
            raise RuntimeError(f"no running {component} pod" + (f" on {node}" if node else ""))
        return pods[0]

    # -- metrics and memory ---------------------------------------------------------------

    def metrics(self, component: str, node: str | None = None) -> list[Sample]:
        pod = self.component_pod(component, node)["metadata"]["name"]
        port = METRICS_PORTS[component]
        return parse_metrics(
            self.cluster.kubectl(
                "get",
                "--raw",
                f"/api/v1/namespaces/{self.release.namespace}/pods/{pod}:{port}/proxy/metrics",
            )
        )

    def kubelet_metrics(self, node: str | None = None) -> list[Sample]:
        return parse_metrics(
            self.cluster.kubectl("get", "--raw", f"/api/v1/nodes/{node or self.node}/proxy/metrics")
        )

    def memory(self, component: str, node: str | None = None) -> dict[str, float]:
        """RSS and peak RSS (MB) of a component's pod, from ``/proc``."""
        pod = self.component_pod(component, node)
        return memory_mb(pod_processes(pod["metadata"]["uid"]))

    def memory_per_node(self, component: str) -> dict[str, dict[str, float]]:
        return {
            p["spec"]["nodeName"]: memory_mb(pod_processes(p["metadata"]["uid"]))
            for p in self.component_pods(component)
        }

    def restarts(self, component: str) -> int:
        return sum(
            s.get("restartCount", 0)
            for p in self.release.pods(component)
            for s in p.get("status", {}).get("containerStatuses", [])
        )

    # -- claims ---------------------------------------------------------------------------

    def create_claims(self, names: list[str], chunk: int = 100) -> None:
        for start in range(0, len(names), chunk):
            manifests = "---\n".join(
                claim_manifest(self.namespace, n) for n in names[start : start + chunk]
            )
            self.cluster.kubectl("apply", "-f", "-", input=manifests, timeout=600)

    async def allocate(self, names: list[str], first_slot: int = 0) -> dict[str, float]:
        """Write ``status.allocation`` as the scheduler does (one slot each); return when
        each write returned. The scheduler allocates only for pods, and a node runs at most
        110; everything after the allocation is the real controller."""
        written: dict[str, float] = {}
        gate = asyncio.Semaphore(16)

        async def one(index: int, name: str) -> None:
            status = ResourceClaimStatus(
                metadata=ObjectMeta(name=name, namespace=self.namespace),
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
            async with gate:
                await self.api.apply(status, name=name, namespace=self.namespace)
            written[name] = now()

        await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
        return written

    def delete_all(self, kinds: str = "pods,resourceclaims", wait: bool = True) -> None:
        flag = f"--wait={str(wait).lower()}"
        self.cluster.kubectl("delete", kinds, "--all", "-n", self.namespace, flag, timeout=900)

    async def managed_namespaces(self) -> list[Namespace]:
        items, _ = await self.api.list(Namespace, labels=LABELS.managed)
        return items

    async def wait_namespaces(
        self, done: Callable[[list[Namespace]], bool], what: str, limit: float
    ) -> float:
        """Poll the managed namespaces until ``done(items)`` (at most ``limit`` seconds);
        return the seconds it took."""
        started = now()
        while not done(await self.managed_namespaces()):
            if now() - started > limit:
                raise TimeoutError(f"{what}: not done after {limit:.0f} s")
            await asyncio.sleep(0.25)
        return now() - started

    async def wait_claim_namespaces_gone(self, limit: float = 900) -> float:
        """Until no namespace made for a claim is left (the warm pool's may stay)."""
        return await self.wait_namespaces(
            lambda items: not [n for n in items if not is_warm(n)], "claim namespaces gone", limit
        )


def is_warm(namespace: Namespace) -> bool:
    return LABELS.warm in ((namespace.metadata.labels if namespace.metadata else None) or {})


def is_live(namespace: Namespace) -> bool:
    return namespace.metadata is not None and namespace.metadata.deletionTimestamp is None


@contextlib.asynccontextmanager
async def watching(
    api: LightkubeAPI,
    res: type[R],
    on_change: Callable[[R, float], None],
    *,
    namespace: str | None = None,
    labels: dict[str, str] | None = None,
) -> AsyncIterator[None]:
    """Call ``on_change(object, time)`` for every object listed or changed, until exit.

    A watch that fails is listed and watched again (listed objects count as changes, so
    nothing is missed, only seen a little late)."""
    fields = {"metadata.namespace": namespace} if namespace else None

    listed = asyncio.Event()

    async def loop() -> None:
        while True:
            try:
                items, version = await api.list(res, fields=fields, labels=labels)
                for item in items:
                    on_change(item, now())
                listed.set()
                async for _, obj in api.watch(res, version, fields=fields, labels=labels):
                    on_change(obj, now())
            except KubeError:
                await asyncio.sleep(0.5)

    task = asyncio.create_task(loop())
    await listed.wait()
    await asyncio.sleep(0.1)  # the watch request is on its way before anything happens
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(predicate: Callable[[], bool], what: str, limit: float) -> None:
    """Poll ``predicate`` every 20 ms until it holds; fail after ``limit`` seconds."""
    started = now()
    while not predicate():
        if now() - started > limit:
            raise TimeoutError(f"{what}: not done after {limit:.0f} s")
        await asyncio.sleep(0.02)

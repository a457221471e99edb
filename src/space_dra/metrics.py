"""Prometheus metrics of both components, in one registry per process.

Names follow ``space_dra_<component>_<what>_<unit>``, except ``space_dra_api_writes_total``
and ``space_dra_build_info``, which both components share. Label values are bounded
(results and reasons from fixed sets), never claim UIDs, so cardinality stays flat
however many claims come and go. The registry is our own rather than the library's
global one, so the process and Python runtime collectors are registered here explicitly.
Every metric is described in docs/metrics.md (tests/unit/test_metrics.py checks it).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
# process_* (CPU, memory, file descriptors, start time), python_info and python_gc_*.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

BUILD_INFO = Gauge(
    "space_dra_build_info",
    "1, labelled with the running driver's version, its Python version and the component.",
    ["version", "python_version", "component"],
    registry=REGISTRY,
)


# What a component's /metrics leaves out: the other component's metrics, which would
# only ever read 0 there (and make an alert on, say, plugin registration fire for the
# controller's pods).
_FOREIGN_PREFIX = {"controller": "space_dra_plugin_", "kubelet-plugin": "space_dra_controller_"}


class _Exposed(Collector):
    def __init__(self) -> None:
        self.hidden_prefix: str | None = None

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            if self.hidden_prefix is None or not family.name.startswith(self.hidden_prefix):
                yield family


_EXPOSED = _Exposed()


def announce_component(component: str, version: str) -> None:
    """This process runs ``component`` (``controller`` or ``kubelet-plugin``) at ``version``:
    set ``space_dra_build_info`` and expose only that component's own metrics."""
    BUILD_INFO.labels(
        version=version, python_version=platform.python_version(), component=component
    ).set(1)
    _EXPOSED.hidden_prefix = _FOREIGN_PREFIX.get(component)


# From sub-millisecond (warm prepare) to the kubelet's 45 s budget.
_LATENCY_BUCKETS = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075),
    *(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 45),
)

PREPARE_CLAIMS = Counter(
    "space_dra_plugin_prepare_claims_total",
    "Claims NodePrepareResources handled, by result.",
    ["result"],
    registry=REGISTRY,
)
PREPARE_SECONDS = Histogram(
    "space_dra_plugin_prepare_claim_duration_seconds",
    "Time to prepare one claim, by result (ok, error) and path (warm: already prepared).",
    ["result", "path"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
UNPREPARE_CLAIMS = Counter(
    "space_dra_plugin_unprepare_claims_total",
    "Claims NodeUnprepareResources handled, by result.",
    ["result"],
    registry=REGISTRY,
)
UNPREPARE_SECONDS = Histogram(
    "space_dra_plugin_unprepare_claim_duration_seconds",
    "Time to unprepare one claim, by result.",
    ["result"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PREPARED_CLAIMS = Gauge(
    "space_dra_plugin_prepared_claims",
    "Claims currently prepared on this node.",
    registry=REGISTRY,
)
TOKEN_REFRESHES = Counter(
    "space_dra_plugin_token_refreshes_total",
    "Background token refreshes and artifact repairs, by result.",
    ["result"],
    registry=REGISTRY,
)
TOKEN_REFUSALS = Counter(
    "space_dra_plugin_token_refusals_total",
    "TokenRequests the API server refused and the plugin retried: during a prepare, the "
    "controller had not yet recorded a pod of the claim on this node.",
    registry=REGISTRY,
)
TOKENS_AHEAD = Counter(
    "space_dra_plugin_tokens_ahead_total",
    "Tokens minted ahead of the kubelet's prepare, by outcome: minted, used (taken by a "
    "prepare), unused (dropped after a minute), failed (the prepare mints on its own).",
    ["outcome"],
    registry=REGISTRY,
)
REGISTERED = Gauge(
    "space_dra_plugin_registered",
    "1 when the kubelet accepted the plugin's registration, 0 when it rejected it.",
    registry=REGISTRY,
)
CHECKPOINT_RECOVERIES = Counter(
    "space_dra_plugin_checkpoint_recoveries_total",
    "Times an unreadable checkpoint was moved aside and rebuilt, by reason "
    "(corrupt, unsupported_version).",
    ["reason"],
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The /metrics body."""
    return generate_latest(_EXPOSED)


# -- controller -------------------------------------------------------------------

POOL_SIZE = Gauge(
    "space_dra_controller_pool_devices",
    "Slot devices published in the pool (the cap on ephemeral namespaces).",
    registry=REGISTRY,
)
NAMESPACES_MANAGED = Gauge(
    "space_dra_controller_namespaces_managed",
    "Namespaces this controller created and can prove it owns.",
    registry=REGISTRY,
)
WARM_NAMESPACES = Gauge(
    "space_dra_controller_warm_namespaces",
    "Namespaces made ahead of claims and not handed to one yet (the warm pool).",
    registry=REGISTRY,
)
WARM_HANDOVERS = Counter(
    "space_dra_controller_warm_handovers_total",
    "Devices given a namespace by outcome: warm (from the pool) or cold (made for the claim).",
    ["path"],
    registry=REGISTRY,
)
UNVERIFIED_NAMESPACES = Gauge(
    "space_dra_controller_namespaces_unverified",
    "Namespaces carrying our labels without a valid ownership signature (never deleted).",
    registry=REGISTRY,
)
PROVISION_SECONDS = Histogram(
    "space_dra_controller_provision_duration_seconds",
    "From allocation (allocationTimestamp) to NamespaceReady written, per device.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PROVISIONED = Counter(
    "space_dra_controller_provisioned_total",
    "Devices whose namespace was provisioned (result=ok) or rejected/failed (result=failed).",
    ["result"],
    registry=REGISTRY,
)
FAILURES = Counter(
    "space_dra_controller_failures_total",
    "Provisioning failures by reason.",
    ["reason"],
    registry=REGISTRY,
)
GC_DELETIONS = Counter(
    "space_dra_controller_gc_deletions_total",
    "Namespaces deleted by garbage collection, by why.",
    ["why"],
    registry=REGISTRY,
)
API_WRITES = Counter(
    "space_dra_api_writes_total",
    "Write requests sent to the API server, by verb and kind.",
    ["verb", "kind"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "space_dra_controller_leader",
    "1 while this replica holds the leader lease.",
    registry=REGISTRY,
)
WORKQUEUE_DEPTH = Gauge(
    "space_dra_controller_workqueue_depth",
    "Keys waiting in the work queue for a worker (not counting those being processed).",
    ["queue"],
    registry=REGISTRY,
)
WORKQUEUE_RETRIES = Counter(
    "space_dra_controller_workqueue_retries_total",
    "Keys whose processing failed and was scheduled again with backoff.",
    ["queue"],
    registry=REGISTRY,
)
INFORMER_RELISTS = Counter(
    "space_dra_controller_informer_relists_total",
    "Lists after a watch ended (Gone, API server restart, dropped connection), by kind.",
    ["kind"],
    registry=REGISTRY,
)

"""The benchmark's arithmetic and bookkeeping, without a cluster (bench/stats.py and the
pure parts of the phases): a wrong percentile or a misread metric would publish wrong
figures in docs/performance.md without anything failing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lightkube import codecs

from bench import cluster, compare, foreign, podstart, report, scale, warm
from bench.env import memory_mb, pod_processes
from bench.stats import (
    Calls,
    by_labels,
    delta,
    histogram_calls,
    interleaved_overheads,
    parse_metrics,
    percentile,
    ramp_rate,
    slope,
    summary,
    total,
)

PREPARE = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources"
UNPREPARE = "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodeUnprepareResources"


def kubelet(a_sum: float, a_count: int, b_sum: float = 0.0, b_count: int = 0) -> str:
    """The kubelet's DRA gRPC histogram as it exposes it, for drivers a and b."""
    name = "dra_grpc_operations_duration_seconds"

    def series(driver: str, method: str, total: float, count: int) -> str:
        labels = f'driver_name="{driver}",grpc_status_code="OK",method_name="{method}"'
        return (
            f'{name}_bucket{{{labels},le="0.1"}} {count}\n'
            f'{name}_bucket{{{labels},le="+Inf"}} {count}\n'
            f"{name}_sum{{{labels}}} {total}\n{name}_count{{{labels}}} {count}\n"
        )

    return (
        f"# HELP {name} [ALPHA] Duration in seconds of the DRA gRPC operations\n"
        f"# TYPE {name} histogram\n"
        + series("a.example.com", PREPARE, a_sum, a_count)
        + series("a.example.com", UNPREPARE, 0.5, 7)
        + series("b.example.com", PREPARE, b_sum, b_count)
    )


def test_percentiles_and_summary_of_known_samples() -> None:
    samples = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(samples, 0.5) == 51.0  # nearest rank on 0..99
    assert percentile(samples, 0.99) == 99.0
    assert percentile(list(reversed(samples)), 0.0) == 1.0
    stats = summary(samples)
    assert stats["n"] == 100 and stats["p50"] == 50.5 and stats["max"] == 100.0
    assert stats["mean"] == 50.5 and stats["p90"] == 90.0
    assert summary([]) == {"n": 0}
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_prometheus_text_is_read_with_labels_comments_and_odd_values() -> None:
    text = (
        "# HELP x a\n"
        'x{a="1",b="with \\"quote\\""} 2.5\n'
        "x 1\n"
        'y_bucket{le="+Inf"} 4\n'
        "garbage line\n"
        'z{k="v"} NaN\n'
    )
    samples = parse_metrics(text)
    assert [(s.name, dict(s.labels), s.value) for s in samples[:3]] == [
        ("x", {"a": "1", "b": 'with "quote"'}, 2.5),
        ("x", {}, 1.0),
        ("y_bucket", {"le": "+Inf"}, 4.0),
    ]
    assert total(samples, "x") == 3.5
    assert total(samples, "x", a="1") == 2.5
    assert total(samples, "x", a="2") == 0.0


def test_writes_are_grouped_by_verb_and_kind_and_only_growth_counts() -> None:
    before = parse_metrics('w{verb="create",kind="Namespace"} 10\nw{verb="apply",kind="Lease"} 5\n')
    after = parse_metrics(
        'w{verb="create",kind="Namespace"} 14\nw{verb="apply",kind="Lease"} 5\n'
        'w{verb="replace",kind="Namespace"} 2\n'
    )
    assert by_labels(after, "w", ("verb", "kind")) == {
        "create Namespace": 14.0,
        "apply Lease": 5.0,
        "replace Namespace": 2.0,
    }
    grown = delta(by_labels(before, "w", ("verb", "kind")), by_labels(after, "w", ("verb", "kind")))
    assert grown == {"create Namespace": 4.0, "replace Namespace": 2.0}


def test_one_call_between_scrapes_is_that_calls_exact_duration() -> None:
    before = parse_metrics(kubelet(0.250, 3))
    after = parse_metrics(kubelet(0.268, 4, b_sum=0.011, b_count=1))
    calls = podstart.kubelet_calls(before, after, "a.example.com", "NodePrepareResources")
    assert calls.count == 1 and calls.single == pytest.approx(0.018)
    other = podstart.kubelet_calls(before, after, "b.example.com", "NodePrepareResources")
    assert other.single == pytest.approx(0.011)
    # Unprepare is a different method (and API version): not counted as a prepare.
    unprepare = podstart.kubelet_calls(before, after, "a.example.com", "NodeUnprepareResources")
    assert unprepare == Calls(0, 0.0)
    # Two calls in between: no single duration, the sum is kept for the record.
    twice = podstart.kubelet_calls(
        before, parse_metrics(kubelet(0.3, 5)), "a.example.com", "NodePrepareResources"
    )
    assert twice.count == 2 and twice.single is None


def test_histogram_calls_without_labels_sums_every_series() -> None:
    before = parse_metrics(
        'h_sum{result="ok",path="cold"} 1.0\nh_count{result="ok",path="cold"} 2\n'
    )
    after = parse_metrics(
        'h_sum{result="ok",path="cold"} 1.02\nh_count{result="ok",path="cold"} 3\n'
    )
    assert histogram_calls(before, after, "h").single == pytest.approx(0.02)


def test_ramp_rate_ignores_a_slow_start_and_a_straggler() -> None:
    times = [0.0] + [10.0 + i * 0.02 for i in range(99)] + [60.0]  # 50/s in the middle
    assert ramp_rate(times) == pytest.approx(50, rel=0.02)
    assert ramp_rate([1.0, 2.0]) != ramp_rate([1.0, 2.0])  # NaN: too few to say


def test_interleaved_overheads_cancel_what_slows_every_pod_alike() -> None:
    # The node slows every pod by 10 ms per group; pods with the claim take 50 ms more.
    without = [1.0 + 0.01 * i for i in range(3)]
    with_claim = [1.05 + 0.01 * (i // 2) for i in range(6)]
    assert interleaved_overheads(with_claim, without, every=2) == pytest.approx([0.05] * 3)
    with pytest.raises(ValueError, match="cannot follow"):
        interleaved_overheads(with_claim[:3], without, every=2)


def test_shared_claim_drift_is_the_overheads_not_the_nodes() -> None:
    # 20 pods with the claim, one without after every 4; the node slows each pod by 2 ms.
    plain = [0.6 + 0.002 * 4 * (i + 1) for i in range(5)]
    flat = [0.65 + 0.002 * i for i in range(20)]
    figures = scale.shared_claim_figures(flat, plain, every=4)
    assert figures["start_slope_ms_per_pod"] == pytest.approx(2.0)
    assert abs(figures["overhead_drift_s"]) < 0.01
    growing = [start + 0.01 * i for i, start in enumerate(flat)]  # +10 ms per pod joined
    figures = scale.shared_claim_figures(growing, plain, every=4)
    assert figures["overhead_drift_s"] == pytest.approx(0.16)
    assert figures["overhead_slope_ms_per_pod"] == pytest.approx(10.0)


def test_slope_is_flat_for_noise_and_grows_with_a_trend() -> None:
    assert slope([0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0]) == 0
    assert slope([0, 1, 2, 3], [1.0, 1.1, 1.2, 1.3]) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        slope([1], [1.0])


def test_every_round_has_every_kind_once_in_a_reproducible_shuffled_order() -> None:
    kinds = [podstart.PLAIN, podstart.OURS, podstart.driver_kind("go", "go.example.com")]
    order = podstart.schedule(kinds, 30, seed=7)
    assert len(order) == 30
    assert all(sorted(k.name for k in r) == ["go", "ours", "plain"] for r in order)
    assert order == podstart.schedule(kinds, 30, seed=7)
    assert len({tuple(k.name for k in r) for r in order}) > 1  # not always the same order
    assert {r[0].name for r in order} == {"go", "ours", "plain"}  # nobody always goes first


def test_overheads_and_ratios_compare_medians_of_the_same_run() -> None:
    starts = {
        "plain": [1.0, 1.1, 1.2],
        "ours": [1.1, 1.2, 1.5],
        "gobaseline": [1.05, 1.15, 1.3],
    }
    over = podstart.overheads(starts)
    assert over["ours"]["p50_s"] == pytest.approx(0.1)
    assert over["ours"]["p99_s"] == pytest.approx(0.3)
    assert over["gobaseline"]["ratio_p50"] == pytest.approx(1.15 / 1.1, rel=1e-3)
    run = {
        "overhead": over,
        "kubelet_prepare_s": {
            "ours": summary([0.02, 0.03, 0.04]),
            "gobaseline": summary([0.01, 0.01, 0.02]),
            "twin": {"n": 0},
        },
    }
    ratios = compare.ratios(run)
    assert ratios["reference"] == "gobaseline"
    assert ratios["by_driver"] == {
        "ours": {"prepare_p50_ratio": 3.0, "overhead_p50_minus_s": pytest.approx(0.05)}
    }
    assert compare.ratios({"overhead": {}, "kubelet_prepare_s": {"ours": summary([1.0])}}) == {}


def test_a_plain_pod_is_the_claim_pod_without_its_claim() -> None:
    doc: Any = codecs.from_dict(
        __import__("yaml").safe_load(podstart.plain_pod("ns", "p", "img", "vm"))
    )
    assert doc.spec.resourceClaims is None
    assert doc.spec.containers[0].resources is None
    assert doc.spec.nodeSelector == {"kubernetes.io/hostname": "vm"}


def _slice(generation: int, count: int, devices: int) -> Any:
    return codecs.from_dict(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": f"s-{generation}-{devices}"},
            "spec": {
                "driver": "space.resource.example.com",
                "allNodes": True,
                "pool": {"name": "space", "generation": generation, "resourceSliceCount": count},
                "devices": [{"name": f"slot-{i}"} for i in range(devices)],
            },
        }
    )


def test_a_pool_counts_as_published_only_when_its_newest_generation_is_complete() -> None:
    old = [_slice(1, 1, 32)]
    assert scale.published_devices(old) == 32
    partial = [*old, _slice(2, 2, 128)]  # 2 of generation 2 expected, 1 there
    assert scale.published_devices(partial) == 0
    assert scale.published_devices([*partial, _slice(2, 2, 72)]) == 200
    assert scale.published_devices([]) == 0


def test_a_foreign_claim_is_as_large_as_the_attack_and_within_the_apis_limits() -> None:
    claim = foreign.foreign_claim("ns", "f")
    configs = claim["spec"]["devices"]["config"]
    assert len(configs) == 32  # the API's most
    for entry in configs:
        assert len(json.dumps(entry["opaque"]["parameters"])) < 10 * 1024  # the API's limit
        assert entry["opaque"]["driver"] == foreign.FOREIGN_DRIVER
    assert 280_000 < foreign.claim_bytes(claim) < 310_000  # about 290 KB, as in the issue
    assert codecs.from_dict(claim).spec.devices.requests[0].exactly.deviceClassName


def test_warm_namespaces_are_ready_once_filled_and_gone_once_handed_over() -> None:
    pool = warm.WarmNamespaces()
    labels = {"space.resource.example.com/warm": "filling-abc"}

    def ns(labels: dict[str, str], deleting: bool = False) -> Any:
        meta: dict[str, Any] = {"name": "n1", "labels": labels}
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return codecs.from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})

    pool.seen(ns(labels), 1.0)
    assert pool.current == set() and pool.ready_at == {}
    pool.seen(ns({"space.resource.example.com/warm": "abc"}), 2.0)
    pool.seen(ns({"space.resource.example.com/warm": "abc"}), 3.0)  # seen again: first time kept
    assert pool.current == {"n1"} and pool.ready_at == {"n1": 2.0}
    pool.seen(ns({"space.resource.example.com/claim-uid": "u"}), 4.0)  # handed over
    assert pool.current == set()
    pool.seen(ns({"space.resource.example.com/warm": "abc"}, deleting=True), 5.0)
    assert pool.current == set()


def test_leader_election_and_the_pools_publication_are_not_claim_writes() -> None:
    samples = parse_metrics(
        'space_dra_api_writes_total{verb="apply",kind="Lease"} 9\n'
        'space_dra_api_writes_total{verb="apply",kind="ResourceSlice"} 8\n'
        'space_dra_api_writes_total{verb="replace",kind="Namespace"} 3\n'
    )
    assert warm.writes(samples) == {"replace Namespace": 3.0}
    assert warm.per_claim({"replace Namespace": 3.0, "apply X": 1.0}, 2) == {
        "apply X": 0.5,
        "replace Namespace": 1.5,
    }


def test_a_pods_memory_is_read_from_the_processes_in_its_cgroup(tmp_path: Path) -> None:
    uid = "1b2c-3d"

    def process(pid: int, cgroup: str, comm: str, rss_kb: int, hwm_kb: int) -> None:
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "cgroup").write_text(f"12:memory:{cgroup}\n")
        (d / "comm").write_text(comm + "\n")
        (d / "status").write_text(f"Name: x\nVmHWM:\t{hwm_kb} kB\nVmRSS:\t{rss_kb} kB\n")

    process(10, f"/space-dra/vm/kubepods/besteffort/pod{uid}/abc", "python3", 51200, 61440)
    process(11, f"/space-dra/vm/kubepods/besteffort/pod{uid}/def", "pause", 512, 512)
    process(12, "/space-dra/vm/kubepods/besteffort/podother/abc", "python3", 1024, 1024)
    process(13, f"/kubepods.slice/pod{uid.replace('-', '_')}.slice/x", "sh", 1024, 2048)
    (tmp_path / "self").mkdir()
    pids = sorted(pod_processes(uid, tmp_path))
    assert pids == [10, 13]
    assert memory_mb(pids, tmp_path) == {"rss_mb": 51.0, "peak_mb": 62.0}
    assert memory_mb([99], tmp_path) == {"rss_mb": 0.0, "peak_mb": 0.0}  # gone meanwhile


def test_the_goals_read_each_figure_and_say_met_missed_or_not_measured() -> None:
    def level(claims: int, p50: float, watching: float, listed: float) -> dict[str, Any]:
        return {
            "foreign_claims": claims,
            "provision_s": {"p50": p50},
            "restarts": 0,
            "oom_killed": False,
            "memory_mb_while_watching": {"rss_mb": watching},
            "memory_mb_after_restart": {"rss_mb": listed},
        }

    ours = {"prepare_p50_ratio": 1.2, "overhead_p50_minus_s": 0.03}
    burst = {"ready_latency_s": {"p50": 0.2, "p99": 0.9}, "claim_writes_per_claim": 2.0}
    result = {
        "compare": {
            "overhead": {"ours": {"p50_s": 0.05, "p99_s": 1.4}},
            "ratios": {"by_driver": {"ours": ours}},
        },
        "warm": {
            "warm": {"burst": burst, "refill_rate_per_s": 40.0},
            "cold": {"burst": {"claim_writes_per_claim": 7.0}},
        },
        "foreign": {"levels": [level(0, 0.04, 50, 50), level(500, 0.06, 70, 120)]},
    }
    rows = {goal: (measured, verdict) for goal, measured, verdict in report.goals(result)}
    assert rows["kubelet-observed prepare p50 ≤ 1.5x the Go baseline's"] == ("1.20x", "met")
    assert rows["chart defaults: overhead p99 ≤ 1.0 s"] == ("+1.400 s", "missed")
    assert rows["warm path: ≤ 2 API writes per claim"] == ("2.00", "met")
    assert rows["refill throughput ≥ 50 namespaces/s (after the burst)"] == ("40.0/s", "missed")
    assert rows["foreign claims (largest level): controller RSS ≤ 100 MB"] == ("120.0 MB", "missed")
    assert rows["foreign claims: provisioning as fast as without (p50 within +50 ms)"][1] == "met"
    assert rows["controller RSS ≤ 100 MB with 1000 live namespaces"] == ("—", "not measured")
    assert rows["500 foreign claims: the controller keeps running"][1] == "met"
    assert report.goals({})[0][2] == "not measured"


def test_the_command_line_refuses_what_cannot_be_measured(tmp_path: Path) -> None:
    assert cluster.parse([]).burst == 200
    assert cluster.parse(["--quick"]).burst < 200
    assert cluster.parse(["--only", "warm,foreign"]).only == ["warm", "foreign"]
    for bad in (["--only", "nope"], ["--burst", "300"], ["--example-driver", str(tmp_path / "x")]):
        with pytest.raises(SystemExit):
            cluster.parse(bad)

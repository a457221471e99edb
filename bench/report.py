"""Print the benchmark results as the Markdown tables and goals of docs/performance.md.

.venv/bin/python -m bench.report [--goals-only]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.1f} ms"


def sec(seconds: float | None, signed: bool = False) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:+.2f} s" if signed else f"{seconds:.2f} s"


def dig(data: Any, *path: str | int) -> Any:
    """``data[p0][p1]...``, or None where a step is missing."""
    for step in path:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return None
    return data


# -- goals ----------------------------------------------------------------------------------


def _max_rss(per_node: dict[str, dict[str, float]] | None) -> float | None:
    return max((m["rss_mb"] for m in per_node.values()), default=None) if per_node else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _largest_foreign(result: dict[str, Any]) -> dict[str, Any] | None:
    levels = dig(result, "foreign", "levels") or []
    return max(levels, key=lambda lv: lv["foreign_claims"]) if levels else None


def _foreign_rss(result: dict[str, Any]) -> float | None:
    top = _largest_foreign(result)
    if top is None:
        return None
    return _number(
        max(top["memory_mb_while_watching"]["rss_mb"], top["memory_mb_after_restart"]["rss_mb"])
    )


def _foreign_slowdown(result: dict[str, Any]) -> float | None:
    levels = dig(result, "foreign", "levels") or []
    if len(levels) < 2:
        return None
    return _number(levels[-1]["provision_s"]["p50"] - levels[0]["provision_s"]["p50"])


def _shared_drift(result: dict[str, Any]) -> float | None:
    return _number(dig(result, "scale", "shared_claim", "overhead_drift_s"))


# (goal, how it reads the results, the bound, whether smaller is better, how it prints)
Goal = tuple[str, Callable[[dict[str, Any]], float | None], float, bool, Callable[[float], str]]
GOALS: list[Goal] = [
    (
        "kubelet-observed prepare p50 ≤ 1.5x the Go baseline's",
        lambda r: dig(r, "compare", "ratios", "by_driver", "ours", "prepare_p50_ratio"),
        1.5, True, lambda v: f"{v:.2f}x",
    ),
    (
        "pod-start overhead p50 within +100 ms of the Go baseline's",
        lambda r: dig(r, "compare", "ratios", "by_driver", "ours", "overhead_p50_minus_s"),
        0.1, True, lambda v: f"{v * 1000:+.0f} ms",
    ),
    (
        "chart defaults: overhead against a pod without a claim, p50 ≤ 0.3 s",
        lambda r: dig(r, "compare", "overhead", "ours", "p50_s"),
        0.3, True, lambda v: f"{v:+.3f} s",
    ),
    (
        "chart defaults: overhead p99 ≤ 1.0 s",
        lambda r: dig(r, "compare", "overhead", "ours", "p99_s"),
        1.0, True, lambda v: f"{v:+.3f} s",
    ),
    (
        "a refused claim shows its reason on the pod within 5 s (chart defaults)",
        lambda r: dig(r, "bindingconditions", "off", "failure_event_on_pod_s", "max"),
        5.0, True, lambda v: f"{v:.2f} s (slowest)",
    ),
    (
        "warm pool, burst of 200: allocation → ready p50 ≤ 300 ms",
        lambda r: dig(r, "warm", "warm", "burst", "ready_latency_s", "p50"),
        0.3, True, lambda v: f"{v * 1000:.0f} ms",
    ),
    (
        "warm pool, burst of 200: allocation → ready p99 ≤ 1 s",
        lambda r: dig(r, "warm", "warm", "burst", "ready_latency_s", "p99"),
        1.0, True, lambda v: f"{v * 1000:.0f} ms",
    ),
    (
        "warm path: ≤ 2 API writes per claim",
        lambda r: dig(r, "warm", "warm", "burst", "claim_writes_per_claim"),
        2.0, True, lambda v: f"{v:.2f}",
    ),
    (
        "cold path: ≤ 10 API writes per claim",
        lambda r: dig(r, "warm", "cold", "burst", "claim_writes_per_claim"),
        10.0, True, lambda v: f"{v:.2f}",
    ),
    (
        "refill throughput ≥ 50 namespaces/s (after the burst)",
        lambda r: dig(r, "warm", "warm", "refill_rate_per_s"),
        50.0, False, lambda v: f"{v:.1f}/s",
    ),
    (
        "controller RSS ≤ 100 MB with 1000 live namespaces",
        lambda r: dig(r, "scale", "live_namespaces", "memory_mb_loaded", "controller", "rss_mb"),
        100.0, True, lambda v: f"{v:.1f} MB",
    ),
    (
        "plugin RSS ≤ 60 MB (largest node) with 1000 live namespaces",
        lambda r: _max_rss(dig(r, "scale", "live_namespaces", "memory_mb_loaded", "plugin")),
        60.0, True, lambda v: f"{v:.1f} MB",
    ),
    (
        "one claim, 100 pods: overhead flat (last fifth - first fifth ≤ 0.1 s)",
        _shared_drift, 0.1, True, lambda v: f"{v:+.3f} s",
    ),
    (
        "foreign claims (largest level): controller RSS ≤ 100 MB",
        _foreign_rss, 100.0, True, lambda v: f"{v:.1f} MB",
    ),
    (
        "foreign claims: provisioning as fast as without (p50 within +50 ms)",
        _foreign_slowdown, 0.05, True, lambda v: f"{v * 1000:+.0f} ms",
    ),
]  # fmt: skip


def goals(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, measured, met / missed / not measured) for every goal."""
    rows = []
    for text, read, bound, smaller, show in GOALS:
        value = read(result)
        if value is None:
            rows.append((text, "—", "not measured"))
            continue
        met = value <= bound if smaller else value >= bound
        rows.append((text, show(value), "met" if met else "missed"))
    top = _largest_foreign(result)
    if top is not None:
        alive = top["restarts"] == 0 and not top["oom_killed"]
        rows.append(
            (
                f"{top['foreign_claims']} foreign claims: the controller keeps running",
                f"{top['restarts']} restarts, OOM-killed: {top['oom_killed']}",
                "met" if alive else "missed",
            )
        )
    return rows


# -- tables ---------------------------------------------------------------------------------


def per_node(memory: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{node} {m['rss_mb']} MB" for node, m in memory.items())


def plugin_tables(plugin: dict[str, Any], twin: dict[str, Any] | None) -> list[str]:
    rows = [
        ["1 claim: prepare + unprepare", plugin["one_claim"], "p50 ≤ 2 ms, p99 ≤ 10 ms"],
        ["transport floor: 2 bare gRPC calls", plugin.get("transport_floor_two_calls"), "—"],
        ["100 claims in one request", plugin["one_request_100_claims"], "≤ 100 ms"],
    ]
    if twin:
        rows.insert(1, ["1 claim, the twin driver", twin["one_claim"], "—"])
    body = [[name, f"{s['p50_ms']} ms", f"{s['p99_ms']} ms", goal] for name, s, goal in rows if s]
    rss = plugin["plugin_rss_mb"]
    body.append(
        ["plugin RSS idle / after", f"{rss['idle']} MB", f"{rss['after_runs']} MB", "≤ 60 MB"]
    )
    return [
        "### Plugin round trip (in-memory adapter, real socket)",
        table(["case", "p50", "p99", "goal"], body),
    ]


def compare_tables(run: dict[str, Any]) -> list[str]:
    rows = []
    for kind, start in run["pod_start_s"].items():
        over = run["overhead"].get(kind, {})
        prep = run["kubelet_prepare_s"].get(kind, {})
        memory = run.get("memory_mb", {}).get("ours_plugin" if kind == "ours" else kind, {})
        rows.append(
            [
                kind,
                f"{start['p50']:.3f} / {start['p99']:.3f} s",
                f"{sec(over.get('p50_s'), True)} / {sec(over.get('p99_s'), True)}" if over else "—",
                f"{ms(prep.get('p50'))} / {ms(prep.get('p99'))}" if prep.get("n") else "—",
                ms(run["kubelet_unprepare_mean_s"].get(kind)),
                f"{memory['rss_mb']} MB" if memory else "—",
            ]
        )
    ratios = (
        [
            [kind, f"{r['prepare_p50_ratio']}x", f"{r['overhead_p50_minus_s'] * 1000:+.0f} ms"]
            for kind, r in dig(run, "ratios", "by_driver").items()
        ]
        if dig(run, "ratios", "by_driver")
        else []
    )
    own = run.get("plugin_prepare_s", {})
    out = [
        f"### Pod start and kubelet-observed prepare ({run['rounds']} pods of each kind, "
        "interleaved, same run)",
        table(
            [
                "pods",
                "creation → Running p50 / p99",
                "overhead p50 / p99",
                "kubelet-observed prepare p50 / p99",
                "unprepare (mean)",
                "driver RSS",
            ],
            rows,
        ),
    ]
    if ratios:
        out += [
            "Against the Go baseline, same run:",
            table(["driver", "prepare p50 / baseline's", "overhead p50 - baseline's"], ratios),
        ]
    if own.get("n"):
        out.append(
            f"Our plugin's own prepare (its histogram's exact sum per call): p50 "
            f"{ms(own['p50'])}, p99 {ms(own['p99'])}."
        )
    return out


def tradeoff_table(trade: dict[str, Any]) -> list[str]:
    rows = []
    for mode, run in trade.items():
        over = run["overhead"]["ours"]
        shown = run["failure_event_on_pod_s"]
        first = run["failures"][0] if run["failures"] else {}
        rows.append(
            [
                mode,
                f"{sec(over['p50_s'], True)} / {sec(over['p99_s'], True)}",
                f"{sec(shown.get('p50'))} / {sec(shown.get('max'))}" if shown.get("n") else "never",
                f"{first.get('any', '—')} at {sec(first.get('any_s'))}",
                first.get("pod_phase", "—"),
                max((f.get("namespaces_made", 0) for f in run["failures"]), default=0),
            ]
        )
    return [
        "### Binding conditions: the trade (same run)",
        table(
            [
                "pool.bindingConditions",
                "overhead p50 / p99",
                "refusal on the pod p50 / slowest",
                "first Warning on the pod",
                "pod phase then",
                "namespaces made",
            ],
            rows,
        ),
    ]


def warm_table(warm: dict[str, Any]) -> list[str]:
    rows = []
    for run in warm.values():
        burst = run["burst"]
        writes = ", ".join(
            f"{k} {v}" for k, v in burst["claim_writes_per_claim_by_verb_kind"].items()
        )
        rows.append(
            [
                run["warm"],
                f"{ms(burst['ready_latency_s']['p50'])} / {ms(burst['ready_latency_s']['p99'])}",
                f"{burst['claim_writes_per_claim']} ({writes})",
                ", ".join(f"{k} {v:.0f}" for k, v in burst["handovers"].items()) or "—",
                f"{run['fill_rate_per_s']}/s" if "fill_rate_per_s" in run else "—",
                f"{run['refill_rate_per_s']}/s in {run['refill_s']} s"
                if "refill_s" in run
                else "—",
            ]
        )
    claims = next(iter(warm.values()))["burst"]["claims"]
    return [
        f"### Warm pool: {claims} claims allocated at once (pool.size "
        f"{next(iter(warm.values()))['pool_size']}, same run)",
        table(
            [
                "pool.warm",
                "allocation → ready p50 / p99",
                "API writes per claim (verb kind)",
                "hand-overs",
                "fill from empty",
                "refill after the burst",
            ],
            rows,
        ),
    ]


def scale_tables(scale: dict[str, Any]) -> list[str]:
    out = []
    publish, live, shared = (
        scale.get("publish"),
        scale.get("live_namespaces"),
        scale.get("shared_claim"),
    )
    if publish and live:
        loaded, idle = live["memory_mb_loaded"], live["memory_mb_idle"]
        plugin = per_node(loaded["plugin"])
        ready = live["ready_latency_s"]
        out += [
            f"### Scale: a pool of {publish['slots']} slots, {live['namespaces']} live namespaces",
            table(
                ["", "figure"],
                [
                    ["ResourceSlices", publish["slices"]],
                    ["chart upgrade → pool published", sec(publish["upgrade_to_published_s"])],
                    ["new controller Ready → pool published",
                     sec(publish["controller_ready_to_published_s"])],
                    ["allocation → ready p50 / p99 (all at once)",
                     f"{sec(ready['p50'])} / {sec(ready['p99'])}"],
                    ["namespaces provisioned per second", live["throughput_per_s"]],
                    ["controller RSS idle → loaded (peak)",
                     f"{idle['controller']['rss_mb']} → {loaded['controller']['rss_mb']} MB "
                     f"({loaded['controller']['peak_mb']} MB)"],
                    ["plugin RSS loaded", plugin],
                    ["GC: claims deleted → every namespace deleting", sec(live["gc_deleted_s"])],
                    ["GC: claims deleted → every namespace gone", sec(live["gc_gone_s"])],
                ],
            ),
        ]  # fmt: skip
    if shared:
        start = shared["pod_start_s"]
        out += [
            f"### One claim shared by {shared['pods']} pods",
            table(
                ["", "figure"],
                [
                    ["pod start p50 / p99", f"{sec(start['p50'])} / {sec(start['p99'])}"],
                    ["pods without a claim p50", sec(shared["without_claim_s"]["p50"])],
                    ["overhead p50", sec(shared["overhead_p50_s"], True)],
                    ["overhead against the pod without a claim after each group, "
                     "first fifth → last fifth",
                     f"{sec(shared['overhead_first_fifth_s'], True)} → "
                     f"{sec(shared['overhead_last_fifth_s'], True)}"],
                    ["its trend (least squares)",
                     f"{shared['overhead_slope_ms_per_pod']:+.2f} ms per pod joined"],
                    ["pod start, first 10 p50 → last 10 p50",
                     f"{sec(shared['first_10_p50_s'])} → {sec(shared['last_10_p50_s'])}"],
                    ["pod start trend, with the claim / without",
                     f"{shared['start_slope_ms_per_pod']:+.2f} / "
                     f"{shared['without_claim_slope_ms_per_pod']:+.2f} ms per pod"],
                    ["pods per node",
                     ", ".join(f"{n} {c}" for n, c in shared["pods_per_node"].items())],
                    ["plugin RSS", per_node(shared["plugin_memory_mb"])],
                ],
            ),
        ]  # fmt: skip
    return out


def foreign_table(foreign: dict[str, Any]) -> list[str]:
    rows = [
        [
            lv["foreign_claims"],
            f"{lv['foreign_mb']} MB",
            f"{lv['memory_mb_while_watching']['rss_mb']} MB",
            "{rss_mb} MB ({peak_mb} MB)".format(**lv["memory_mb_after_restart"]),
            sec(lv["restart_to_ready_s"]),
            f"{lv['restarts']}{' (OOM)' if lv['oom_killed'] else ''}",
            f"{ms(lv['provision_s']['p50'])} / {ms(lv['provision_s']['max'])}",
        ]
        for lv in foreign["levels"]
    ]
    return [
        f"### Claims of another driver ({foreign['claim_bytes'] // 1000} KB each; controller "
        f"limit {foreign['controller_memory_limit']})",
        table(
            [
                "claims",
                "their JSON",
                "controller RSS, claims arriving",
                "RSS after a restart (peak)",
                "restart → Ready",
                "restarts",
                "our claim: allocation → ready p50 / max",
            ],
            rows,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--goals-only", action="store_true")
    args = parser.parse_args()
    out: list[str] = []
    cluster_file = RESULTS / "cluster.json"
    cluster = json.loads(cluster_file.read_text()) if cluster_file.exists() else {}
    if not args.goals_only:
        plugin_file, twin_file = RESULTS / "plugin.json", RESULTS / "plugin-twin.json"
        if plugin_file.exists():
            twin = json.loads(twin_file.read_text()) if twin_file.exists() else None
            out += plugin_tables(json.loads(plugin_file.read_text()), twin)
        if "compare" in cluster:
            out += compare_tables(cluster["compare"])
        if "bindingconditions" in cluster:
            out += tradeoff_table(cluster["bindingconditions"])
        if "warm" in cluster:
            out += warm_table(cluster["warm"])
        if "scale" in cluster:
            out += scale_tables(cluster["scale"])
        if "foreign" in cluster:
            out += foreign_table(cluster["foreign"])
    out += ["### Goals", table(["goal", "measured", ""], [list(row) for row in goals(cluster)])]
    print("\n\n".join(out))


if __name__ == "__main__":
    main()

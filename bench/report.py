"""Print the benchmark results as Markdown tables (for docs/performance.md).

.venv/bin/python -m bench.report
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def main() -> None:
    out: list[str] = []
    plugin_file = RESULTS / "plugin.json"
    if plugin_file.exists():
        plugin = json.loads(plugin_file.read_text())
        one, hundred = plugin["one_claim"], plugin["one_request_100_claims"]
        out += [
            "### Plugin round trip (in-memory adapter, real socket)",
            table(
                ["case", "p50", "p99", "goal"],
                [
                    [
                        "1 claim: prepare + unprepare",
                        f"{one['p50_ms']} ms",
                        f"{one['p99_ms']} ms",
                        "p50 ≤ 2 ms, p99 ≤ 10 ms",
                    ],
                    *(
                        [
                            [
                                "transport floor: 2 bare gRPC calls, same client and server",
                                f"{plugin['transport_floor_two_calls']['p50_ms']} ms",
                                f"{plugin['transport_floor_two_calls']['p99_ms']} ms",
                                "—",
                            ]
                        ]
                        if "transport_floor_two_calls" in plugin
                        else []
                    ),
                    [
                        "100 claims in one request",
                        f"{hundred['p50_ms']} ms",
                        f"{hundred['p99_ms']} ms",
                        "≤ 100 ms",
                    ],
                    [
                        "plugin RSS idle / after",
                        f"{plugin['plugin_rss_mb']['idle']} MB",
                        f"{plugin['plugin_rss_mb']['after_runs']} MB",
                        "≤ 60 MB",
                    ],
                ],
            ),
        ]
    cluster_file = RESULTS / "cluster.json"
    if cluster_file.exists():
        cluster = json.loads(cluster_file.read_text())
        rows = []
        for label, run in cluster.get("pod_start", {}).items():
            rows.append(
                [
                    label.replace("_", " "),
                    f"{run['without_claim_s']['p50']:.2f} / {run['without_claim_s']['p99']:.2f} s",
                    f"{run['with_claim_s']['p50']:.2f} / {run['with_claim_s']['p99']:.2f} s",
                    f"{run['overhead_p50_s']:+.2f} / {run['overhead_p99_s']:+.2f} s",
                    f"{run['ratio_p50']}x",
                ]
            )
        if rows:
            out += [
                "### Pod start (creation → Running), interleaved, same run",
                table(
                    [
                        "mode",
                        "without claim p50/p99",
                        "with claim p50/p99",
                        "overhead p50/p99",
                        "ratio p50",
                    ],
                    rows,
                ),
            ]
        prepare = cluster.get("prepare_latency", {})
        if prepare:
            rows = [
                [
                    key.replace("_", " "),
                    value.get("count"),
                    value.get("p50_le"),
                    value.get("p99_le"),
                ]
                for key, value in prepare.items()
                if isinstance(value, dict)
            ]
            out += [
                "### Prepare latency (histograms; seconds, bucket upper bounds)",
                table(["source", "count", "p50 ≤", "p99 ≤"], rows),
            ]
        scaling = cluster.get("scaling", [])
        if scaling:
            out += [
                "### Controller scaling (claims allocated at once)",
                table(
                    [
                        "claims",
                        "ready p50",
                        "ready p99",
                        "namespaces/s",
                        "API writes/claim",
                        "CPU/claim",
                        "GC namespaces/s",
                    ],
                    [
                        [
                            s["claims"],
                            ms(s["ready_latency_s"]["p50"]),
                            ms(s["ready_latency_s"]["p99"]),
                            s["throughput_per_s"],
                            s["api_writes_per_claim_provisioning"],
                            ms(s["controller_cpu_s_per_claim"]),
                            s["gc_throughput_per_s"],
                        ]
                        for s in scaling
                    ],
                ),
            ]
        footprint = cluster.get("footprint")
        if footprint:
            out += [
                "### Footprint",
                table(
                    ["", "controller", "plugin"],
                    [
                        [
                            "RSS idle",
                            f"{footprint['rss_mb_idle']['controller']} MB",
                            f"{footprint['rss_mb_idle']['plugin']} MB",
                        ],
                        [
                            f"RSS with {footprint['managed_namespaces']} managed namespaces",
                            f"{footprint['rss_mb_at_managed']['controller']} MB",
                            f"{footprint['rss_mb_at_managed']['plugin']} MB",
                        ],
                        ["CPU per claim", ms(footprint["controller_cpu_s_per_claim"]), "n/a"],
                    ],
                ),
            ]
    print("\n\n".join(out))


if __name__ == "__main__":
    main()

"""The plots of docs/performance.md, drawn from bench/results/cluster.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# One colour per kind of pod, the same in every panel.
COLOURS = {
    "plain": "tab:grey",
    "ours": "tab:blue",
    "gobaseline": "tab:orange",
    "twin": "tab:green",
    "example": "tab:purple",
}


def _cdf(ax: Any, samples: list[float], label: str, style: str = "-", scale: float = 1) -> None:
    ordered = sorted(s * scale for s in samples)
    if ordered:
        ax.plot(
            ordered,
            [(i + 1) / len(ordered) for i in range(len(ordered))],
            style,
            label=label,
            color=COLOURS.get(label),
        )


def draw(result: dict[str, Any], out: Path) -> list[str]:
    """Write every plot the results allow into ``out``; return the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)

    compare = result.get("compare")
    if compare:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for kind, samples in compare["samples"]["pod_start_s"].items():
            _cdf(left, samples, kind, "--" if kind == "plain" else "-")
        left.set_xlabel("pod creation -> Running (s)")
        left.set_ylabel("fraction of pods")
        left.set_title("pod start, interleaved, same run")
        left.legend(fontsize=8)
        for kind, samples in compare["samples"]["kubelet_prepare_s"].items():
            _cdf(right, samples, kind, scale=1000)
        right.set_xscale("log")
        right.set_xlabel("NodePrepareResources as the kubelet sees it (ms)")
        right.set_title("kubelet-observed prepare, per call")
        right.legend(fontsize=8)
        save(fig, "pod_start.png")

    trade = result.get("bindingconditions")
    if trade:
        fig, ax = plt.subplots(figsize=(6, 4))
        for mode, run in trade.items():
            _cdf(ax, run["samples"]["ours"], f"with claim, bindingConditions={mode}")
            _cdf(ax, run["samples"]["plain"], f"without claim ({mode} run)", "--")
        ax.set_xlabel("pod creation -> Running (s)")
        ax.set_ylabel("fraction of pods")
        ax.legend(fontsize=8)
        save(fig, "binding_conditions.png")

    warm = result.get("warm")
    if warm:
        fig, ax = plt.subplots(figsize=(6, 4))
        for run in warm.values():
            burst = run["burst"]
            _cdf(ax, burst["samples_s"], f"pool.warm={run['warm']}: {burst['claims']} claims")
        ax.set_xlabel("allocation -> NamespaceReady (s)")
        ax.set_ylabel("fraction of claims")
        ax.set_title("a burst of claims allocated at once")
        ax.legend(fontsize=8)
        save(fig, "warm.png")

    shared = (result.get("scale") or {}).get("shared_claim")
    if shared:
        fig, ax = plt.subplots(figsize=(6, 4))
        samples = shared["samples_s"]
        ax.plot(range(1, len(samples) + 1), samples, ".", label="pod joining the shared claim")
        every = len(samples) / max(1, len(shared["without_claim_samples_s"]))
        ax.plot(
            [every * (i + 1) for i in range(len(shared["without_claim_samples_s"]))],
            shared["without_claim_samples_s"],
            "x",
            label="pod without a claim",
        )
        ax.set_xlabel("consumers of the claim")
        ax.set_ylabel("pod creation -> Running (s)")
        ax.legend(fontsize=8)
        save(fig, "shared_claim.png")

    foreign = result.get("foreign")
    if foreign:
        levels = foreign["levels"]
        xs = [level["foreign_claims"] for level in levels]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(
            xs,
            [lv["memory_mb_while_watching"]["rss_mb"] for lv in levels],
            "o-",
            label="RSS, claims arriving by watch",
        )
        ax.plot(
            xs,
            [lv["memory_mb_after_restart"]["rss_mb"] for lv in levels],
            "s-",
            label="RSS after a restart (initial list)",
        )
        ax.plot(
            xs,
            [lv["memory_mb_after_restart"]["peak_mb"] for lv in levels],
            "^--",
            label="peak RSS since the restart",
        )
        ax.axhline(100, color="grey", linestyle=":", label="goal 100 MB")
        ax.set_xlabel(f"claims of another driver ({foreign['claim_bytes'] // 1000} KB each)")
        ax.set_ylabel("controller memory (MB)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        save(fig, "foreign_claims.png")
    return made

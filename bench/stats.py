"""Pure arithmetic of the cluster benchmarks: percentiles, Prometheus text, rates.

Kept apart from the code that talks to the cluster so it can be unit-tested
(tests/unit/test_bench_stats.py) and reused by the report.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# One exposition line: name, optional {labels}, value (timestamps are not used here).
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``samples`` (``fraction`` in 0..1)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """n, p50 (the median), p90, p99, mean and max of ``samples`` (seconds, 4 decimals)."""
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "p50": round(statistics.median(samples), 4),
        "p90": round(percentile(samples, 0.90), 4),
        "p99": round(percentile(samples, 0.99), 4),
        "mean": round(statistics.fmean(samples), 4),
        "max": round(max(samples), 4),
    }


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (comments and bad lines skipped)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line.strip())
        if not match:
            continue
        name, raw_labels, raw_value = match.groups()
        try:
            value = float(raw_value)
        except ValueError:
            continue
        labels = {key: value.replace('\\"', '"') for key, value in _LABEL.findall(raw_labels or "")}
        samples.append(Sample(name, labels, value))
    return samples


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """Sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def by_labels(samples: Iterable[Sample], name: str, keys: Sequence[str]) -> dict[str, float]:
    """``name``'s samples summed by the values of ``keys``, joined with a space."""
    result: dict[str, float] = {}
    for s in samples:
        if s.name == name:
            key = " ".join(s.labels.get(k, "") for k in keys)
            result[key] = result.get(key, 0.0) + s.value
    return result


def delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """What grew between two :func:`by_labels` readings (keys that did not grow are left out)."""
    grown = {key: after[key] - before.get(key, 0.0) for key in after}
    return {key: value for key, value in grown.items() if value > 0}


@dataclass(frozen=True)
class Calls:
    """The calls a histogram saw between two scrapes: how many and their summed duration."""

    count: int
    seconds: float

    @property
    def single(self) -> float | None:
        """The one call's exact duration, when exactly one call happened in between."""
        return self.seconds if self.count == 1 else None


def histogram_calls(
    before: Iterable[Sample], after: Iterable[Sample], name: str, **labels: str
) -> Calls:
    """Calls observed by histogram ``name`` (filtered by ``labels``) between two scrapes.

    The kubelet's DRA histograms start at 0.1 s, so their buckets cannot place a 20 ms
    call; but ``_sum`` is exact, and with one call between scrapes it is that call.
    """
    before, after = list(before), list(after)
    count = total(after, f"{name}_count", **labels) - total(before, f"{name}_count", **labels)
    seconds = total(after, f"{name}_sum", **labels) - total(before, f"{name}_sum", **labels)
    return Calls(round(count), seconds)


def ramp_rate(times: Sequence[float], low: float = 0.1, high: float = 0.9) -> float:
    """Events per second over the middle of a ramp (the ``low`` to ``high`` share of the
    events), so a slow start or a straggler does not decide the rate."""
    ordered = sorted(times)
    if len(ordered) < 3:
        return float("nan")
    first = round(low * (len(ordered) - 1))
    last = round(high * (len(ordered) - 1))
    span = ordered[last] - ordered[first]
    return (last - first) / span if span > 0 else float("inf")


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` against ``xs`` (how fast something grows)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("need two or more (x, y) pairs")
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        raise ValueError("xs are all equal")
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def interleaved_overheads(
    with_claim: Sequence[float], without: Sequence[float], every: int
) -> list[float]:
    """Each group's overhead against the pod without a claim started right after it.

    ``with_claim`` holds pod starts in order; after every ``every`` of them one pod without
    a claim was started (``without``). A group's overhead is the median of its ``every``
    starts minus that neighbour's: what the node and the control plane do more slowly as
    pods pile up slows both alike and cancels out, as in the interleaved comparisons."""
    if every < 1 or len(without) * every > len(with_claim):
        raise ValueError(f"{len(without)} pods without a claim cannot follow groups of {every}")
    return [
        statistics.median(with_claim[i * every : (i + 1) * every]) - alone
        for i, alone in enumerate(without)
    ]

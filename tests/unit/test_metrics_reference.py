"""docs/metrics.md and the chart's Grafana dashboard agree with the metrics the code defines."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from prometheus_client.metrics import MetricWrapperBase

from space_dra import metrics
from tests.support.gotools import REPO
from tests.support.hostdriver import CHART

REFERENCE = REPO / "docs" / "metrics.md"
DASHBOARD = CHART / "dashboards" / "space-dra.json"
ROW = re.compile(r"^\| `(?P<name>[a-z_]+)` \| (?P<type>\w+) \| (?P<labels>[^|]+) \| .+ \|$")


@dataclass(frozen=True)
class Described:
    type: str
    labels: frozenset[str]


def documented() -> dict[str, Described]:
    rows = {}
    for line in REFERENCE.read_text().splitlines():
        if found := ROW.match(line):
            labels = found["labels"].strip()
            names = frozenset() if labels == "none" else frozenset(re.findall(r"`(\w+)`", labels))
            rows[found["name"]] = Described(found["type"], names)
    return rows


def exposed_name(metric: MetricWrapperBase) -> str:
    """The name a query uses: counters carry _total."""
    return f"{metric._name}_total" if metric._type == "counter" else metric._name


DEFINED = {
    exposed_name(obj): Described(str(obj._type), frozenset(obj._labelnames))
    for obj in vars(metrics).values()
    if isinstance(obj, MetricWrapperBase)
}


def runtime_families() -> dict[str, Described]:
    """The process and Python collectors' metrics (they have samples, hence labels)."""
    found = {}
    for family in metrics.REGISTRY.collect():
        if family.name.startswith("space_dra_"):
            continue
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = frozenset(key for sample in family.samples for key in sample.labels)
        found[name] = Described(family.type, labels)
    return found


def test_the_reference_parses() -> None:
    assert len(documented()) >= len(DEFINED) + 6


@pytest.mark.parametrize("name", sorted(DEFINED))
def test_every_defined_metric_is_documented_as_it_is(name: str) -> None:
    rows = documented()
    assert name in rows, f"{name} is missing from docs/metrics.md"
    assert rows[name] == DEFINED[name]


def test_process_and_runtime_metrics_are_documented() -> None:
    rows = documented()
    runtime = runtime_families()
    assert any(name.startswith("process_") for name in runtime)
    for name, described in runtime.items():
        assert rows.get(name) == described, name


def test_the_reference_documents_nothing_that_does_not_exist() -> None:
    assert set(documented()) - set(DEFINED) - set(runtime_families()) == set()


def _queried_names(expression: str) -> set[str]:
    names = set(re.findall(r"\b((?:space_dra|process|python)_[a-z_]+)", expression))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert expressions
    queried = set().union(*map(_queried_names, expressions))
    known = set(DEFINED) | set(runtime_families())
    assert queried - known == set()
    # It shows every metric of ours, so a new one gets a panel (or a reason not to).
    assert {name for name in DEFINED if name.startswith("space_dra_")} - queried == set()

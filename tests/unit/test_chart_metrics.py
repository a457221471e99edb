"""The chart's monitoring objects: a metrics Service per component, the optional
ServiceMonitor, PodMonitor and Grafana dashboard ConfigMap (needs only helm)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.helmrender import NAMESPACE, container, needs_helm, render, the
from tests.support.hostdriver import CHART

pytestmark = needs_helm

COMPONENTS = {"controller": "Deployment", "kubelet-plugin": "DaemonSet"}
MONITORS = ("ServiceMonitor", "PodMonitor")


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {doc["kind"] for doc in docs}


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_headless_metrics_service_per_component(component: str) -> None:
    key = "controller" if component == "controller" else "kubeletPlugin"
    docs = render("--set", f"{key}.metricsPort=9100")
    service = the(docs, "Service", f"{component}-metrics")
    spec = service["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    pod_labels = the(docs, COMPONENTS[component])["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"].items() <= pod_labels.items()
    assert spec["selector"]["app.kubernetes.io/component"] == component
    [port] = spec["ports"]
    assert port["port"] == 9100
    container_ports = {p["name"]: p["containerPort"] for p in container(docs, component)["ports"]}
    assert container_ports[port["targetPort"]] == 9100


def test_monitors_and_dashboard_only_when_asked() -> None:
    docs = render()
    assert not kinds(docs) & set(MONITORS)
    assert not [doc for doc in docs if doc["metadata"]["name"].endswith("-dashboard")]


@pytest.mark.parametrize("kind", MONITORS)
def test_monitor_scrapes_both_components(kind: str) -> None:
    key = "serviceMonitor" if kind == "ServiceMonitor" else "podMonitor"
    docs = render(
        *("--set", f"metrics.{key}.enabled=true", "--set", f"metrics.{key}.labels.release=prom"),
        *("--set", f"metrics.{key}.interval=15s", "--set", f"metrics.{key}.scrapeTimeout=5s"),
    )
    assert not kinds(docs) & (set(MONITORS) - {kind})
    monitor = the(docs, kind)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = spec["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"]
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "5s",
    }
    selector = spec["selector"]["matchLabels"]
    # What it selects: both metrics Services, or both components' pods.
    if kind == "ServiceMonitor":
        targets = [doc["metadata"]["labels"] for doc in docs if doc["kind"] == "Service"]
    else:
        targets = [
            the(docs, workload)["spec"]["template"]["metadata"]["labels"]
            for workload in COMPONENTS.values()
        ]
    assert len(targets) == 2
    assert all(selector.items() <= labels.items() for labels in targets)


def test_empty_durations_are_left_to_prometheus() -> None:
    docs = render(
        *("--set", "metrics.serviceMonitor.enabled=true"),
        *("--set", "metrics.serviceMonitor.interval="),
    )
    [endpoint] = the(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics"}


def test_grafana_dashboard_configmap_for_the_sidecar() -> None:
    docs = render(
        *("--set", "metrics.grafanaDashboard.enabled=true"),
        *("--set", "metrics.grafanaDashboard.namespace=monitoring"),
        *("--set", "metrics.grafanaDashboard.annotations.grafana_folder=DRA"),
    )
    config_map = the(docs, "ConfigMap", "dashboard")
    metadata = config_map["metadata"]
    assert metadata["labels"]["grafana_dashboard"] == "1"
    assert metadata["namespace"] == "monitoring"
    assert metadata["annotations"] == {"grafana_folder": "DRA"}
    [(name, text)] = config_map["data"].items()
    assert name.endswith(".json")
    shipped = (CHART / "dashboards" / "space-dra.json").read_text()
    assert text == shipped
    assert json.loads(text)["uid"] == "space-dra-driver"


def test_dashboard_namespace_defaults_to_the_release_namespace() -> None:
    docs = render("--set", "metrics.grafanaDashboard.enabled=true")
    assert the(docs, "ConfigMap", "dashboard")["metadata"]["namespace"] == NAMESPACE

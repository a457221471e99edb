"""Chart values every Helm chart is expected to have, declared once for both components.

Platform teams run many charts and look for the same knobs in each (Helm's best
practices, the upstream DRA example driver's chart): name overrides, labels and
annotations on every object, a ServiceAccount per component that they may bring
themselves, security contexts, a disruption budget, and the objects the Prometheus
Operator and Grafana's dashboard sidecar pick up. None of them changes what the driver
does, which is why they live apart from :mod:`space_dra.schema_values`.
"""

from __future__ import annotations

from typing import Any, Final

from space_dra.schema_types import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    DURATION,
    INT_OR_PERCENT,
    POD_SECURITY_CONTEXT,
    SECURITY_CONTEXT,
    Group,
    Value,
    boolean,
    string_map,
    text,
)

NAMING: Final = (
    Value(
        "nameOverride",
        text(DNS_LABEL, empty=True, max_length=40),
        "",
        "Replaces `space-dra` in object names and in the app.kubernetes.io/name label.",
    ),
    Value(
        "fullnameOverride",
        text(DNS_LABEL, empty=True, max_length=40),
        "",
        "Prefix of every object's name instead of `<release>-space-dra` (objects add "
        "suffixes such as -controller).",
    ),
    Value("commonLabels", string_map(), {}, "Labels added to every object and pod."),
    Value("commonAnnotations", string_map(), {}, "Annotations added to every object."),
)


def service_account(component: str) -> Group:
    return Group(
        "serviceAccount",
        (
            Value(
                "create",
                boolean(),
                True,
                f"Create the {component}'s ServiceAccount; false: bring your own (name it below).",
            ),
            Value(
                "name",
                text(DNS_SUBDOMAIN, empty=True),
                "",
                "Defaults to a name from the release; required when create is false. The "
                "chart's RBAC is bound to this name either way.",
            ),
            Value("annotations", string_map(), {}, "Annotations of the ServiceAccount."),
        ),
        f"The {component}'s identity for the API server.",
        # Without a name the chart would bind its RBAC to nothing (or to "default").
        rules={
            "if": {"properties": {"create": {"const": False}}},
            "then": {"properties": {"name": {"minLength": 1}}},
        },
    )


def security(
    component: str, pod: dict[str, Any], container: dict[str, Any], why: str
) -> tuple[Value, Value]:
    """The pod's and the container's securityContext; ``why`` explains the defaults."""
    return (
        Value(
            "podSecurityContext",
            POD_SECURITY_CONTEXT,
            pod,
            f"The {component} pod's securityContext. {why}",
        ),
        Value(
            "securityContext",
            SECURITY_CONTEXT,
            container,
            f"The {component} container's securityContext.",
        ),
    )


CONTROLLER_SECURITY: Final = security(
    "controller",
    {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    },
    "It only talks to the API server, so it runs as the image's unprivileged user.",
)
PLUGIN_SECURITY: Final = security(
    "kubelet plugin",
    {"runAsUser": 0, "runAsGroup": 0, "seccompProfile": {"type": "RuntimeDefault"}},
    {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    },
    "Root without any capability: it writes into host directories root owns (kubelet "
    "sockets, CDI specs, credential files); see docs/install.md for SELinux nodes.",
)

DISRUPTION_BUDGET: Final = Group(
    "podDisruptionBudget",
    (
        Value("enabled", boolean(), False, "Create a PodDisruptionBudget for the controller."),
        Value(
            "minAvailable",
            INT_OR_PERCENT,
            None,
            "Pods that must stay up (count or percentage); replaces maxUnavailable when set.",
        ),
        Value(
            "maxUnavailable",
            INT_OR_PERCENT,
            1,
            "Pods a voluntary disruption (a node drain) may take down at once.",
        ),
    ),
    "Limits voluntary disruptions of the controller; with one replica, minAvailable: 1 "
    "would block node drains.",
)


def _monitor(kind: str) -> Group:
    return Group(
        kind[0].lower() + kind[1:],
        (
            Value("enabled", boolean(), False, f"Create a {kind} (needs the Prometheus Operator)."),
            Value("interval", DURATION, "30s", "Scrape interval; empty: Prometheus' default."),
            Value("scrapeTimeout", DURATION, "", "Scrape timeout; empty: Prometheus' default."),
            Value(
                "labels",
                string_map(),
                {},
                f"Labels of the {kind}, e.g. the release label your Prometheus selects.",
            ),
        ),
        f"A {kind} scraping both components' /metrics.",
    )


METRICS: Final = Group(
    "metrics",
    (
        _monitor("ServiceMonitor"),
        _monitor("PodMonitor"),
        Group(
            "grafanaDashboard",
            (
                Value("enabled", boolean(), False, "Ship the dashboard as a ConfigMap."),
                Value(
                    "labels",
                    string_map(),
                    {"grafana_dashboard": "1"},
                    "Labels of the ConfigMap: what Grafana's dashboard sidecar looks for.",
                ),
                Value("annotations", string_map(), {}, "Annotations of the ConfigMap."),
                Value(
                    "namespace",
                    text(DNS_LABEL, empty=True, max_length=63),
                    "",
                    "Namespace of the ConfigMap; defaults to the release namespace.",
                ),
            ),
            "The chart's Grafana dashboard (dashboards/space-dra.json).",
        ),
    ),
    "Each component serves /metrics on its metricsPort behind a headless Service "
    "(<fullname>-controller-metrics, <fullname>-kubelet-plugin-metrics). One monitor is "
    "enough: with both, a Prometheus that selects both scrapes every pod twice. "
    "Reference: docs/metrics.md.",
)

"""Run helm on the chart without a cluster: lint, and render to Kubernetes objects.

Tests using it skip when no helm binary is found (see :func:`find_helm`); the cluster
suite always has one.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from localcluster import releases
from tests.support.chartvalues import find_helm
from tests.support.hostdriver import CHART

HELM = find_helm()
KUBE_VERSION = ("--kube-version", releases.DEFAULT)
RELEASE = "schema"
NAMESPACE = "space-dra"

needs_helm = pytest.mark.skipif(
    HELM is None,
    reason="no helm binary: set SPACE_DRA_HELM, or run `make cluster-up` once to build one",
)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, check=False, timeout=120
    )


def render(
    *args: str, release: str = RELEASE, kube_version: str = releases.DEFAULT
) -> list[dict[str, Any]]:
    """Every object the chart renders with these helm arguments (``--set ...``), for a
    cluster of ``kube_version`` (values such as ``auto`` depend on it)."""
    result = helm(
        "template", release, str(CHART), "-n", NAMESPACE, "--kube-version", kube_version, *args
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(*args: str) -> str:
    """What helm says when it refuses to render with these arguments."""
    result = helm("template", RELEASE, str(CHART), "-n", NAMESPACE, *KUBE_VERSION, *args)
    assert result.returncode != 0, "helm rendered what it should refuse"
    return result.stderr


def the(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    """The one object of ``kind`` (whose name ends with ``name_suffix``)."""
    [doc] = [
        doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"].endswith(name_suffix)
    ]
    return doc


def pod_spec(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The pod template spec of ``controller`` or ``kubelet-plugin``."""
    kind = "Deployment" if component == "controller" else "DaemonSet"
    spec: dict[str, Any] = the(docs, kind, component)["spec"]["template"]["spec"]
    return spec


def container(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    [only] = pod_spec(docs, component)["containers"]
    return dict(only)


def env(docs: list[dict[str, Any]], component: str) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container(docs, component)["env"]}

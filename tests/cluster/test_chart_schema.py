"""The Helm chart lints cleanly and every rendered object passes the API server's validation.

Validation is a server-side dry run of a server-side apply: it checks every object in full (strict
field validation) whatever already exists in the cluster, such as the cluster-scoped DeviceClass of
a release that `make demo` left installed.
"""

from __future__ import annotations

import pytest

from localcluster import ClusterHandle
from tests.support.hostdriver import CHART

pytestmark = pytest.mark.cluster

VALUE_SETS = {
    "defaults": [],
    "tuned": [
        "--set",
        "pool.size=300",
        "--set",
        "policy.maxQuota.pods=10",
        "--set",
        "defaults.quota.pods=5",
        "--set",
        "controller.replicas=2",
        "--set",
        "deviceClass.name=space-small",
        "--set-string",
        "podAnnotations.rollout=abc",
    ],
    "no-admission-policy": [
        "--set",
        "admissionPolicy.enabled=false",
        "--set",
        "deviceClass.create=false",
    ],
}


def test_helm_lint_is_clean(local_cluster: ClusterHandle) -> None:
    out = local_cluster.helm(
        "lint", "--strict", str(CHART), "--kube-version", local_cluster.kubernetes_version
    )
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values", list(VALUE_SETS), ids=list(VALUE_SETS))
def test_rendered_manifests_validate_against_the_api_server(
    local_cluster: ClusterHandle, values: str
) -> None:
    namespace = local_cluster.create_namespace("chart")
    try:
        rendered = local_cluster.helm(
            "template",
            "schema",
            str(CHART),
            "-n",
            namespace,
            "--kube-version",
            local_cluster.kubernetes_version,
            *VALUE_SETS[values],
        )
        result = local_cluster.kubectl_result(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=chart-schema-test",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            "-",
            input=rendered,
        )
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr, result.stderr
    finally:
        local_cluster.delete_namespace(namespace)

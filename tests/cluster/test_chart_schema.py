"""The Helm chart lints cleanly, every rendered object passes the API server's validation, and
a bad value is refused by name (the fast chart tests skip without helm; here it always exists).

Validation is a server-side dry run of a server-side apply: it checks every object in full (strict
field validation) whatever already exists in the cluster, such as the cluster-scoped DeviceClass of
a release that `make demo` left installed.
"""

from __future__ import annotations

import pytest

from localcluster import ClusterHandle
from tests.support.chartvalues import BAD_VALUES, GOOD_VALUES
from tests.support.hostdriver import CHART

pytestmark = pytest.mark.cluster

# The value sets the fast chart tests lint (tests/unit/test_chart_values.py), checked here
# against the real API server too.
VALUE_SETS = GOOD_VALUES


def test_helm_lint_is_clean(local_cluster: ClusterHandle) -> None:
    out = local_cluster.helm(
        "lint", "--strict", str(CHART), "--kube-version", local_cluster.kubernetes_version
    )
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    ("args", "where", "words"), BAD_VALUES, ids=[" ".join(case[0][1:]) for case in BAD_VALUES]
)
def test_helm_install_refuses_a_bad_value_naming_it(
    local_cluster: ClusterHandle, args: list[str], where: str, words: str
) -> None:
    # --dry-run=server: should a value pass by mistake, nothing is created.
    helm = [str(local_cluster.helm_path), "--kubeconfig", str(local_cluster.kubeconfig)]
    install = ["install", "bad-values", str(CHART), "-n", "default", "--dry-run=server"]
    result = local_cluster.run([*helm, *install, *args], check=False, timeout=120)
    assert result.returncode != 0
    assert where in result.stderr, result.stderr
    assert words in result.stderr, result.stderr


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

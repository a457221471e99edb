"""Namespaces that start with content, on the chart-installed driver: a template namespace's
ConfigMaps and Secrets copied into each new namespace that names it.

The module installs the chart with ``policy.allowedTemplates`` naming one template
namespace (created and labelled first: the chart grants the controller read access there)
and puts the chart back as it was afterwards.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from localcluster import ClusterHandle
from space_dra.contract import DEFAULT_DRIVER_NAME, MANAGED_BY_VALUE, ManagementLabels
from tests.support.chart import ChartRelease
from tests.support.claims import namespace_config
from tests.support.workloads import (
    claim_json,
    claim_manifest,
    managed_namespaces,
    namespace_state,
    pod_manifest,
    wait_claim_failed,
    wait_claim_ready,
)

pytestmark = pytest.mark.e2e

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)
TEMPLATE = "e2e-template"
ALLOWED = "policy.allowedTemplates"


def all_namespaces(cluster: ClusterHandle) -> set[str]:
    """Every namespace but the warm pool's, which refills in the background."""
    items = cluster.kubectl_json("get", "namespaces", "-l", f"!{LABELS.warm}")["items"]
    return {ns["metadata"]["name"] for ns in items}


@pytest.fixture(scope="module")
def template(local_cluster: ClusterHandle, chart: ChartRelease) -> Iterator[str]:
    """The template namespace, with a ConfigMap and a Secret, allowed by the chart's policy."""
    local_cluster.delete_namespace(TEMPLATE, wait=True)
    local_cluster.kubectl("create", "namespace", TEMPLATE)
    local_cluster.kubectl("label", "namespace", TEMPLATE, f"{LABELS.template}=true")
    local_cluster.kubectl(
        "create", "configmap", "settings", "-n", TEMPLATE, "--from-literal=mode=fast"
    )
    local_cluster.kubectl(
        "create", "secret", "generic", "api-token", "-n", TEMPLATE, "--from-literal=token=s3cr3t"
    )
    chart.values[ALLOWED] = "{" + TEMPLATE + "}"
    chart.install()
    try:
        yield TEMPLATE
    finally:
        del chart.values[ALLOWED]
        chart.install()
        local_cluster.delete_namespace(TEMPLATE, wait=True)


def claim_with_template(namespace: str, name: str, template: str) -> str:
    return claim_manifest(namespace, name, config=namespace_config(template=template))


def workload_kubectl(cluster: ClusterHandle, namespace: str, pod: str, args: str) -> Any:
    return cluster.kubectl_result(
        "exec",
        "-n",
        namespace,
        pod,
        "--",
        "sh",
        "-c",
        f"KUBECONFIG=$TMPL_KUBECONFIG kubectl {args} 2>&1",
    )


def test_a_new_namespace_starts_with_the_templates_configmap_and_secret(
    local_cluster: ClusterHandle, template: str, workspace: str
) -> None:
    local_cluster.apply(claim_with_template(workspace, "tmpl", template))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="tmpl"))
    local_cluster.wait_pod_ready(workspace, "p", timeout=150)
    [namespace] = wait_claim_ready(local_cluster, workspace, "tmpl")

    # Readable by the workload, with its own kubeconfig.
    mode = workload_kubectl(
        local_cluster, workspace, "p", "get configmap settings -o jsonpath={.data.mode}"
    )
    assert mode.returncode == 0 and mode.stdout == "fast", mode.stdout
    token = workload_kubectl(
        local_cluster, workspace, "p", "get secret api-token -o jsonpath={.data.token}"
    )
    assert token.returncode == 0, token.stdout
    assert base64.b64decode(token.stdout).decode() == "s3cr3t"

    copy = local_cluster.kubectl_json("get", "configmap", "settings", "-n", namespace)
    assert copy["metadata"]["labels"][LABELS.managed_by] == MANAGED_BY_VALUE
    assert copy["metadata"]["annotations"][LABELS.template_source] == f"{template}/settings"
    # Protected like everything the policy put there.
    deleted = workload_kubectl(local_cluster, workspace, "p", "delete configmap settings")
    assert deleted.returncode != 0 and "put here by the namespace policy" in deleted.stdout

    # A template that changes later does not touch the namespace handed out.
    local_cluster.kubectl("create", "configmap", "later", "-n", template, "--from-literal=x=y")
    local_cluster.kubectl(
        "patch", "configmap", "settings", "-n", template, "-p", '{"data":{"mode":"slow"}}'
    )
    local_cluster.kubectl(
        "label", "resourceclaim", "tmpl", "-n", workspace, "touched=yes", "--overwrite"
    )
    time.sleep(12)  # reconciled again meanwhile: the label, and a resync (10 s here)
    names = local_cluster.kubectl(
        "get", "configmaps", "-n", namespace, "-o", "jsonpath={.items[*].metadata.name}"
    ).split()
    assert "later" not in names
    again = local_cluster.kubectl_json("get", "configmap", "settings", "-n", namespace)
    assert again["data"] == {"mode": "fast"}
    local_cluster.kubectl("delete", "configmap", "later", "-n", template)
    local_cluster.kubectl(
        "patch", "configmap", "settings", "-n", template, "-p", '{"data":{"mode":"fast"}}'
    )


def test_a_template_not_allowed_fails_the_claim_naming_the_field(
    local_cluster: ClusterHandle, template: str, workspace: str
) -> None:
    before = all_namespaces(local_cluster)
    local_cluster.apply(claim_with_template(workspace, "other", "kube-system"))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="other"))
    message = wait_claim_failed(local_cluster, workspace, "other")
    assert "template" in message and "policy.allowedTemplates" in message, message
    assert all_namespaces(local_cluster) - before == set(), "a refused claim makes nothing"


def test_deleting_the_template_fails_claims_naming_it_and_makes_nothing(
    local_cluster: ClusterHandle, template: str, workspace: str
) -> None:
    # Last in the module: the template namespace goes.
    local_cluster.delete_namespace(template, wait=True)
    local_cluster.wait_for(
        "template gone", lambda: namespace_state(local_cluster, template) == "gone", 120
    )
    before = all_namespaces(local_cluster)
    local_cluster.apply(claim_with_template(workspace, "orphan", template))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="orphan"))
    message = wait_claim_failed(local_cluster, workspace, "orphan")
    assert f"template namespace {template} does not exist" in message, message
    uid = claim_json(local_cluster, workspace, "orphan")["metadata"]["uid"]
    assert managed_namespaces(local_cluster, uid) == []
    assert all_namespaces(local_cluster) - before == set()
    events = local_cluster.kubectl_json(
        "get", "events", "-n", workspace, "--field-selector", "involvedObject.name=orphan"
    )["items"]
    assert "NamespaceTemplateUnavailable" in {e["reason"] for e in events}, yaml.safe_dump(events)

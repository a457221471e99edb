"""The chart conventions platform teams expect, each checked on rendered manifests.

Names and overrides, per-component ServiceAccounts, security contexts, scheduling,
image by digest, pull secrets, the controller's PodDisruptionBudget, and labels and
annotations on every object. Needs only helm (skipped without it, like
test_chart_values.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.chartvalues import GOOD_VALUES
from tests.support.helmrender import (
    NAMESPACE,
    container,
    env,
    needs_helm,
    pod_spec,
    render,
    render_error,
    the,
)

pytestmark = needs_helm

COMPONENTS = ("controller", "kubelet-plugin")
VALUE_KEY = {"controller": "controller", "kubelet-plugin": "kubeletPlugin"}
# Values that switch on every optional object, so "every object" means all of them.
EVERYTHING = (
    *("--set", "controller.podDisruptionBudget.enabled=true"),
    *("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.podMonitor.enabled=true"),
    *("--set", "metrics.grafanaDashboard.enabled=true"),
)


def names(docs: list[dict[str, Any]]) -> list[str]:
    """Names the chart derives from the release (the DeviceClass's is deviceClass.name)."""
    return [doc["metadata"]["name"] for doc in docs if doc["kind"] != "DeviceClass"]


def prefixed(name: str, fullname: str) -> bool:
    return name == fullname or name.startswith(f"{fullname}-")


def test_default_names_are_unchanged() -> None:
    docs = render(release="demo")
    assert the(docs, "Deployment")["metadata"]["name"] == "demo-space-dra-controller"
    assert the(docs, "DaemonSet")["metadata"]["name"] == "demo-space-dra-kubelet-plugin"
    assert {doc["metadata"]["labels"]["app.kubernetes.io/name"] for doc in docs} == {"space-dra"}
    # A release whose name already says space-dra is not repeated.
    assert the(render(release="space-dra"), "Deployment")["metadata"]["name"] == (
        "space-dra-controller"
    )


def test_name_override_renames_objects_and_the_name_label() -> None:
    docs = render("--set", "nameOverride=spaces", *EVERYTHING, release="demo")
    assert all(prefixed(name, "demo-spaces") for name in names(docs)), names(docs)
    assert {doc["metadata"]["labels"]["app.kubernetes.io/name"] for doc in docs} == {"spaces"}
    deployment = the(docs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] == "spaces"
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_fullname_override_prefixes_every_object_and_what_refers_to_them() -> None:
    docs = render("--set", "fullnameOverride=dra", *EVERYTHING, release="demo")
    assert all(prefixed(name, "dra") for name in names(docs)), names(docs)
    controller_env = env(docs, "controller")
    assert controller_env["SPACE_DRA_OWNERSHIP_SECRET"] == "dra-ownership"
    assert controller_env["SPACE_DRA_TOKEN_MINTER_ROLE"] == "dra-token-minter"
    assert controller_env["SPACE_DRA_LEASE_NAME"] == "dra-controller"
    assert the(docs, "Lease")["metadata"]["name"] == "dra-controller"


@pytest.mark.parametrize("component", COMPONENTS)
def test_service_account_created_with_annotations_and_used(component: str) -> None:
    key = VALUE_KEY[component]
    docs = render("--set", f"{key}.serviceAccount.annotations.iam=role-x", release="demo")
    account = the(docs, "ServiceAccount", component)
    assert account["metadata"]["name"] == f"demo-space-dra-{component}"
    assert account["metadata"]["annotations"] == {"iam": "role-x"}
    assert pod_spec(docs, component)["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_service_account_named_is_used_everywhere(component: str) -> None:
    key = VALUE_KEY[component]
    docs = render("--set", f"{key}.serviceAccount.name=custom", release="demo")
    assert the(docs, "ServiceAccount", "custom")["metadata"]["name"] == "custom"
    assert pod_spec(docs, component)["serviceAccountName"] == "custom"


@pytest.mark.parametrize("component", COMPONENTS)
def test_service_account_brought_by_the_user(component: str) -> None:
    key = VALUE_KEY[component]
    docs = render(
        *("--set", f"{key}.serviceAccount.create=false", "--set", f"{key}.serviceAccount.name=mine")
    )
    accounts = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    assert [account["metadata"]["name"] for account in accounts] == [
        f"schema-space-dra-{other}" for other in COMPONENTS if other != component
    ]
    assert pod_spec(docs, component)["serviceAccountName"] == "mine"
    # The chart's RBAC is bound to the account the pods run as.
    bindings = [doc for doc in docs if doc["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    subjects = [
        subject["name"]
        for binding in bindings
        if binding["metadata"]["name"].endswith(component)
        for subject in binding["subjects"]
    ]
    assert subjects
    assert set(subjects) == {"mine"}
    if component == "kubelet-plugin":
        # The controller lets this account mint tokens in each namespace it provisions.
        assert env(docs, "controller")["SPACE_DRA_PLUGIN_SERVICE_ACCOUNT"] == f"{NAMESPACE}/mine"


def test_security_contexts_by_default() -> None:
    docs = render()
    controller_pod = pod_spec(docs, "controller")["securityContext"]
    assert controller_pod["runAsNonRoot"] is True
    assert controller_pod["runAsUser"] == 65532
    assert controller_pod["seccompProfile"] == {"type": "RuntimeDefault"}
    plugin_pod = pod_spec(docs, "kubelet-plugin")
    assert plugin_pod["securityContext"]["runAsUser"] == 0
    assert plugin_pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for component in COMPONENTS:
        context = container(docs, component)["securityContext"]
        assert context.get("privileged", False) is False
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
    # The plugin's scratch space, since its root filesystem is read-only.
    mounts = {
        mount["mountPath"]: mount["name"]
        for mount in container(docs, "kubelet-plugin")["volumeMounts"]
    }
    [scratch] = [v for v in plugin_pod["volumes"] if v["name"] == mounts["/tmp"]]
    assert "emptyDir" in scratch


@pytest.mark.parametrize("component", COMPONENTS)
def test_security_contexts_are_values(component: str) -> None:
    """Helm merges a given map into the defaults; null removes a default key."""
    key = VALUE_KEY[component]
    docs = render(
        *("--set-json", f'{key}.podSecurityContext={{"runAsUser": 1234, "fsGroup": 5}}'),
        *("--set-json", f"{key}.podSecurityContext.seccompProfile=null"),
        *("--set-json", f'{key}.securityContext={{"privileged": true}}'),
        *("--set-json", f"{key}.securityContext.capabilities=null"),
    )
    pod = pod_spec(docs, component)["securityContext"]
    assert pod["runAsUser"] == 1234
    assert pod["fsGroup"] == 5
    assert "seccompProfile" not in pod
    context = container(docs, component)["securityContext"]
    assert context["privileged"] is True
    assert "capabilities" not in context


@pytest.mark.parametrize("component", COMPONENTS)
def test_scheduling_values(component: str) -> None:
    key = VALUE_KEY[component]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "dra", "operator": "In", "values": ["yes"]}]}
                ]
            }
        }
    }
    toleration = {"key": "dedicated", "operator": "Equal", "value": "dra", "effect": "NoSchedule"}
    docs = render(
        *("--set-json", f"{key}.affinity={json.dumps(affinity)}"),
        *("--set-json", f'{key}.nodeSelector={{"zone": "a"}}'),
        *("--set-json", f"{key}.tolerations=[{json.dumps(toleration)}]"),
        *("--set", f"{key}.priorityClassName=high"),
    )
    spec = pod_spec(docs, component)
    assert spec["affinity"] == affinity
    assert spec["nodeSelector"] == {"zone": "a"}
    assert spec["tolerations"] == [toleration]
    assert spec["priorityClassName"] == "high"


def test_image_by_digest_replaces_the_tag() -> None:
    digest = "sha256:" + "ab" * 32
    by_tag = render("--set", "image.tag=1.2.3")
    by_digest = render("--set", "image.tag=1.2.3", "--set", f"image.digest={digest}")
    for component in COMPONENTS:
        assert container(by_tag, component)["image"] == "localhost/space-dra/driver:1.2.3"
        assert container(by_digest, component)["image"] == f"localhost/space-dra/driver@{digest}"


def test_image_pull_secrets_on_both_pods() -> None:
    docs = render("--set", "imagePullSecrets[0].name=registry")
    for component in COMPONENTS:
        assert pod_spec(docs, component)["imagePullSecrets"] == [{"name": "registry"}]
    assert "imagePullSecrets" not in pod_spec(render(), "controller")


def test_controller_disruption_budget_is_optional() -> None:
    assert not [doc for doc in render() if doc["kind"] == "PodDisruptionBudget"]
    budget = the(render(*EVERYTHING), "PodDisruptionBudget")
    deployment = the(render(), "Deployment")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"] == {**budget["spec"], "maxUnavailable": 1}
    by_percentage = the(
        render(*EVERYTHING, "--set", "controller.podDisruptionBudget.minAvailable=50%"),
        "PodDisruptionBudget",
    )["spec"]
    assert by_percentage["minAvailable"] == "50%"
    assert "maxUnavailable" not in by_percentage
    # A count given as a string (--set-string) is still a count, not a percentage.
    as_string = the(
        render(*EVERYTHING, "--set-string", "controller.podDisruptionBudget.maxUnavailable=2"),
        "PodDisruptionBudget",
    )["spec"]
    assert as_string["maxUnavailable"] == 2


def test_common_labels_and_annotations_on_every_object_and_pod() -> None:
    docs = render(
        *EVERYTHING,
        *("--set", "commonLabels.team=platform", "--set", "commonAnnotations.owner=ops"),
        *("--set", "controller.serviceAccount.annotations.iam=role"),
    )
    assert len(docs) > 10
    for doc in docs:
        metadata = doc["metadata"]
        where = f"{doc['kind']}/{metadata['name']}"
        assert metadata["labels"]["team"] == "platform", where
        assert metadata["labels"]["app.kubernetes.io/instance"] == "schema", where
        assert metadata.get("annotations", {}).get("owner") == "ops", where
    for component in COMPONENTS:
        kind = "Deployment" if component == "controller" else "DaemonSet"
        pod_labels = the(docs, kind)["spec"]["template"]["metadata"]["labels"]
        assert pod_labels["team"] == "platform"
        assert pod_labels["app.kubernetes.io/component"] == component
    # A specific annotation and the common ones together.
    account = the(docs, "ServiceAccount", "controller")["metadata"]["annotations"]
    assert account == {"iam": "role", "owner": "ops"}


def test_every_convention_at_once_lints_and_renders() -> None:
    docs = render(*GOOD_VALUES["conventions"])
    assert all(prefixed(name, "dra") for name in names(docs))
    assert pod_spec(docs, "kubelet-plugin")["serviceAccountName"] == "node-sa"


def test_a_bad_override_is_refused_naming_it() -> None:
    assert "at '/fullnameOverride'" in render_error("--set", "fullnameOverride=-dra")


def test_plugin_rolls_with_surge_and_waits_for_registration() -> None:
    docs = render()
    daemonset = the(docs, "DaemonSet")
    assert daemonset["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    plugin = container(docs, "kubelet-plugin")
    # Ready means registered (tests/protocol/test_readiness.py); the old pod waits for it.
    assert plugin["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert plugin["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # Per-pod socket names (--rolling-update-uid) let old and new serve side by side.
    [uid] = [item for item in plugin["env"] if item["name"] == "POD_UID"]
    assert uid["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.uid"}}

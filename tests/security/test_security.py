"""What the minted credentials and the driver's own identities can do, and what never leaks.

Permission checks go through the API server's own authorizer (SelfSubjectAccessReview
via ``kubectl auth can-i``), with the real token the plugin mounted into the pod.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import ClusterHandle
from space_dra.contract import DEFAULT_DRIVER_NAME, WORKLOAD_SERVICE_ACCOUNT
from tests.support.hostdriver import HostDriver
from tests.support.workloads import (
    claim_json,
    claim_manifest,
    exec_in,
    pod_manifest,
    wait_claim_failed,
    wait_claim_ready,
)

pytestmark = pytest.mark.security

ARTIFACTS = Path("/var/run/claim-artifacts")
CONFIG = {"apiVersion": "space.resource.example.com/v1alpha1", "kind": "NamespaceConfig"}


@pytest.fixture
def provisioned(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> Iterator[dict[str, str]]:
    local_cluster.apply(claim_manifest(workspace, "sec"))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="sec"))
    local_cluster.wait_pod_ready(workspace, "p", timeout=120)
    [namespace] = wait_claim_ready(local_cluster, workspace, "sec")
    uid = claim_json(local_cluster, workspace, "sec")["metadata"]["uid"]
    yield {
        "workspace": workspace,
        "namespace": namespace,
        "uid": uid,
        "token": (ARTIFACTS / uid / "token").read_text(),
    }


def can_i(
    cluster: ClusterHandle, token: str, verb: str, resource: str, namespace: str | None = None
) -> bool:
    args = [
        str(cluster.kubectl_path),
        "--kubeconfig",
        "/dev/null",
        "--server",
        cluster.api_server,
        "--token",
        token,
    ]
    args += [
        "--certificate-authority",
        str(cluster.state_dir / "pki" / "ca.crt"),
        "auth",
        "can-i",
        verb,
        resource,
    ]
    args += ["-n", namespace] if namespace else []
    # Only the token authenticates: no kubeconfig, no client certificate.
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    result = cluster.run(args, check=False, env=env)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def test_minted_token_can_do_its_role_in_its_namespace_and_nothing_else(
    local_cluster: ClusterHandle, provisioned: dict[str, str]
) -> None:
    token, ns, workspace = provisioned["token"], provisioned["namespace"], provisioned["workspace"]
    expected: list[tuple[str, str, str | None, bool]] = [
        ("create", "pods", ns, True),
        ("create", "deployments.apps", ns, True),
        ("get", "secrets", ns, True),
        ("create", "rolebindings.rbac.authorization.k8s.io", ns, True),
        ("delete", f"namespaces/{ns}", None, False),
        ("update", f"namespaces/{ns}", None, False),
        ("get", "pods", workspace, False),
        ("get", "secrets", "kube-system", False),
        ("get", "secrets", "default", False),
        ("create", "serviceaccounts/token", "kube-system", False),
        ("list", "nodes", None, False),
        ("list", "namespaces", None, False),
        ("create", "namespaces", None, False),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", None, False),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", None, False),
        ("bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin", None, False),
        ("impersonate", "users", None, False),
        # admin (like edit) lets a namespace's users act as its ServiceAccounts: in scope.
        ("impersonate", "serviceaccounts", ns, True),
        ("impersonate", "serviceaccounts", workspace, False),
        ("impersonate", "serviceaccounts", "kube-system", False),
        ("list", "resourceclaims.resource.k8s.io", workspace, False),
        ("update", "resourceclaims.resource.k8s.io/status", workspace, False),
    ]
    matrix = []
    for verb, resource, namespace, allowed in expected:
        got = can_i(local_cluster, token, verb, resource, namespace)
        matrix.append(
            f"{'ALLOW' if got else 'deny '} {verb} {resource} in {namespace or '<cluster>'}"
        )
        assert got == allowed, f"{verb} {resource} in {namespace}: expected {allowed}"
    print("\n".join(["minted-token permission matrix:", *matrix]))


def test_plugin_identity_cannot_provision_or_mint_elsewhere(
    local_cluster: ClusterHandle, host_driver: HostDriver, provisioned: dict[str, str]
) -> None:
    plugin = f"system:serviceaccount:{host_driver.namespace}:{host_driver.plugin_sa}"
    ns = provisioned["namespace"]

    def can(verb: str, resource: str, namespace: str | None = None, name: str = "") -> bool:
        kind, _, subresource = resource.partition("/")
        args = ["auth", "can-i", verb, f"{kind}/{name}" if name else kind, "--as", plugin]
        args += ["-n", namespace] if namespace else []
        args += [f"--subresource={subresource}"] if subresource else []
        out = local_cluster.kubectl_result(*args).stdout.strip()
        return out == "yes"

    assert can("get", "resourceclaims.resource.k8s.io", provisioned["workspace"])
    assert can("create", "serviceaccounts/token", ns, WORKLOAD_SERVICE_ACCOUNT), (
        "mints for the workload SA"
    )
    for verb, resource, namespace, name in [
        ("create", "namespaces", None, ""),
        ("delete", "namespaces", None, ns),
        ("create", "rolebindings.rbac.authorization.k8s.io", ns, ""),
        ("create", "serviceaccounts/token", ns, "default"),
        ("create", "serviceaccounts/token", "kube-system", "default"),
        ("create", "serviceaccounts/token", provisioned["workspace"], "default"),
        ("create", "serviceaccounts/token", host_driver.namespace, host_driver.controller_sa),
        ("get", "secrets", host_driver.namespace, ""),
        ("update", "resourceclaims.resource.k8s.io/status", provisioned["workspace"], ""),
        ("create", "resourceslices.resource.k8s.io", None, ""),
    ]:
        assert not can(verb, resource, namespace, name), (
            f"plugin may {verb} {resource}/{name} in {namespace}"
        )


def test_tokens_never_appear_in_env_specs_logs_events_status_or_checkpoint(
    local_cluster: ClusterHandle, host_driver: HostDriver, provisioned: dict[str, str]
) -> None:
    token = provisioned["token"]
    assert token.count(".") == 2 and len(token) > 100
    places = {
        "container env": exec_in(local_cluster, provisioned["workspace"], "p", "printenv"),
        "CDI spec": "".join(
            p.read_text() for p in Path("/var/run/cdi").glob(f"{DEFAULT_DRIVER_NAME}-*.json")
        ),
        "controller log": host_driver.log("controller.log"),
        "plugin log": host_driver.log("plugin.log"),
        "events": local_cluster.kubectl("get", "events", "-A", "-o", "json"),
        "claim": json.dumps(claim_json(local_cluster, provisioned["workspace"], "sec")),
        "checkpoint": Path(
            "/var/lib/kubelet/plugins", DEFAULT_DRIVER_NAME, "checkpoint.json"
        ).read_text(),
        "kubeconfig": (ARTIFACTS / provisioned["uid"] / "kubeconfig").read_text(),
    }
    for place, text in places.items():
        assert token not in text, f"token found in {place}"
        assert token[-40:] not in text, f"token fragment found in {place}"


def test_artifact_files_have_the_intended_modes(provisioned: dict[str, str]) -> None:
    root = ARTIFACTS.stat()
    assert stat.S_IMODE(root.st_mode) == 0o700 and root.st_uid == 0
    claim_dir = ARTIFACTS / provisioned["uid"]
    assert stat.S_IMODE(claim_dir.stat().st_mode) == 0o755
    for name in ("kubeconfig", "token", "ca.crt", "namespace"):
        target = (claim_dir / name).resolve()
        assert target.is_relative_to(claim_dir.resolve()), "files stay inside the claim's directory"
        info = target.stat()
        assert stat.S_IMODE(info.st_mode) == 0o644 and info.st_uid == 0


def test_running_container_sees_rotated_token(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    host_driver.stop_plugin()
    # 1 % of the one-hour default lifetime: a refresh every ~36 s.
    host_driver.start_plugin("--token-refresh-fraction", "0.01")
    try:
        local_cluster.apply(claim_manifest(workspace, "rot"))
        local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="rot"))
        local_cluster.wait_pod_ready(workspace, "p", timeout=120)
        first = exec_in(local_cluster, workspace, "p", "cat /etc/rot/token")
        deadline = time.monotonic() + 90
        second = first
        while second == first and time.monotonic() < deadline:
            time.sleep(3)
            second = exec_in(local_cluster, workspace, "p", "cat /etc/rot/token")
        assert second != first, "token not rotated within 90 s"
        assert second.count(".") == 2
        out = exec_in(
            local_cluster,
            workspace,
            "p",
            "KUBECONFIG=$ROT_KUBECONFIG kubectl get configmaps -o name",
        )
        assert "configmap/kube-root-ca.crt" in out, (
            "the rotated token works through the same kubeconfig"
        )
    finally:
        host_driver.stop_plugin()
        host_driver.start_plugin()


def _capped_class(local_cluster: ClusterHandle, name: str, policy: dict[str, Any]) -> None:
    local_cluster.apply(
        yaml.safe_dump(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "DeviceClass",
                "metadata": {"name": name},
                "spec": {
                    "selectors": [
                        {"cel": {"expression": f"device.driver == '{DEFAULT_DRIVER_NAME}'"}}
                    ],
                    "config": [
                        {
                            "opaque": {
                                "driver": DEFAULT_DRIVER_NAME,
                                "parameters": {**CONFIG, "policy": policy},
                            }
                        }
                    ],
                },
            }
        )
    )


@pytest.mark.parametrize(
    ("policy", "request_", "words"),
    [
        ({}, {"role": "cluster-admin"}, "'cluster-admin' is not allowed"),
        ({"maxQuota": {"pods": "5"}}, {"quota": {"pods": "50"}}, "exceeds the policy maximum 5"),
        (
            {"minPodSecurity": "restricted"},
            {"podSecurity": "privileged"},
            "below the policy minimum",
        ),
        ({}, {"labels": {"space.resource.example.com/claim-uid": "x"}}, "unknown field 'labels'"),
        ({}, {"namespace": "kube-system"}, "unknown field 'namespace'"),
        ({}, {"generateName": "kube-system-"}, "reserved prefix"),
        (
            {"allowedNamePrefixes": ["team-"]},
            {"generateName": "default-"},
            "must start with one of team-",
        ),
    ],
    ids=[
        "role",
        "quota",
        "pod-security",
        "labels",
        "existing-namespace",
        "kube-prefix",
        "name-prefix",
    ],
)
def test_claim_config_cannot_exceed_policy(
    local_cluster: ClusterHandle,
    host_driver: HostDriver,
    workspace: str,
    policy: dict[str, Any],
    request_: dict[str, Any],
    words: str,
) -> None:
    device_class = f"space-policy-{workspace}"
    _capped_class(local_cluster, device_class, policy)
    try:
        before = {
            n["metadata"]["name"] for n in local_cluster.kubectl_json("get", "namespaces")["items"]
        }
        local_cluster.apply(
            claim_manifest(
                workspace, "ask", config={**CONFIG, **request_}, device_class=device_class
            )
        )
        local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="ask"))
        message = wait_claim_failed(local_cluster, workspace, "ask")
        assert words in message
        after = {
            n["metadata"]["name"] for n in local_cluster.kubectl_json("get", "namespaces")["items"]
        }
        assert after - before == set(), "a rejected claim creates nothing"
    finally:
        local_cluster.kubectl(
            "delete", "pod", "p", "-n", workspace, "--ignore-not-found", "--wait=true"
        )
        local_cluster.kubectl(
            "delete", "resourceclaim", "ask", "-n", workspace, "--ignore-not-found"
        )
        local_cluster.kubectl("delete", "deviceclass", device_class, "--ignore-not-found")


def test_admin_access_is_rejected(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    """docs/security.md, "Admin access": refused whatever the policy says, at admission for
    the chart's DeviceClass and by the controller for any other class."""
    # The API only allows adminAccess in namespaces labelled for it.
    local_cluster.kubectl(
        "label", "namespace", workspace, "resource.kubernetes.io/admin-access=true"
    )

    def admin_claim(device_class: str) -> str:
        claim = yaml.safe_load(claim_manifest(workspace, "admin", device_class=device_class))
        claim["spec"]["devices"]["requests"][0]["exactly"]["adminAccess"] = True
        return str(yaml.safe_dump(claim))

    refused = local_cluster.kubectl_result(
        "apply", "-f", "-", input=admin_claim(DEFAULT_DRIVER_NAME)
    )
    assert refused.returncode != 0
    assert "adminAccess is not supported" in refused.stderr, refused.stderr

    device_class = f"space-admin-{workspace}"
    _capped_class(local_cluster, device_class, {})
    try:
        local_cluster.apply(admin_claim(device_class))
        local_cluster.apply(
            pod_manifest(workspace, "p", local_cluster.testbox_image, claim="admin")
        )
        message = wait_claim_failed(local_cluster, workspace, "admin")
        assert "adminAccess" in message and "does not support" in message
        uid = claim_json(local_cluster, workspace, "admin")["metadata"]["uid"]
        assert not local_cluster.kubectl(
            "get", "namespaces", "-l", f"space.resource.example.com/claim-uid={uid}", "-o", "name"
        ).strip()
    finally:
        local_cluster.kubectl(
            "delete", "pod", "p", "-n", workspace, "--ignore-not-found", "--wait=true"
        )
        local_cluster.kubectl(
            "delete", "resourceclaim", "admin", "-n", workspace, "--ignore-not-found"
        )
        local_cluster.kubectl("delete", "deviceclass", device_class, "--ignore-not-found")

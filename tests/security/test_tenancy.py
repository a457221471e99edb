"""Tenancy, tried as an attacker would: a node, a tenant, a workload holding the credentials,
the controller itself. Every refusal here comes from the API server (the chart's admission
policies in templates/tenancy.yaml, applied by the host driver like the chart does), not from
the driver's own code: the requests are made directly, bypassing it.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import ClusterHandle
from space_dra.contract import (
    DEFAULT_DRIVER_NAME,
    NETWORK_POLICY_NAME,
    QUOTA_NAME,
    TOKEN_MINTER_BINDING,
    WORKLOAD_SERVICE_ACCOUNT,
    ManagementLabels,
)
from tests.support.hostdriver import HostDriver
from tests.support.workloads import (
    claim_json,
    claim_manifest,
    pod_manifest,
    wait_claim_ready,
)

pytestmark = pytest.mark.security

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)
ARTIFACTS = Path("/var/run/claim-artifacts")  # the host plugin's, on the first node
CONFIG = {"apiVersion": "space.resource.example.com/v1alpha1", "kind": "NamespaceConfig"}


class Api:
    """Raw API calls with one bearer token: no kubeconfig, no client certificate."""

    def __init__(self, cluster: ClusterHandle, token: str) -> None:
        self.cluster = cluster
        self.token = token
        self.context = ssl.create_default_context(cafile=str(cluster.state_dir / "pki" / "ca.crt"))

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        """(HTTP status, the API server's message)."""
        status, answer = self.request(method, path, body)
        return status, str(answer.get("message", ""))

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.cluster.api_server + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def mint(
        self, namespace: str, *, claim_uid: str = "", node: str = "", seconds: int = 3600
    ) -> tuple[int, str]:
        """A TokenRequest for the workload ServiceAccount, as the plugin makes it."""
        spec: dict[str, Any] = {"audiences": [], "expirationSeconds": seconds}
        if node:
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Node", "name": node}
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"annotations": {LABELS.claim_uid: claim_uid} if claim_uid else {}},
            "spec": spec,
        }
        return self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{WORKLOAD_SERVICE_ACCOUNT}/token",
            body,
        )


def plugin_token(cluster: ClusterHandle, driver: HostDriver, node: str | None) -> str:
    """A token of the plugin's ServiceAccount, bound to ``node`` like a plugin pod's own."""
    bound = ["--bound-object-kind", "Node", "--bound-object-name", node] if node else []
    return cluster.kubectl(
        "create", "token", driver.plugin_sa, "-n", driver.namespace, "--duration", "1h", *bound
    ).strip()


@pytest.fixture
def provisioned(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> Iterator[dict[str, str]]:
    """A claim in use by a pod on the host plugin's node, its namespace isolated by policy."""
    config = {**CONFIG, "networkPolicy": "deny-all", "quota": {"pods": "5"}, "role": "admin"}
    local_cluster.apply(claim_manifest(workspace, "ten", config=config))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="ten"))
    local_cluster.wait_pod_ready(workspace, "p", timeout=120)
    [namespace] = wait_claim_ready(local_cluster, workspace, "ten")
    uid = claim_json(local_cluster, workspace, "ten")["metadata"]["uid"]
    yield {"workspace": workspace, "namespace": namespace, "uid": uid}


@pytest.fixture
def bare_node(local_cluster: ClusterHandle) -> Iterator[str]:
    """A Node object with no kubelet behind it: an identity a stolen token can be bound to."""
    name = f"bare-{uuid.uuid4().hex[:6]}"
    local_cluster.apply(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    )
    yield name
    local_cluster.kubectl("delete", "node", name, "--ignore-not-found")


def test_a_node_mints_only_for_claims_with_a_pod_on_it(
    local_cluster: ClusterHandle,
    host_driver: HostDriver,
    provisioned: dict[str, str],
    bare_node: str,
) -> None:
    ns, uid, node = provisioned["namespace"], provisioned["uid"], host_driver.node_name
    annotations = local_cluster.kubectl_json("get", "namespace", ns)["metadata"]["annotations"]
    assert annotations[LABELS.nodes] == node, "the controller records the pod's node"

    real = Api(local_cluster, plugin_token(local_cluster, host_driver, node))
    assert real.mint(ns, claim_uid=uid, node=node)[0] == 201, "the pod's node may mint"

    attempts = {
        "a token bound to another node": Api(
            local_cluster, plugin_token(local_cluster, host_driver, bare_node)
        ).mint(ns, claim_uid=uid, node=bare_node),
        "a token bound to no node": Api(
            local_cluster, plugin_token(local_cluster, host_driver, None)
        ).mint(ns, claim_uid=uid, node=node),
        "another claim's UID": real.mint(ns, claim_uid=str(uuid.uuid4()), node=node),
        "a token not bound to the node": real.mint(ns, claim_uid=uid),
        "a token bound to another Node": real.mint(ns, claim_uid=uid, node=bare_node),
        "a lifetime over the policy": real.mint(ns, claim_uid=uid, node=node, seconds=172800),
    }
    for attack, (status, message) in attempts.items():
        print(f"{attack}: {status} {message}")
        assert status == 403, f"{attack} was allowed"
        assert "space-dra" in message, f"{attack}: refused by RBAC, not by the policy: {message}"


def test_the_minted_token_is_bound_to_the_node(
    local_cluster: ClusterHandle, host_driver: HostDriver, provisioned: dict[str, str]
) -> None:
    token = (ARTIFACTS / provisioned["uid"] / "token").read_text()
    status, review = Api(local_cluster, token).request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    assert status == 201, review
    extra = review["status"]["userInfo"].get("extra", {})
    assert extra.get("authentication.kubernetes.io/node-name") == [host_driver.node_name]


def test_the_workload_cannot_undo_its_namespace_policy(
    local_cluster: ClusterHandle, provisioned: dict[str, str]
) -> None:
    ns = provisioned["namespace"]
    token = local_cluster.kubectl(
        "create", "token", WORKLOAD_SERVICE_ACCOUNT, "-n", ns, "--duration", "1h"
    ).strip()
    workload = Api(local_cluster, token)
    allow_all = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all"},
        "spec": {"podSelector": {}, "ingress": [{}], "egress": [{}]},
    }
    nested = yaml.safe_load(claim_manifest(ns, "nested"))
    netpol = f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
    attempts = {
        "delete the NetworkPolicy": workload.call("DELETE", f"{netpol}/{NETWORK_POLICY_NAME}"),
        "add an allow-all NetworkPolicy": workload.call("POST", netpol, allow_all),
        "raise the quota": workload.call(
            "PUT",
            f"/api/v1/namespaces/{ns}/resourcequotas/{QUOTA_NAME}",
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": QUOTA_NAME, "namespace": ns},
                "spec": {"hard": {"pods": "1000"}},
            },
        ),
        "delete the quota": workload.call(
            "DELETE", f"/api/v1/namespaces/{ns}/resourcequotas/{QUOTA_NAME}"
        ),
        "delete the token-minter binding": workload.call(
            "DELETE", f"{rbac}/{TOKEN_MINTER_BINDING}"
        ),
        "mint a token for two days": workload.mint(ns, seconds=172800),
        "claim a namespace inside it": workload.call(
            "POST", f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims", nested
        ),
    }
    # admin and edit cannot touch quotas by RBAC already; a custom role that can still
    # meets the admission policy. Everything else the role allows, so the policy refuses it.
    refused_by_rbac_too = {"raise the quota", "delete the quota"}
    for attack, (status, message) in attempts.items():
        print(f"{attack}: {status} {message}")
        assert status == 403, f"the workload could {attack}"
        if attack not in refused_by_rbac_too:
            assert "space-dra" in message, f"{attack}: not refused by the policy: {message}"
    # Within the policy it still works: a short token, its own objects.
    assert workload.mint(ns, seconds=1800)[0] == 201


def test_a_claim_cannot_take_the_pool(local_cluster: ClusterHandle, workspace: str) -> None:
    shapes: dict[str, dict[str, Any]] = {
        "too-many": {"exactly": {"deviceClassName": DEFAULT_DRIVER_NAME, "count": 5}},
        "all": {"exactly": {"deviceClassName": DEFAULT_DRIVER_NAME, "allocationMode": "All"}},
        "alternatives": {
            "firstAvailable": [{"name": "big", "deviceClassName": DEFAULT_DRIVER_NAME, "count": 9}]
        },
    }
    for name, request in shapes.items():
        claim: dict[str, Any] = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": workspace},
            "spec": {"devices": {"requests": [{"name": "ns", **request}]}},
        }
        template = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": workspace},
            "spec": {"spec": claim["spec"]},
        }
        for obj in (claim, template):
            result = local_cluster.kubectl_result("create", "-f", "-", input=json.dumps(obj))
            print(f"{obj['kind']} {name}: {result.stderr.strip()}")
            assert result.returncode != 0, f"{obj['kind']} {name} was admitted"
            assert "space-dra" in result.stderr and "Forbidden" in result.stderr.replace(
                "forbidden", "Forbidden"
            )


def test_a_per_namespace_quota_caps_each_tenant(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    """The documented recipe (docs/security.md): a ResourceQuota on the DeviceClass."""
    resource = f"{DEFAULT_DRIVER_NAME}.deviceclass.resource.k8s.io/devices"
    local_cluster.apply(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "namespaces", "namespace": workspace},
                "spec": {"hard": {resource: "2"}},
            }
        )
    )
    local_cluster.wait_for(
        "the quota counted",
        lambda: (
            resource
            in local_cluster.kubectl_json("get", "resourcequota", "namespaces", "-n", workspace)
            .get("status", {})
            .get("hard", {})
        ),
    )
    local_cluster.apply(claim_manifest(workspace, "first", count=2))
    result = local_cluster.kubectl_result(
        "create", "-f", "-", input=claim_manifest(workspace, "third")
    )
    assert result.returncode != 0 and "exceeded quota" in result.stderr, result.stderr


def test_the_controller_cannot_reach_outside_what_it_manages(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    token = local_cluster.kubectl(
        "create", "token", host_driver.controller_sa, "-n", host_driver.namespace
    ).strip()
    controller = Api(local_cluster, token)
    me = f"system:serviceaccount:{host_driver.namespace}:{host_driver.controller_sa}"
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "escalate"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "admin",
        },
        "subjects": [{"kind": "User", "name": me}],
    }
    attempts = {
        "bind admin in kube-system": controller.call(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings",
            binding,
        ),
        "create an unlabelled namespace": controller.call(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "free-rein"}},
        ),
        "delete a tenant's namespace": controller.call(
            "DELETE", f"/api/v1/namespaces/{workspace}?dryRun=All"
        ),
        "write another driver's ResourceSlice": controller.call(
            "POST",
            "/apis/resource.k8s.io/v1/resourceslices?dryRun=All",
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceSlice",
                "metadata": {"name": "foreign"},
                "spec": {
                    "driver": "gpu.example.com",
                    "pool": {"name": "p", "generation": 1, "resourceSliceCount": 1},
                    "allNodes": True,
                    "devices": [{"name": "d"}],
                },
            },
        ),
    }
    for attack, (status, message) in attempts.items():
        print(f"{attack}: {status} {message}")
        assert status == 403 and "space-dra" in message, f"the controller could {attack}"


def test_policy_fails_closed_for_a_class_without_our_config(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"allowedRoles": ["view"], "minPodSecurity": "restricted"}))
    host_driver.stop_controller()
    host_driver.start_controller("--policy-file", str(policy))
    bare_class = f"bare-{uuid.uuid4().hex[:6]}"
    local_cluster.apply(
        yaml.safe_dump(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "DeviceClass",
                "metadata": {"name": bare_class},
                "spec": {
                    "selectors": [
                        {"cel": {"expression": f'device.driver == "{DEFAULT_DRIVER_NAME}"'}}
                    ]
                },
            }
        )
    )
    try:
        local_cluster.apply(claim_manifest(workspace, "plain", device_class=bare_class))
        local_cluster.apply(
            pod_manifest(workspace, "p", local_cluster.testbox_image, claim="plain")
        )
        [ns] = wait_claim_ready(local_cluster, workspace, "plain", timeout=90)
        binding = local_cluster.kubectl_json("get", "rolebinding", "space-user", "-n", ns)
        assert binding["roleRef"]["name"] == "view", "the installation's policy, not the defaults"
        labels = local_cluster.kubectl_json("get", "namespace", ns)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    finally:
        local_cluster.kubectl("delete", "deviceclass", bare_class, "--ignore-not-found")
        host_driver.stop_controller()
        host_driver.start_controller()

"""Controller and plugin against the real API server, scheduler, kubelet and containerd."""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path

import pytest
import yaml

from localcluster import ClusterHandle
from space_dra.contract import TOKEN_MINTER_BINDING, WORKLOAD_BINDING, WORKLOAD_SERVICE_ACCOUNT
from tests.support.features import binding_conditions_available
from tests.support.hostdriver import HostDriver, metric
from tests.support.workloads import (
    LABELS,
    assert_pod_told_of_refusal,
    claim_json,
    claim_manifest,
    events_for,
    exec_in,
    managed_namespaces,
    namespace_state,
    our_device_statuses,
    pod_manifest,
    template_manifest,
    wait_claim_failed,
    wait_claim_ready,
    wait_namespace_released,
)

pytestmark = pytest.mark.integration


def test_pool_is_published_with_binding_conditions_where_the_cluster_has_them(
    local_cluster: ClusterHandle, host_driver: HostDriver
) -> None:
    slices = local_cluster.kubectl_json(
        "get", "resourceslices", "--field-selector", f"spec.driver={host_driver.driver}"
    )["items"]
    assert len(slices) == 1
    spec = slices[0]["spec"]
    assert spec["allNodes"] is True
    assert spec["pool"]["name"] == "space"
    assert spec["pool"]["resourceSliceCount"] == 1
    devices = spec["devices"]
    assert [d["name"] for d in devices] == [f"slot-{i}" for i in range(host_driver.pool_size)]
    assert devices[0]["attributes"]["profile"] == {"string": "standard"}
    if binding_conditions_available(local_cluster):
        assert devices[0]["bindingConditions"] == ["NamespaceReady"]
        assert devices[0]["bindingFailureConditions"] == ["NamespaceFailed"]
    else:  # --binding-conditions=auto fell back to plain devices
        assert "bindingConditions" not in devices[0]
        assert "binding_conditions_unsupported" in host_driver.log("controller.log")


def test_deleted_slice_is_recreated(local_cluster: ClusterHandle, host_driver: HostDriver) -> None:
    name = f"{host_driver.driver}-space-0"
    before = local_cluster.kubectl_json("get", "resourceslice", name)
    local_cluster.kubectl("delete", "resourceslice", name)
    local_cluster.wait_for(
        "slice re-created",
        lambda: local_cluster.kubectl_result("get", "resourceslice", name).returncode == 0,
        timeout=30,
    )
    after = local_cluster.kubectl_json("get", "resourceslice", name)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert after["spec"]["pool"]["generation"] > before["spec"]["pool"]["generation"]


def test_shared_claim_gives_both_pods_one_working_namespace(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    image = local_cluster.testbox_image
    local_cluster.apply(claim_manifest(workspace, "test-claim"))
    for pod in ("pod0", "pod1"):
        local_cluster.apply(pod_manifest(workspace, pod, image, claim="test-claim"))
    for pod in ("pod0", "pod1"):
        local_cluster.wait_pod_ready(workspace, pod, timeout=90)

    [namespace] = wait_claim_ready(local_cluster, workspace, "test-claim")
    claim = claim_json(local_cluster, workspace, "test-claim")
    [status] = our_device_statuses(claim)
    assert status["data"] == {
        "namespace": namespace,
        "serviceAccount": WORKLOAD_SERVICE_ACCOUNT,
        "server": "https://kubernetes.default.svc",
    }
    assert namespace.startswith("ephemeral-ns-")

    envs = [
        dict(
            line.split("=", 1)
            for line in exec_in(local_cluster, workspace, pod, "printenv").splitlines()
            if "=" in line
        )
        for pod in ("pod0", "pod1")
    ]
    for env in envs:
        assert env["DRA_RESOURCE_DRIVER_NAME"] == host_driver.driver
        assert env["TEST_CLAIM_NAMESPACE"] == namespace
        assert env["TEST_CLAIM_CLUSTER"] == "https://kubernetes.default.svc"
        assert env["TEST_CLAIM_KUBECONFIG"] == "/etc/test-claim/kubeconfig"
        assert not any("eyJ" in value for value in env.values()), "no token in env"

    script = (
        "export KUBECONFIG=$TEST_CLAIM_KUBECONFIG;"
        " kubectl create configmap it --from-literal=a=b >/dev/null &&"
        " kubectl get configmap it -o name"
    )
    assert exec_in(local_cluster, workspace, "pod1", script).strip() == "configmap/it"
    denied = local_cluster.kubectl_result(
        "exec",
        "-n",
        workspace,
        "pod0",
        "--",
        "sh",
        "-c",
        f"KUBECONFIG=$TEST_CLAIM_KUBECONFIG kubectl get pods -n {workspace}",
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    ns = local_cluster.kubectl_json("get", "namespace", namespace)
    labels = ns["metadata"]["labels"]
    assert labels[LABELS.claim_uid] == claim["metadata"]["uid"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert ns["metadata"]["annotations"][LABELS.claim_ref] == f"{workspace}/test-claim"
    assert ns["metadata"]["annotations"][LABELS.ownership].startswith("v1:")
    bindings = {
        b["metadata"]["name"]: b
        for b in local_cluster.kubectl_json("get", "rolebindings", "-n", namespace)["items"]
    }
    assert bindings[WORKLOAD_BINDING]["roleRef"]["name"] == "admin"
    minter = bindings[TOKEN_MINTER_BINDING]
    assert minter["roleRef"]["name"] == host_driver.token_minter
    assert minter["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": host_driver.plugin_sa,
            "namespace": host_driver.namespace,
        }
    ]
    reasons = {e["reason"] for e in events_for(local_cluster, workspace, "test-claim")}
    assert "NamespaceProvisioned" in reasons

    uid = claim["metadata"]["uid"]
    assert _cdi_specs(uid), "the plugin wrote a CDI spec on this node"
    started = time.monotonic()
    local_cluster.kubectl("delete", "pod", "pod0", "pod1", "-n", workspace, "--wait=true")
    local_cluster.kubectl("delete", "resourceclaim", "test-claim", "-n", workspace, "--wait=true")
    wait_namespace_released(local_cluster, namespace, timeout=60)
    released_after = time.monotonic() - started
    assert released_after < 60
    assert not _cdi_specs(uid)
    assert not _artifact_dirs(uid)


def test_template_claims_give_one_namespace_per_pod(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    local_cluster.apply(template_manifest(workspace, "workspace"))
    for pod in ("a", "b"):
        local_cluster.apply(
            pod_manifest(
                workspace,
                pod,
                local_cluster.testbox_image,
                template="workspace",
                pod_claim_name="my-space",
            )
        )
    namespaces = []
    for pod in ("a", "b"):
        local_cluster.wait_pod_ready(workspace, pod, timeout=90)
        env = exec_in(
            local_cluster, workspace, pod, "echo $MY_SPACE_NAMESPACE $MY_SPACE_KUBECONFIG"
        ).split()
        assert env[1] == "/etc/my-space/kubeconfig"
        namespaces.append(env[0])
    assert len(set(namespaces)) == 2
    local_cluster.kubectl("delete", "pod", "a", "b", "-n", workspace, "--wait=true")
    for namespace in namespaces:
        wait_namespace_released(local_cluster, namespace, timeout=60)


def test_several_devices_in_one_claim_give_several_namespaces(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    local_cluster.apply(claim_manifest(workspace, "pair", count=2))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="pair"))
    local_cluster.wait_pod_ready(workspace, "p", timeout=90)
    namespaces = wait_claim_ready(local_cluster, workspace, "pair")
    assert len(set(namespaces)) == 2
    seen = exec_in(
        local_cluster, workspace, "p", "echo $PAIR_0_NAMESPACE $PAIR_1_NAMESPACE"
    ).split()
    assert sorted(seen) == sorted(namespaces)


def test_invalid_config_fails_cleanly_with_nothing_created(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    config = {
        "apiVersion": "space.resource.example.com/v1alpha1",
        "kind": "NamespaceConfig",
        "role": "cluster-admin",
    }
    local_cluster.apply(claim_manifest(workspace, "greedy", config=config))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="greedy"))
    message = wait_claim_failed(local_cluster, workspace, "greedy")
    assert "role" in message and "cluster-admin" in message and "choose one of" in message
    uid = claim_json(local_cluster, workspace, "greedy")["metadata"]["uid"]
    assert managed_namespaces(local_cluster, uid) == []
    assert_pod_told_of_refusal(local_cluster, workspace, "p", "InvalidNamespaceConfig")
    # The scheduler re-allocates the claim every few seconds; the refusal is not repeated.
    time.sleep(15)
    refused = [
        e
        for e in events_for(local_cluster, workspace, "greedy")
        if e["reason"] == "InvalidNamespaceConfig"
    ]
    assert len(refused) == 1, refused


def test_objects_the_api_server_rejects_fail_the_claim_and_leave_nothing(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    # Passes our parser (any resource name is a valid key) but not the API server's
    # ResourceQuota validation: only known resources can be limited.
    config = {
        "apiVersion": "space.resource.example.com/v1alpha1",
        "kind": "NamespaceConfig",
        "quota": {"widgets": "1"},
    }
    local_cluster.apply(claim_manifest(workspace, "odd", config=config))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="odd"))
    message = wait_claim_failed(local_cluster, workspace, "odd")
    assert "rejected" in message and "widgets" in message, message
    uid = claim_json(local_cluster, workspace, "odd")["metadata"]["uid"]
    # The namespace was made before the API server refused its quota; GC removes it.
    local_cluster.wait_for(
        "half-made namespace removed", lambda: managed_namespaces(local_cluster, uid) == [], 30
    )
    warnings = [e for e in events_for(local_cluster, workspace, "odd") if e["type"] == "Warning"]
    assert any(e["reason"] == "NamespaceRejected" for e in warnings)
    assert_pod_told_of_refusal(local_cluster, workspace, "p", "NamespaceRejected")
    # The scheduler answers the failure by re-allocating the claim about every 7 s; the
    # same config is refused from memory then, without making another namespace.
    time.sleep(15)
    rejected = [
        e for e in events_for(local_cluster, workspace, "odd") if e["reason"] == "NamespaceRejected"
    ]
    assert len(rejected) == 1, rejected
    assert managed_namespaces(local_cluster, uid) == []


def test_binding_waits_for_the_namespace_and_a_restarted_controller_catches_up(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    host_driver.stop_controller()
    try:
        local_cluster.apply(claim_manifest(workspace, "later"))
        local_cluster.apply(
            pod_manifest(workspace, "p", local_cluster.testbox_image, claim="later")
        )
        local_cluster.wait_for(
            "claim allocated",
            lambda: bool(
                claim_json(local_cluster, workspace, "later").get("status", {}).get("allocation")
            ),
            timeout=30,
        )
        time.sleep(2)
        pod = local_cluster.kubectl_json("get", "pod", "p", "-n", workspace)
        if binding_conditions_available(local_cluster):
            assert not pod["spec"].get("nodeName"), "bound before the namespace was ready"
            reasons = {e["reason"] for e in events_for(local_cluster, workspace, "p")}
            assert "BindingConditionsPending" in reasons
        else:
            # Bound at once; the plugin's bounded wait fails the prepare, the kubelet retries.
            local_cluster.wait_for(
                "the plugin's bounded wait to end in a prepare failure",
                lambda: any(
                    e["reason"] == "FailedPrepareDynamicResources"
                    for e in events_for(local_cluster, workspace, "p")
                ),
                timeout=90,
            )
            assert not _ready(local_cluster, workspace, "p"), "started without a namespace"
    finally:
        host_driver.start_controller()
    # Without binding conditions the kubelet's back-off decides when it prepares again.
    local_cluster.wait_pod_ready(workspace, "p", timeout=180)
    assert len(wait_claim_ready(local_cluster, workspace, "later")) == 1


def _ready(cluster: ClusterHandle, namespace: str, pod: str) -> bool:
    status = cluster.kubectl_json("get", "pod", pod, "-n", namespace)["status"]
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def test_crash_after_namespace_create_is_adopted_and_duplicates_collapse(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    """Simulate a controller killed right after creating namespaces, twice over."""
    from space_dra.config import Settings
    from space_dra.contract import DeviceRef
    from space_dra.controller.manifests import namespace_object, random_name
    from space_dra.controller.ownership import Signer

    host_driver.stop_controller(signal.SIGKILL)
    try:
        local_cluster.apply(claim_manifest(workspace, "crashy"))
        local_cluster.apply(
            pod_manifest(workspace, "p", local_cluster.testbox_image, claim="crashy")
        )
        local_cluster.wait_for(
            "claim allocated",
            lambda: bool(
                claim_json(local_cluster, workspace, "crashy").get("status", {}).get("allocation")
            ),
            timeout=30,
        )
        claim = claim_json(local_cluster, workspace, "crashy")
        uid = claim["metadata"]["uid"]
        result = claim["status"]["allocation"]["devices"]["results"][0]
        device = DeviceRef(result["request"], result["pool"], result["device"])
        secret = local_cluster.kubectl_json(
            "get", "secret", f"{host_driver.fullname}-ownership", "-n", host_driver.namespace
        )
        signer = Signer(base64.b64decode(secret["data"]["hmac-key"]))
        made = []
        for _ in range(2):
            name = random_name("ephemeral-ns-")
            obj = namespace_object(
                LABELS, signer, name, uid, f"{workspace}/crashy", device, Settings()
            )
            local_cluster.apply(yaml.safe_dump(obj.to_dict()))
            made.append(name)
            time.sleep(1.1)  # distinct creationTimestamps: the oldest is adopted
    finally:
        host_driver.start_controller()
    [recorded] = wait_claim_ready(local_cluster, workspace, "crashy")
    assert recorded == made[0], "the oldest existing namespace is adopted, none created"
    wait_namespace_released(local_cluster, made[1], timeout=30)
    assert [ns["metadata"]["name"] for ns in managed_namespaces(local_cluster, uid)] == [made[0]]
    local_cluster.wait_pod_ready(workspace, "p", timeout=90)


@pytest.mark.security
def test_impostor_namespaces_survive_gc(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    """Labels (and even a copied signature) never make the controller delete a namespace."""
    local_cluster.apply(claim_manifest(workspace, "real"))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="real"))
    [genuine] = wait_claim_ready(local_cluster, workspace, "real")
    source = local_cluster.kubectl_json("get", "namespace", genuine)["metadata"]
    impostors = []
    for suffix, copied in (("labels-only", {}), ("copied-signature", source["annotations"])):
        name = f"impostor-{suffix}-{workspace}"[:63]
        labels = {**source["labels"], LABELS.claim_uid: "00000000-0000-4000-8000-000000000000"}
        local_cluster.apply(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels, "annotations": copied},
                }
            )
        )
        impostors.append(name)
    try:
        time.sleep(host_driver.resync_seconds * 2 + 2)  # at least one full GC sweep
        for name in impostors:
            assert namespace_state(local_cluster, name) == "Active", f"{name} was deleted"
        assert (
            metric(host_driver.controller_metrics(), "space_dra_controller_namespaces_unverified")
            >= 2
        )
        assert "namespace_unverified" in host_driver.log("controller.log")
    finally:
        for name in impostors:
            local_cluster.kubectl("delete", "namespace", name, "--wait=false")


def test_pool_exhaustion_leaves_pods_pending_until_a_slot_frees(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    image = local_cluster.testbox_image
    for i in range(host_driver.pool_size):
        local_cluster.apply(claim_manifest(workspace, f"c{i}"))
        local_cluster.apply(pod_manifest(workspace, f"p{i}", image, claim=f"c{i}"))
    for i in range(host_driver.pool_size):
        local_cluster.wait_pod_ready(workspace, f"p{i}", timeout=120)
    local_cluster.apply(claim_manifest(workspace, "extra"))
    local_cluster.apply(pod_manifest(workspace, "waiting", image, claim="extra"))

    def unschedulable() -> bool:
        pod = local_cluster.kubectl_json("get", "pod", "waiting", "-n", workspace)
        conditions = pod["status"].get("conditions", [])
        return any(
            c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions
        )

    local_cluster.wait_for("extra pod unschedulable", unschedulable, timeout=60)
    pod = local_cluster.kubectl_json("get", "pod", "waiting", "-n", workspace)
    message = next(c["message"] for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert "claim" in message.lower()
    local_cluster.kubectl("delete", "pod", "p0", "-n", workspace, "--wait=true")
    local_cluster.kubectl("delete", "resourceclaim", "c0", "-n", workspace, "--wait=true")
    local_cluster.wait_pod_ready(workspace, "waiting", timeout=120)


def test_writes_per_claim_lifecycle_stay_small(
    local_cluster: ClusterHandle, host_driver: HostDriver, workspace: str
) -> None:
    before = _writes(host_driver)
    local_cluster.apply(claim_manifest(workspace, "counted"))
    local_cluster.apply(pod_manifest(workspace, "p", local_cluster.testbox_image, claim="counted"))
    [namespace] = wait_claim_ready(local_cluster, workspace, "counted")
    local_cluster.wait_pod_ready(workspace, "p", timeout=90)
    local_cluster.kubectl("delete", "pod", "p", "-n", workspace, "--wait=true")
    local_cluster.kubectl("delete", "resourceclaim", "counted", "-n", workspace, "--wait=true")
    wait_namespace_released(local_cluster, namespace)
    time.sleep(1)
    after = _writes(host_driver)
    delta = {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if after[key] != before.get(key, 0.0)
    }
    assert sum(delta.values()) <= 10, f"writes for one claim lifecycle: {delta}"


def test_zz_nothing_leaked(local_cluster: ClusterHandle, host_driver: HostDriver) -> None:
    """After every other test's workspace is gone, no managed namespace or file remains."""
    local_cluster.wait_for(
        "managed namespaces gone", lambda: managed_namespaces(local_cluster) == [], timeout=90
    )
    local_cluster.wait_for("CDI specs gone", lambda: not _cdi_specs(""), timeout=60)
    assert not _artifact_dirs("")
    prepared = json.loads(_checkpoint_text() or '{"claims": {}}')["claims"]
    assert prepared == {}


def _writes(driver: HostDriver) -> dict[str, float]:
    samples = {}
    for line in driver.controller_metrics().splitlines():
        # Lease renewals are per time, not per claim.
        if line.startswith("space_dra_api_writes_total{") and 'kind="Lease"' not in line:
            labels, value = line.rsplit(" ", 1)
            samples[labels] = float(value)
    return samples


def _cdi_specs(uid: str) -> list[Path]:
    return sorted(Path("/var/run/cdi").glob(f"space.resource.example.com-{uid}*.json"))


def _artifact_dirs(uid: str) -> list[Path]:
    root = Path("/var/run/claim-artifacts")
    return sorted(root.glob(f"{uid}*")) if root.is_dir() else []


def _checkpoint_text() -> str:
    path = Path("/var/lib/kubelet/plugins/space.resource.example.com/checkpoint.json")
    return path.read_text() if path.exists() else ""

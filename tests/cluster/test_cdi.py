"""The runtime path a DRA driver relies on, end to end on the real cluster.

The test publishes a ResourceSlice for a test driver, the real kube-scheduler allocates a
ResourceClaim from it, the real kubelet calls a real kubelet plugin (tests/cluster/draplugin, a
tiny Go program on k8s.io/dynamic-resource-allocation/kubeletplugin) over gRPC, the plugin writes a
CDI spec, and containerd applies it: the container sees the env var and the mounted file.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import ClusterHandle
from localcluster.fetch import GoBuild
from localcluster.layout import REPO_ROOT, Layout

pytestmark = pytest.mark.cluster

DRIVER = "cluster-test.space-dra.dev"
CDI_DIR = Path("/var/run/cdi")
REGISTRY = Path("/var/lib/kubelet/plugins_registry")


@pytest.fixture(scope="module")
def draplugin_binary() -> Path:
    build = GoBuild(
        name="test DRA kubelet plugin",
        module_dir=REPO_ROOT / "tests" / "cluster" / "draplugin",
        packages=(".",),
        out=Layout.default().cache / "test-draplugin" / "bin",
    )
    build.ensure()
    return build.out / "draplugin"


@pytest.fixture(scope="module")
def draplugin(local_cluster: ClusterHandle, draplugin_binary: Path) -> Iterator[Path]:
    """The plugin running on the host, registered with the kubelet; yields its log file."""
    log = local_cluster.state_dir / "logs" / "test-draplugin.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(draplugin_binary),
                f"-driver={DRIVER}",
                f"-node={local_cluster.node_name}",
                f"-kubeconfig={local_cluster.kubeconfig}",
                f"-cdi-dir={CDI_DIR}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "registered with kubelet" not in log.read_text():
            assert proc.poll() is None, f"plugin exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"plugin not registered:\n{log.read_text()}"
            time.sleep(0.2)
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # The plugin removes its registration socket when it stops.
    assert not (REGISTRY / f"{DRIVER}-reg.sock").exists()


@pytest.fixture
def dra_objects(local_cluster: ClusterHandle) -> Iterator[dict[str, str]]:
    """A DeviceClass and a node-local ResourceSlice with one device, plus a namespace."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        "class": f"cdi-smoke-{suffix}.{DRIVER}",
        "slice": f"cdi-smoke-{suffix}",
        "device": f"dev-{suffix}",
        "namespace": local_cluster.create_namespace("cdi"),
    }
    device_class = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": names["class"]},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]},
    }
    resource_slice = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": names["slice"]},
        "spec": {
            "driver": DRIVER,
            "nodeName": local_cluster.node_name,
            "pool": {"name": f"pool-{suffix}", "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": names["device"], "attributes": {"model": {"string": "smoke"}}}],
        },
    }
    local_cluster.apply(json.dumps(device_class))
    local_cluster.apply(json.dumps(resource_slice))
    try:
        yield names
    finally:
        local_cluster.delete_namespace(names["namespace"], wait=True)
        local_cluster.kubectl("delete", "resourceslice", names["slice"], "--ignore-not-found")
        local_cluster.kubectl("delete", "deviceclass", names["class"], "--ignore-not-found")


def test_claim_allocated_by_scheduler_and_cdi_applied_by_containerd(
    local_cluster: ClusterHandle, draplugin: Path, dra_objects: dict[str, str]
) -> None:
    ns = dra_objects["namespace"]
    device = dra_objects["device"]
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "smoke", "namespace": ns},
        "spec": {
            "devices": {
                "requests": [{"name": "dev", "exactly": {"deviceClassName": dra_objects["class"]}}]
            }
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "consumer", "namespace": ns},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "resourceClaims": [{"name": "dev", "resourceClaimName": "smoke"}],
            "containers": [
                {
                    "name": "main",
                    "image": local_cluster.testbox_image,
                    "imagePullPolicy": "Never",
                    "command": [
                        "sh",
                        "-c",
                        f"printenv SPACE_DRA_TEST_DEVICE; cat /run/space-dra-test/{device}.txt;"
                        " sleep 3600",
                    ],
                    "resources": {"claims": [{"name": "dev"}]},
                }
            ],
        },
    }
    local_cluster.apply(json.dumps(claim))
    local_cluster.apply(json.dumps(pod))
    local_cluster.wait_pod_ready(ns, "consumer", timeout=120)

    # The real scheduler allocated our device and reserved the claim for the pod.
    got = local_cluster.kubectl_json("get", "resourceclaim", "smoke", "-n", ns)
    results = got["status"]["allocation"]["devices"]["results"]
    assert [(r["driver"], r["device"]) for r in results] == [(DRIVER, device)]
    assert got["status"]["reservedFor"][0]["name"] == "consumer"

    # The plugin prepared it and the runtime applied the CDI edits.
    uid = got["metadata"]["uid"]
    assert f"prepared {ns}/smoke uid={uid}" in draplugin.read_text()
    spec_files = list(CDI_DIR.glob(f"{DRIVER}-{uid}.json"))
    assert spec_files, f"no CDI spec for claim {uid} in {CDI_DIR}"
    env = local_cluster.kubectl("exec", "consumer", "-n", ns, "--", "printenv")
    assert f"SPACE_DRA_TEST_DEVICE={device}" in env
    assert f"SPACE_DRA_TEST_CLAIM={ns}/smoke" in env
    mounted = local_cluster.kubectl(
        "exec", "consumer", "-n", ns, "--", "cat", f"/run/space-dra-test/{device}.txt"
    )
    assert mounted.strip() == f"claim={ns}/smoke device={device} pool={results[0]['pool']}"
    logs = local_cluster.kubectl("logs", "consumer", "-n", ns)
    assert logs.splitlines()[0] == device

    # Deleting the pod makes the kubelet unprepare: the spec file goes away.
    local_cluster.kubectl("delete", "pod", "consumer", "-n", ns, "--wait=true")
    local_cluster.wait_for(
        "the CDI spec to be removed on unprepare",
        lambda: not spec_files[0].exists(),
        timeout=60,
    )
    assert f"unprepared {ns}/smoke uid={uid}" in draplugin.read_text()

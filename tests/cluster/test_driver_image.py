"""The driver image, built without Docker, runs on the local cluster as the chart runs it.

Builds (or reuses) ``localhost/space-dra/driver:<version>``, checks containerd has exactly that
build, and runs it as the controller runs: uid/gid 65532, read-only root filesystem, no
capabilities, no privilege escalation. In it, ``space-dra version`` and ``space-dra kubelet-plugin
--help`` work, the generated DRA gRPC stubs and grpc import, and nothing imported lacks its
precompiled bytecode (which a read-only image could not write).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from localcluster import ClusterHandle
from localcluster import driverlayout as facts
from localcluster.driverimage import (
    DriverImage,
    build_driver_image,
    import_driver_image,
    project_version,
)
from localcluster.layout import REPO_ROOT

pytestmark = pytest.mark.cluster

WAIT = "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); signal.pause()"

PROBE = r"""
import json, os, sys
import grpc
import space_dra.proto.dra.v1.api_pb2 as api
import space_dra.cli, space_dra.controller.main, space_dra.plugin.main
no_bytecode = sorted(
    name
    for name, mod in list(sys.modules.items())
    if getattr(mod, "__spec__", None) is not None
    and mod.__spec__.cached
    and not os.path.exists(mod.__spec__.cached)
)
try:
    open("/probe", "w").close()
    root_write = "ok"
except OSError as exc:
    root_write = exc.strerror
print(json.dumps({
    "uid": os.getuid(),
    "gid": os.getgid(),
    "home": os.environ.get("HOME"),
    "prefix": sys.prefix,
    "python": "%d.%d" % sys.version_info[:2],
    "grpc": grpc.__version__,
    "dra_services": list(api.DESCRIPTOR.services_by_name),
    "dra_package": api.DESCRIPTOR.package,
    "dont_write_bytecode": sys.flags.dont_write_bytecode,
    "no_bytecode": no_bytecode,
    "root_write": root_write,
}))
"""


def pinned(name: str) -> str:
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned in constraints.txt")


def config_digest(image: DriverImage) -> str:
    """The image's config digest (what the kubelet reports as a container's imageID)."""
    with tarfile.open(image.archive) as tar:

        def member(name: str) -> Any:
            f = tar.extractfile(name)
            assert f is not None
            return json.load(f)

        manifests = member("index.json")["manifests"]
        assert [m["digest"] for m in manifests] == [image.digest]
        manifest = member(f"blobs/sha256/{image.digest.removeprefix('sha256:')}")
        return str(manifest["config"]["digest"])


@pytest.fixture(scope="module")
def driver_image(local_cluster: ClusterHandle) -> DriverImage:
    image = build_driver_image()
    import_driver_image(image)
    return image


@pytest.fixture
def namespace(local_cluster: ClusterHandle) -> Iterator[str]:
    ns = local_cluster.create_namespace("driverimage")
    yield ns
    local_cluster.delete_namespace(ns)


def test_containerd_has_exactly_the_built_image(
    local_cluster: ClusterHandle, driver_image: DriverImage
) -> None:
    assert driver_image.reference == f"{facts.IMAGE_REPOSITORY}:{project_version()}"
    ctr = local_cluster.state_dir / "bin" / "ctr"
    sock = local_cluster.state_dir / "run" / "containerd.sock"
    listing = subprocess.run(
        [str(ctr), "--address", str(sock), "-n", "k8s.io", "images", "ls"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    digests = {cols[0]: cols[2] for cols in map(str.split, listing.splitlines()[1:]) if cols}
    assert digests[driver_image.reference] == driver_image.digest
    # Unchanged inputs: the same image again, and nothing to import.
    again = build_driver_image()
    assert again.digest == driver_image.digest
    assert import_driver_image(again) is False
    assert set(driver_image.layers) == {"base", "deps", "app"}
    assert 20 * 2**20 < driver_image.size < 200 * 2**20


def test_driver_image_runs_as_the_controller_does(
    local_cluster: ClusterHandle, driver_image: DriverImage, namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "driver", "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": facts.USER_ID,
                "runAsGroup": facts.USER_ID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "driver",
                    "image": driver_image.reference,
                    "imagePullPolicy": "Never",
                    # No sleep binary in the image: python waits, and exits 0 on SIGTERM.
                    "command": ["python", "-c", WAIT],
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    local_cluster.apply(json.dumps(pod))
    status = local_cluster.wait_pod_ready(namespace, "driver", timeout=120)["status"]
    assert status["containerStatuses"][0]["imageID"].endswith(config_digest(driver_image))

    def run(*argv: str) -> str:
        return local_cluster.kubectl("exec", "-n", namespace, "driver", "--", *argv)

    assert run("space-dra", "version").strip() == f"space-dra {project_version()}"

    usage = run("space-dra", "kubelet-plugin", "--help")
    assert usage.startswith("usage: space-dra kubelet-plugin")
    for flag in ("--plugins-dir", "--registrar-dir", "--cdi-dir", "--node-name"):
        assert flag in usage

    probe = json.loads(run("python", "-c", PROBE))
    assert probe["uid"] == probe["gid"] == facts.USER_ID
    assert probe["home"] == facts.USER_HOME
    assert probe["prefix"] == facts.VENV
    assert probe["python"] == facts.PYTHON_VERSION
    assert probe["grpc"] == pinned("grpcio")
    assert probe["dra_package"] == "k8s.io.kubelet.pkg.apis.dra.v1"
    assert probe["dra_services"] == ["DRAPlugin"]
    assert probe["dont_write_bytecode"] == 1
    assert probe["no_bytecode"] == []
    assert probe["root_write"] == "Read-only file system"

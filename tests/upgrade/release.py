"""The release the upgrade and uninstall tests install, and the commands operators run on it.

The commands are the ones docs/upgrade.md and docs/uninstall.md give, run as an operator would
(a shell with kubectl, helm and the project's ``space-dra`` on the PATH, KUBECONFIG set).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from localcluster import ClusterHandle
from tests.support.chart import ChartRelease
from tests.support.workloads import LABELS

RELEASE = "space-dra"
RELEASE_NAMESPACE = "space-dra"
OWNERSHIP_SECRET = f"{RELEASE}-ownership"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def operator_shell(
    cluster: ClusterHandle, script: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with sh as an operator would: kubectl, helm and space-dra on the PATH."""
    env = cluster.env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return cluster.run(["sh", "-c", script], env=env, check=False, timeout=timeout)


def documented(doc: str, command: str) -> str:
    """``command``, after checking that docs/``doc`` gives it word for word."""
    text = (DOCS / doc).read_text()
    assert command in text, f"docs/{doc} no longer says:\n{command}"
    return command


def cleanup(cluster: ClusterHandle, *flags: str) -> subprocess.CompletedProcess[str]:
    """``space-dra cleanup`` for the release's key (docs/uninstall.md)."""
    return operator_shell(
        cluster,
        " ".join(
            [
                "space-dra cleanup --namespace",
                RELEASE_NAMESPACE,
                "--ownership-secret",
                OWNERSHIP_SECRET,
                *flags,
            ]
        ),
    )


def warm_namespaces(cluster: ClusterHandle) -> list[dict[str, Any]]:
    """Namespaces in the warm pool (made ahead of claims, no claim yet), any state."""
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", "namespaces", "-l", f"{LABELS.selector},{LABELS.warm}"
    )["items"]
    return items


def remove_release(cluster: ClusterHandle) -> None:
    """Uninstall the release, whatever version it is, and remove what the driver left.

    The warm pool goes with the DeviceClass that owns it; the namespaces of claims deleted
    meanwhile go with ``space-dra cleanup --delete`` (only those the key proves are the
    driver's; without a key Secret it deletes nothing).
    """
    cluster.helm(
        "uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", "--timeout", "120s", check=False
    )
    cluster.wait_for(
        "the warm pool's namespaces collected with their DeviceClass",
        lambda: not any(ns["metadata"].get("ownerReferences") for ns in warm_namespaces(cluster)),
        timeout=120,
    )
    result = cleanup(cluster, "--delete")
    print(f"space-dra cleanup --delete: {result.returncode}\n{result.stdout}{result.stderr}")


def helm_revision(cluster: ClusterHandle) -> int:
    """The release's current revision (what `helm rollback` takes)."""
    status = cluster.helm("status", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json")
    return int(json.loads(status)["version"])


def wait_rolled_out(release: ChartRelease, timeout: int = 180) -> None:
    """Both components run the release's current pod templates, old pods gone."""
    for workload in (
        f"deployment/{release.fullname}-controller",
        f"daemonset/{release.plugin_daemonset}",
    ):
        release.cluster.kubectl(
            "rollout",
            "status",
            workload,
            "-n",
            release.namespace,
            f"--timeout={timeout}s",
            timeout=timeout + 20,
        )

    def only_new_pods() -> bool:
        pods = release.pods("controller") + release.pods("kubelet-plugin")
        expected = len(release.cluster.nodes) + 1
        return len(pods) == expected and all(
            not p["metadata"].get("deletionTimestamp") for p in pods
        )

    release.cluster.wait_for("the old pods gone", only_new_pods, timeout=90)


def running_images(release: ChartRelease) -> set[str]:
    """The images the release's controller and kubelet-plugin containers run."""
    return {
        container["image"]
        for component in ("controller", "kubelet-plugin")
        for pod in release.pods(component)
        for container in pod["spec"]["containers"]
    }

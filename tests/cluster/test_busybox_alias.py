"""Manifests written for kind use Docker Hub's busybox; on the local cluster it is the testbox."""

from __future__ import annotations

import json
import re

import pytest

from localcluster import ClusterHandle, versions
from localcluster.layout import REPO_ROOT


def test_demo_manifests_use_the_alias() -> None:
    """No marker: the demo's busybox must be the version the alias names."""
    used = {
        m.group(1)
        for f in sorted((REPO_ROOT / "demo").glob("*.yaml"))
        for m in re.finditer(r"image:\s*[\"']?(\S*busybox\S*?)[\"']?\s*$", f.read_text(), re.M)
    }
    assert used == {versions.BUSYBOX_ALIAS}


@pytest.mark.cluster
def test_busybox_alias_runs_without_a_pull(local_cluster: ClusterHandle) -> None:
    ns = local_cluster.create_namespace("busybox")
    try:
        pods = {}
        for name, image in (
            ("alias", versions.BUSYBOX_ALIAS),
            ("testbox", local_cluster.testbox_image),
        ):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            # As in demo/*.yaml: a pull would fail here (no registry access).
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", "busybox | head -1; sleep 3600"],
                        }
                    ],
                },
            }
            local_cluster.apply(json.dumps(pod))
        for name in ("alias", "testbox"):
            pods[name] = local_cluster.wait_pod_ready(ns, name, timeout=60)
        alias, testbox = (pods[n]["status"]["containerStatuses"][0] for n in ("alias", "testbox"))
        assert alias["imageID"] == testbox["imageID"]
        logs = local_cluster.kubectl("logs", "-n", ns, "alias")
        assert logs.startswith(f"BusyBox v{versions.BUSYBOX.upstream} ")
        events = local_cluster.kubectl(
            "get", "events", "-n", ns, "--field-selector", "involvedObject.name=alias"
        )
        assert "already present on machine" in events
        assert "Pulling" not in events
    finally:
        local_cluster.delete_namespace(ns)

"""The Kubernetes adapter against the real API server, where its behaviour matters for safety."""

from __future__ import annotations

import asyncio

import pytest
import yaml
from lightkube.resources.core_v1 import ConfigMap

from localcluster import ClusterHandle
from space_dra.kube import LightkubeAPI
from space_dra.kube_config import load_config

pytestmark = pytest.mark.cluster


def test_list_returns_every_object_exactly_once_beyond_one_page(
    local_cluster: ClusterHandle,
) -> None:
    """A list must be complete: the controller's GC treats a claim missing from it as deleted."""
    namespace = local_cluster.create_namespace("list")
    try:
        count = 620
        manifests = "---\n".join(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"cm-{i}", "namespace": namespace},
                }
            )
            for i in range(count)
        )
        local_cluster.kubectl("apply", "-f", "-", input=manifests, timeout=300)

        async def listed() -> list[str]:
            api = LightkubeAPI(load_config(str(local_cluster.kubeconfig)), "test")
            try:
                items, version = await api.list(ConfigMap, fields={"metadata.namespace": namespace})
                assert version
                return [item.metadata.name or "" for item in items if item.metadata]
            finally:
                await api.close()

        names = asyncio.run(listed())
        ours = [n for n in names if n.startswith("cm-")]
        assert len(ours) == count
        assert len(set(ours)) == count
    finally:
        local_cluster.delete_namespace(namespace)

"""The driver installed by its Helm chart, running as pods from the locally built image."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcluster import ClusterHandle
from tests.support.chart import ChartRelease
from tests.support.fixtures import chart, chart_values, driver_image  # noqa: F401


@pytest.fixture
def workspace(local_cluster: ClusterHandle, chart: ChartRelease) -> Iterator[str]:  # noqa: F811
    name = local_cluster.create_namespace("e2e")
    yield name
    local_cluster.delete_namespace(name, wait=True)

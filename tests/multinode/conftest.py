"""Several nodes: the chart-installed driver with a kubelet plugin per node, and the node network.

Every test here needs at least two nodes and is skipped, saying so, on a smaller cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcluster import ClusterHandle
from localcluster.nodes import Node
from tests.support.chart import ChartRelease
from tests.support.fixtures import chart, driver_image  # noqa: F401
from tests.support.nodes import require_nodes


@pytest.fixture(scope="package")
def chart_values() -> dict[str, str]:
    # Enough slots for the rolling test's six claims in use at once.
    return {"pool.size": "8", "controller.resyncPeriod": "10"}


@pytest.fixture
def two_nodes(local_cluster: ClusterHandle) -> tuple[Node, Node]:
    """The first two nodes (the machine's own and the first namespaced one)."""
    nodes = require_nodes(local_cluster, 2)
    return nodes[0], nodes[1]


@pytest.fixture
def workspace(
    local_cluster: ClusterHandle,
    two_nodes: tuple[Node, Node],
    chart: ChartRelease,  # noqa: F811
) -> Iterator[str]:
    name = local_cluster.create_namespace("mn")
    yield name
    local_cluster.delete_namespace(name, wait=True)

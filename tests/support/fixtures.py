"""Fixtures shared by the suites that run the driver as host processes.

Each package's conftest imports them, so a ``package``-scoped fixture lives as
long as that package's tests: the host plugin never overlaps the chart-installed
one of the e2e suite.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import ClusterHandle
from tests.support.hostdriver import HostDriver


@pytest.fixture(scope="package")
def host_driver(local_cluster: ClusterHandle) -> Iterator[HostDriver]:
    workdir = Path(tempfile.mkdtemp(prefix="space-dra-it-"))
    driver = HostDriver(local_cluster, namespace="space-dra-it", workdir=workdir)
    # One driver per node: a chart release (e.g. left by `make demo`) would register
    # a second plugin and run a second controller for the same driver name.
    local_cluster.helm("uninstall", "space-dra", "-n", "space-dra", "--wait", check=False)
    driver.uninstall()  # leftovers of an interrupted run
    driver.install_rbac()
    driver.start_plugin()
    driver.start_controller()
    try:
        yield driver
    finally:
        driver.uninstall()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def workspace(local_cluster: ClusterHandle, host_driver: HostDriver) -> Iterator[str]:
    """A namespace for the test's claims and pods, deleted (with them) afterwards."""
    name = local_cluster.create_namespace("it")
    yield name
    local_cluster.delete_namespace(name, wait=True)

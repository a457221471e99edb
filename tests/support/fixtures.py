"""Fixtures shared by the real-cluster suites.

Each package's conftest imports the ones it uses, so a ``package``-scoped fixture lives as long
as that package's tests: the host plugin (integration, security, reliability) never overlaps the
chart-installed one (e2e, multinode).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import ClusterHandle
from localcluster.driverimage import build_driver_image, import_driver_image
from tests.support.chart import ChartRelease
from tests.support.hostdriver import HostDriver
from tests.support.nodes import pin_namespace_to_node


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
    """A namespace for the test's claims and pods, deleted (with them) afterwards.

    Its pods run on the node the host plugin serves (the first): on a cluster of several nodes the
    others have no plugin of this driver, and the tests read that node's files from the machine.
    """
    name = local_cluster.create_namespace("it")
    pin_namespace_to_node(local_cluster, name, host_driver.node_name)
    yield name
    local_cluster.delete_namespace(name, wait=True)


@pytest.fixture(scope="session")
def driver_image(local_cluster: ClusterHandle) -> tuple[str, str]:
    """The driver image built from this checkout, in every node's containerd: (ref, digest)."""
    image = build_driver_image()
    import_driver_image(image)
    return image.reference, image.digest


@pytest.fixture(scope="package")
def chart_values() -> dict[str, str]:
    """Helm values of the package's release; a package's conftest may override this fixture."""
    return {"pool.size": "4", "controller.resyncPeriod": "10"}


@pytest.fixture(scope="package")
def chart(
    local_cluster: ClusterHandle, driver_image: tuple[str, str], chart_values: dict[str, str]
) -> Iterator[ChartRelease]:
    """The chart installed as release space-dra (replacing one `make demo` left), removed after."""
    release = ChartRelease(
        local_cluster,
        image=driver_image[0],
        image_digest=driver_image[1],
        values=dict(chart_values),
    )
    release.uninstall()
    release.install()
    try:
        yield release
    finally:
        release.uninstall()

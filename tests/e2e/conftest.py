"""The driver installed by its Helm chart, running as pods from the locally built image."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcluster import ClusterHandle
from localcluster.driverimage import build_driver_image, import_driver_image
from tests.support.chart import ChartRelease


@pytest.fixture(scope="session")
def driver_image(local_cluster: ClusterHandle) -> tuple[str, str]:
    image = build_driver_image()
    import_driver_image(image)
    return image.reference, image.digest


@pytest.fixture(scope="package")
def chart(local_cluster: ClusterHandle, driver_image: tuple[str, str]) -> Iterator[ChartRelease]:
    release = ChartRelease(
        local_cluster,
        image=driver_image[0],
        image_digest=driver_image[1],
        values={"pool.size": "4", "controller.resyncPeriod": "10"},
    )
    release.uninstall()
    release.install()
    try:
        yield release
    finally:
        release.uninstall()


@pytest.fixture
def workspace(local_cluster: ClusterHandle, chart: ChartRelease) -> Iterator[str]:
    name = local_cluster.create_namespace("e2e")
    yield name
    local_cluster.delete_namespace(name, wait=True)

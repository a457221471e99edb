"""Upgrades and uninstall of the chart-installed driver on the local cluster.

Each test installs the release ``space-dra`` itself, replacing whatever was installed under that
name (a ``make demo`` leaves one), and leaves none behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcluster import ClusterHandle
from tests.support.fixtures import driver_image  # noqa: F401
from tests.upgrade.previous import PreviousVersion, previous_version
from tests.upgrade.release import remove_release


@pytest.fixture(scope="package")
def previous(local_cluster: ClusterHandle) -> Iterator[PreviousVersion]:
    """The previous revision's checkout and driver image (see tests/upgrade/previous.py)."""
    with previous_version() as version:
        print(f"upgrading from {version.commit} ({version.image})")
        yield version


@pytest.fixture
def no_release(local_cluster: ClusterHandle) -> Iterator[None]:
    """No release of the driver before the test, nor after it."""
    remove_release(local_cluster)
    yield
    remove_release(local_cluster)


@pytest.fixture
def workspace(local_cluster: ClusterHandle, no_release: None) -> Iterator[str]:
    """A namespace for the test's claims and pods, deleted (with them) before the release goes."""
    name = local_cluster.create_namespace("upg")
    yield name
    local_cluster.delete_namespace(name, wait=True)

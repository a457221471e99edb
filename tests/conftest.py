"""Shared fixtures. ``local_cluster``: the real single-node cluster (localcluster/README.md)."""

from __future__ import annotations

import pytest

from localcluster import ClusterHandle, ensure_cluster


@pytest.fixture(scope="session")
def local_cluster() -> ClusterHandle:
    """Reuse the running local cluster, or start it (builds on a cold cache; needs root)."""
    return ensure_cluster()


# Modules that stop the shared cluster for a while; they run after everything else.
_DISRUPTIVE_MODULES = ("test_zz_lifecycle.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name in _DISRUPTIVE_MODULES)

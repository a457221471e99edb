"""A real single-node Kubernetes, built from upstream components and run as local processes.

See localcluster/README.md. Entry points: ``python -m localcluster up|down|status|logs`` and
``localcluster.ensure_cluster()`` (used by the pytest fixture); the driver image:
``python -m localcluster driver-image`` and ``localcluster.ensure_driver_image()``.
"""

from __future__ import annotations

from localcluster.client import ClusterHandle, KubectlError
from localcluster.cluster import LocalCluster
from localcluster.driverimage import ensure_driver_image


def ensure_cluster() -> ClusterHandle:
    """Reuse the running cluster (``up`` is a quick no-op then) or start one."""
    return LocalCluster.default().up()


__all__ = ["ClusterHandle", "KubectlError", "LocalCluster", "ensure_cluster", "ensure_driver_image"]

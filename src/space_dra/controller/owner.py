"""The installation's DeviceClass as the owner of what the controller makes for it.

ResourceSlices and warm namespaces belong to the installation, not to any claim. Making
the chart's DeviceClass (cluster-scoped, so it may own objects of any scope) their owner
lets Kubernetes' garbage collector remove them when the class goes, as ``helm
uninstall`` does, with nothing left to clean up by hand. Namespaces handed to a claim
drop the reference: they live and die with their claim. (The ownership key is not owned:
it outlives the installation on purpose, see docs/uninstall.md.)
"""

from __future__ import annotations

import logging

from lightkube.models.meta_v1 import OwnerReference
from lightkube.resources.resource_v1 import DeviceClass

from space_dra.kube import ControllerAPI, KubeError
from space_dra.logs import log_event

log = logging.getLogger(__name__)


async def device_class_owner(kube: ControllerAPI, name: str) -> OwnerReference | None:
    """An owner reference to the DeviceClass ``name``; None without one (logged)."""
    if not name:
        return None
    try:
        device_class = await kube.get(DeviceClass, name)
    except KubeError as exc:
        log_event(
            log, logging.WARNING, "owner_device_class_missing", device_class=name, error=str(exc)
        )
        return None
    if device_class.metadata is None or not device_class.metadata.uid:
        return None
    return OwnerReference(
        apiVersion="resource.k8s.io/v1",
        kind="DeviceClass",
        name=name,
        uid=device_class.metadata.uid,
    )

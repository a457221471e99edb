"""Builders for ResourceClaim objects as the API server returns them."""

from __future__ import annotations

import uuid
from typing import Any

from lightkube import codecs
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.contract import (
    CONDITION_FAILED,
    CONDITION_READY,
    CONFIG_API_VERSION,
    CONFIG_KIND,
    DEFAULT_DRIVER_NAME,
    POOL_NAME,
    WORKLOAD_SERVICE_ACCOUNT,
)

SERVER = "https://10.0.0.1:443"


def new_uid() -> str:
    return str(uuid.uuid4())


def namespace_config(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": CONFIG_API_VERSION, "kind": CONFIG_KIND, **fields}


def condition(kind: str, status: str, reason: str = "Test", message: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-26T00:00:00Z",
    }


def ready_device(
    device: str, namespace: str, pool: str = POOL_NAME, driver: str = DEFAULT_DRIVER_NAME
) -> dict[str, Any]:
    return {
        "driver": driver,
        "pool": pool,
        "device": device,
        "data": {
            "namespace": namespace,
            "serviceAccount": WORKLOAD_SERVICE_ACCOUNT,
            "server": SERVER,
        },
        "conditions": [condition(CONDITION_READY, "True", "Provisioned")],
    }


def failed_device(device: str, message: str, pool: str = POOL_NAME) -> dict[str, Any]:
    return {
        "driver": DEFAULT_DRIVER_NAME,
        "pool": pool,
        "device": device,
        "conditions": [
            condition(CONDITION_READY, "False", "ProvisioningFailed", message),
            condition(CONDITION_FAILED, "True", "InvalidConfig", message),
        ],
    }


def make_claim(
    uid: str,
    *,
    namespace: str = "default",
    name: str = "test-claim",
    devices: list[tuple[str, str]] | None = None,
    driver: str = DEFAULT_DRIVER_NAME,
    allocated: bool = True,
    status_devices: list[dict[str, Any]] | None = None,
    configs: list[tuple[str, dict[str, Any], list[str]]] | None = None,
    annotations: dict[str, str] | None = None,
    admin_access: bool = False,
    reserved_for: list[tuple[str, str]] | None = None,
) -> ResourceClaim:
    """A claim; ``devices`` are (request, device) pairs from our pool, ``reserved_for``
    the (name, UID) of the pods the scheduler reserved it for."""
    devices = devices if devices is not None else [("ns", "slot-0")]
    body: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "annotations": annotations or {},
        },
        "spec": {
            "devices": {
                "requests": [
                    {"name": r, "exactly": {"deviceClassName": "space"}} for r, _ in devices
                ]
            }
        },
        "status": {},
    }
    if allocated:
        body["status"]["allocation"] = {
            "devices": {
                "results": [
                    {
                        "request": request,
                        "driver": driver,
                        "pool": POOL_NAME,
                        "device": device,
                        **({"adminAccess": True} if admin_access else {}),
                    }
                    for request, device in devices
                ],
                "config": [
                    {
                        "source": source,
                        "requests": requests,
                        "opaque": {"driver": DEFAULT_DRIVER_NAME, "parameters": params},
                    }
                    for source, params, requests in (configs or [])
                ],
            },
        }
    if status_devices is not None:
        body["status"]["devices"] = status_devices
    if reserved_for:
        body["status"]["reservedFor"] = [
            {"resource": "pods", "name": name, "uid": pod_uid} for name, pod_uid in reserved_for
        ]
    result = codecs.from_dict(body)
    assert isinstance(result, ResourceClaim)
    return result

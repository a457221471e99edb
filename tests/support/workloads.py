"""Manifests and waits shared by the real-cluster suites."""

from __future__ import annotations

import json
from typing import Any

import yaml

from localcluster import ClusterHandle
from space_dra.contract import (
    CONDITION_FAILED,
    CONDITION_READY,
    DEFAULT_DRIVER_NAME,
    ManagementLabels,
)

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)


def claim_manifest(
    namespace: str,
    name: str,
    *,
    config: dict[str, Any] | None = None,
    count: int = 1,
    device_class: str = DEFAULT_DRIVER_NAME,
    selector: str | None = None,
) -> str:
    request: dict[str, Any] = {"deviceClassName": device_class}
    if count != 1:
        request["allocationMode"] = "ExactCount"
        request["count"] = count
    if selector:
        request["selectors"] = [{"cel": {"expression": selector}}]
    spec: dict[str, Any] = {"devices": {"requests": [{"name": "space", "exactly": request}]}}
    if config is not None:
        spec["devices"]["config"] = [
            {"requests": ["space"], "opaque": {"driver": DEFAULT_DRIVER_NAME, "parameters": config}}
        ]
    return yaml.safe_dump(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def template_manifest(namespace: str, name: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [
                            {"name": "space", "exactly": {"deviceClassName": DEFAULT_DRIVER_NAME}}
                        ]
                    }
                }
            },
        }
    )


def pod_manifest(
    namespace: str,
    name: str,
    image: str,
    *,
    claim: str | None = None,
    template: str | None = None,
    pod_claim_name: str = "space",
    command: list[str] | None = None,
    node: str | None = None,
) -> str:
    """A pod using a claim (or one made from a template); ``node`` pins it to that node."""
    source = {"resourceClaimName": claim} if claim else {"resourceClaimTemplateName": template}
    placement = {"nodeSelector": {"kubernetes.io/hostname": node}} if node else {}
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                **placement,
                "terminationGracePeriodSeconds": 2,
                "containers": [
                    {
                        "name": "ctr",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": command
                        or ["sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"],
                        "resources": {"claims": [{"name": pod_claim_name}]},
                    }
                ],
                "resourceClaims": [{"name": pod_claim_name, **source}],
            },
        }
    )


def claim_json(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.kubectl_json("get", "resourceclaim", name, "-n", namespace)
    return result


def our_device_statuses(claim: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        d
        for d in claim.get("status", {}).get("devices", [])
        if d.get("driver") == DEFAULT_DRIVER_NAME
    ]


def condition(device: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in device.get("conditions", []) if c["type"] == kind), None)


def wait_claim_ready(
    cluster: ClusterHandle, namespace: str, name: str, timeout: float = 60
) -> list[str]:
    """Wait for NamespaceReady on every device of ours; return the namespaces in order."""
    namespaces: list[str] = []

    def ready() -> bool:
        nonlocal namespaces
        devices = our_device_statuses(claim_json(cluster, namespace, name))
        ok = [d for d in devices if (condition(d, CONDITION_READY) or {}).get("status") == "True"]
        namespaces = [d["data"]["namespace"] for d in ok]
        return bool(devices) and len(ok) == len(devices)

    cluster.wait_for(f"claim {namespace}/{name} NamespaceReady", ready, timeout)
    return namespaces


def wait_claim_failed(
    cluster: ClusterHandle, namespace: str, name: str, timeout: float = 60
) -> str:
    message = ""

    def failed() -> bool:
        nonlocal message
        for device in our_device_statuses(claim_json(cluster, namespace, name)):
            cond = condition(device, CONDITION_FAILED)
            if cond and cond["status"] == "True":
                message = cond["message"]
                return True
        return False

    cluster.wait_for(f"claim {namespace}/{name} NamespaceFailed", failed, timeout)
    return message


def namespace_state(cluster: ClusterHandle, name: str) -> str:
    """'Active', 'Terminating' or 'gone'."""
    result = cluster.kubectl_result("get", "namespace", name, "-o", "json")
    if result.returncode != 0:
        return "gone"
    phase: str = json.loads(result.stdout)["status"]["phase"]
    return phase


def wait_namespace_released(cluster: ClusterHandle, name: str, timeout: float = 60) -> None:
    cluster.wait_for(
        f"namespace {name} deleted",
        lambda: namespace_state(cluster, name) in ("Terminating", "gone"),
        timeout,
    )


def managed_namespaces(
    cluster: ClusterHandle, claim_uid: str | None = None, *, include_warm: bool = False
) -> list[dict[str, Any]]:
    """Active namespaces the driver made; the warm pool's (no claim yet) only if asked."""
    selector = LABELS.selector
    if claim_uid:
        selector += f",{LABELS.claim_uid}={claim_uid}"
    elif not include_warm:
        selector += f",!{LABELS.warm}"
    items: list[dict[str, Any]] = cluster.kubectl_json("get", "namespaces", "-l", selector)["items"]
    return [ns for ns in items if ns["status"]["phase"] == "Active"]


def exec_in(cluster: ClusterHandle, namespace: str, pod: str, script: str) -> str:
    return cluster.kubectl("exec", "-n", namespace, pod, "--", "sh", "-c", script)


def events_for(cluster: ClusterHandle, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items

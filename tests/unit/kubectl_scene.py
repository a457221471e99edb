"""A cluster's worth of claims in every state, for the kubectl plugin's unit tests.

Everything is fixed (names, UIDs, times), so rendered output can be compared with golden
files. Claims, statuses, namespaces and Events are written as the controller writes them
(the namespace's objects come from the controller's own ``namespace_contents``).

team-a: ``ready`` (two pods, health reported, quota and a NetworkPolicy), ``expiring``
(``expiresAt`` in its status data), ``bad-role`` (refused config: Failed), ``waiting`` (not
allocated yet), and two claims of others that must not show up.
team-b: ``worker-0-space-7x9kq`` (made from a template for pod ``worker-0``, its namespace
carries the expiry annotation), ``pair`` (two devices, two namespaces, one reported
unhealthy by the controller), ``half`` (one device ready, one not yet), ``leaving`` (being
deleted).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from lightkube import codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event, Pod
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.config import SOURCE_CLAIM, SOURCE_CLASS, ConfigError, load_policy, resolve
from space_dra.contract import (
    CONDITION_HEALTHY,
    CONTROLLER_NAME,
    DEFAULT_DRIVER_NAME,
    EXPIRES_AT_FIELD,
    POD_CLAIM_NAME_ANNOTATION,
    ClaimView,
    DeviceRef,
    ManagementLabels,
)
from space_dra.controller.manifests import namespace_contents, namespace_object
from space_dra.kube_memory import MemoryKube
from tests.support.claims import (
    condition,
    failed_device,
    make_claim,
    namespace_config,
    ready_device,
)
from tests.support.controller import PLUGIN_SERVICE_ACCOUNT, SIGNER, TOKEN_MINTER_ROLE

DRIVER = DEFAULT_DRIVER_NAME
LABELS = ManagementLabels(DRIVER)
NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
# The installation's policy (the chart's policy values, in its ConfigMap): the class narrows it.
INSTALLATION_POLICY = {
    "minPodSecurity": "restricted",
    "allowedNetworkPolicies": ["deny-ingress", "deny-all"],
}
POLICY_CONFIG_MAP = ("space-dra", "space-dra-policy")
CLASS_POLICY = namespace_config(
    policy={"allowedRoles": ["edit", "view"], "allowedNetworkPolicies": ["deny-ingress"]}
)


def refusal(claim_config: dict[str, Any]) -> str:
    """What the controller records when it refuses ``claim_config`` under CLASS_POLICY."""
    try:
        resolve(
            [(SOURCE_CLASS, CLASS_POLICY), (SOURCE_CLAIM, namespace_config(**claim_config))],
            installation=load_policy(INSTALLATION_POLICY),
        )
    except ConfigError as exc:
        return str(exc)
    raise AssertionError(f"{claim_config} is allowed")


BAD_ROLE_MESSAGE = refusal({"role": "cluster-admin"})


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def claim(
    n: int,
    namespace: str,
    name: str,
    *,
    minutes_ago: float,
    devices: list[tuple[str, str]] | None = None,
    status_devices: list[dict[str, Any]] | None = None,
    claim_config: dict[str, Any] | None = None,
    pods: tuple[str, ...] = (),
    allocated: bool = True,
    device_class: str = DRIVER,
    driver: str = DRIVER,
    **metadata: Any,
) -> ResourceClaim:
    configs: list[tuple[str, dict[str, Any], list[str]]] = [(SOURCE_CLASS, CLASS_POLICY, [])]
    if claim_config is not None:
        configs.append((SOURCE_CLAIM, namespace_config(**claim_config), []))
    built = make_claim(
        uid(n),
        namespace=namespace,
        name=name,
        devices=devices if devices is not None else [("space", f"slot-{n}")],
        allocated=allocated,
        status_devices=status_devices,
        configs=configs,
        driver=driver,
    )
    body = built.to_dict()
    body["metadata"].update(creationTimestamp=at(minutes_ago), **metadata)
    for request in body["spec"]["devices"]["requests"]:
        request["exactly"]["deviceClassName"] = device_class
    if pods:
        body["status"]["reservedFor"] = [
            {"resource": "pods", "name": pod, "uid": f"pod-{pod}"} for pod in pods
        ]
    result = codecs.from_dict(body)
    assert isinstance(result, ResourceClaim)
    return result


def provisioned(
    kube: MemoryKube, made_for: ResourceClaim, device: str, name: str, **annotations: str
) -> None:
    """The namespace and its objects, as the controller makes them for ``made_for``."""
    assert made_for.metadata is not None
    # Resolved as the controller resolves them.
    settings = resolve(
        ClaimView(made_for, DRIVER).opaque_configs("space"),
        installation=load_policy(INSTALLATION_POLICY),
    ).settings
    namespace = namespace_object(
        LABELS,
        SIGNER,
        name,
        uid_of(made_for),
        f"{made_for.metadata.namespace}/{made_for.metadata.name}",
        DeviceRef("space", "space", device),
        settings,
    )
    assert namespace.metadata is not None
    namespace.metadata.annotations = {**(namespace.metadata.annotations or {}), **annotations}
    namespace.metadata.creationTimestamp = made_for.metadata.creationTimestamp
    kube.put(namespace)
    for obj in namespace_contents(
        LABELS, name, settings, PLUGIN_SERVICE_ACCOUNT, TOKEN_MINTER_ROLE
    ):
        kube.put(obj)


def uid_of(obj: Any) -> str:
    return str(obj.metadata.uid)


def pod(
    namespace: str, name: str, claim_name: str, *, generated: str | None = None, health: Any = None
) -> Pod:
    """A running pod using ``claim_name`` as its ``space``; ``generated``: the claim a
    template made for it. ``health``: (health, message) of our device in its one container."""
    source = (
        {"resourceClaimTemplateName": "space-template"}
        if generated
        else {"resourceClaimName": claim_name}
    )
    status: dict[str, Any] = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "ctr",
                "image": "busybox",
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                **(
                    {
                        "allocatedResourcesStatus": [
                            {
                                "name": "claim:space",
                                "resources": [
                                    {
                                        "resourceID": f"{DRIVER}/namespace={claim_name}",
                                        "health": health[0],
                                        "message": health[1],
                                    }
                                ],
                            },
                            {
                                "name": "claim:gpu",
                                "resources": [{"resourceID": "gpu.example.com/gpu=0"}],
                            },
                        ]
                    }
                    if health
                    else {}
                ),
            }
        ],
    }
    if generated:
        status["resourceClaimStatuses"] = [{"name": "space", "resourceClaimName": generated}]
    result = codecs.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": f"pod-{name}"},
            "spec": {
                "containers": [{"name": "ctr", "image": "busybox"}],
                "resourceClaims": [{"name": "space", **source}],
            },
            "status": status,
        }
    )
    assert isinstance(result, Pod)
    return result


def event(
    made_for: ResourceClaim, n: int, kind: str, reason: str, message: str, minutes_ago: float
) -> Event:
    assert made_for.metadata is not None
    result = codecs.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{made_for.metadata.name}.{n}",
                "namespace": made_for.metadata.namespace,
            },
            "involvedObject": {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "name": made_for.metadata.name,
                "namespace": made_for.metadata.namespace,
                "uid": made_for.metadata.uid,
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": CONTROLLER_NAME},
            "firstTimestamp": at(minutes_ago),
            "lastTimestamp": at(minutes_ago),
            "count": 1,
        }
    )
    assert isinstance(result, Event)
    return result


def unhealthy(device: dict[str, Any], reason: str) -> dict[str, Any]:
    """The controller's word that a namespace it provisioned is no longer usable."""
    message = f"namespace {device['data']['namespace']} was deleted"
    device["conditions"].append(condition(CONDITION_HEALTHY, "False", reason, message))
    return device


def with_expiry(device: dict[str, Any], when: str) -> dict[str, Any]:
    device["data"][EXPIRES_AT_FIELD] = when
    return device


def build() -> MemoryKube:
    kube = MemoryKube()
    kube.put(
        ConfigMap(
            metadata=ObjectMeta(namespace=POLICY_CONFIG_MAP[0], name=POLICY_CONFIG_MAP[1]),
            data={"policy.yaml": yaml.safe_dump(INSTALLATION_POLICY)},
        )
    )
    ready = claim(
        1,
        "team-a",
        "ready",
        minutes_ago=5,
        status_devices=[ready_device("slot-1", "ephemeral-ns-r1r1r")],
        claim_config={"role": "edit", "quota": {"pods": "10"}, "networkPolicy": "deny-ingress"},
        pods=("pod0", "pod1"),
    )
    kube.put(ready)
    provisioned(kube, ready, "slot-1", "ephemeral-ns-r1r1r")
    kube.put(
        pod("team-a", "pod0", "ready", health=("Healthy", "namespace ephemeral-ns-r1r1r is ready"))
    )
    kube.put(pod("team-a", "pod1", "ready"))
    kube.put(
        event(
            ready,
            1,
            "Normal",
            "NamespaceProvisioned",
            "space=space/slot-1: namespace ephemeral-ns-r1r1r is ready",
            4,
        )
    )

    expiring = claim(
        2,
        "team-a",
        "expiring",
        minutes_ago=200,
        status_devices=[
            with_expiry(ready_device("slot-2", "ephemeral-ns-e2e2e"), "2026-11-30T13:00:00Z")
        ],
    )
    kube.put(expiring)
    provisioned(kube, expiring, "slot-2", "ephemeral-ns-e2e2e")

    bad = claim(
        3,
        "team-a",
        "bad-role",
        minutes_ago=1.5,
        status_devices=[failed_device("slot-3", BAD_ROLE_MESSAGE)],
        claim_config={"role": "cluster-admin"},
    )
    kube.put(bad)
    kube.put(
        event(bad, 1, "Warning", "NamespaceFailed", f"space=space/slot-3: {BAD_ROLE_MESSAGE}", 1)
    )

    kube.put(claim(4, "team-a", "waiting", minutes_ago=0.5, allocated=False))
    kube.put(claim(5, "team-a", "gpu-claim", minutes_ago=60, driver="gpu.example.com"))
    kube.put(claim(6, "team-a", "gpu-pending", minutes_ago=60, allocated=False, device_class="gpu"))

    worker = claim(
        7,
        "team-b",
        "worker-0-space-7x9kq",
        minutes_ago=60 * 26,
        status_devices=[ready_device("slot-7", "ephemeral-ns-w7w7w")],
        pods=("worker-0",),
        annotations={POD_CLAIM_NAME_ANNOTATION: "space"},
        ownerReferences=[
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": "worker-0",
                "uid": "pod-worker-0",
                "controller": True,
            }
        ],
    )
    kube.put(worker)
    provisioned(
        kube,
        worker,
        "slot-7",
        "ephemeral-ns-w7w7w",
        **{ManagementLabels(DRIVER).expires_at: "2026-11-30T11:00:00Z"},
    )
    kube.put(
        pod(
            "team-b",
            "worker-0",
            "worker-0-space-7x9kq",
            generated="worker-0-space-7x9kq",
            health=("Unhealthy", "namespace ephemeral-ns-w7w7w is gone or being deleted"),
        )
    )

    pair = claim(
        8,
        "team-b",
        "pair",
        minutes_ago=60 * 24 * 9,
        devices=[("space", "slot-8"), ("space", "slot-9")],
        status_devices=[
            ready_device("slot-8", "ephemeral-ns-p8p8p"),
            unhealthy(ready_device("slot-9", "ephemeral-ns-p9p9p"), "NamespaceDeleted"),
        ],
    )
    kube.put(pair)
    provisioned(kube, pair, "slot-8", "ephemeral-ns-p8p8p")
    provisioned(kube, pair, "slot-9", "ephemeral-ns-p9p9p")

    half = claim(
        10,
        "team-b",
        "half",
        minutes_ago=0.2,
        devices=[("space", "slot-10"), ("space", "slot-11")],
        status_devices=[ready_device("slot-10", "ephemeral-ns-h0h0h")],
    )
    kube.put(half)
    provisioned(kube, half, "slot-10", "ephemeral-ns-h0h0h")

    kube.put(
        claim(
            12,
            "team-b",
            "leaving",
            minutes_ago=30,
            status_devices=[ready_device("slot-12", "ephemeral-ns-l2l2l")],
            deletionTimestamp=at(0.1),
            finalizers=["resource.kubernetes.io/delete-protection"],
        )
    )
    return kube

"""kubectl space's gathering: which claims are ours, their states, and what describe finds,
against the in-memory API server (tests/unit/kubectl_scene.py), the real controller included."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lightkube import codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Pod
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import RoleBinding
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.contract import (
    CONDITION_HEALTHY,
    CONDITION_READY,
    DEFAULT_DRIVER_NAME,
    EXPIRES_AT_FIELD,
    ManagementLabels,
)
from space_dra.kube import Forbidden
from space_dra.kube_memory import MemoryKube
from space_dra.kubectl.detail import ClaimDetail, describe, health_rows
from space_dra.kubectl.fetch import FetchError, fetch_claim, fetch_details, fetch_list
from space_dra.kubectl.model import (
    DELETING,
    FAILED,
    PENDING,
    READY,
    UNHEALTHY,
    ClaimSummary,
    parse_time,
    summaries,
    summarize,
)
from tests.support.claims import condition, make_claim, namespace_config, new_uid, ready_device
from tests.support.controller import running_reconciler
from tests.unit import kubectl_scene as scene

DRIVER = DEFAULT_DRIVER_NAME


def forbidden(what: str) -> Forbidden:
    return Forbidden(f'{what} is forbidden: User "alice" cannot list it', 403, "Forbidden")


async def rows(kube: MemoryKube, namespace: str | None = None) -> dict[str, ClaimSummary]:
    snapshot = await fetch_list(kube, DRIVER, namespace)
    found = summaries(snapshot.claims, DRIVER, DRIVER, snapshot.namespaces.items)
    return {f"{r.namespace}/{r.name}": r for r in found}


async def until_settled(kube: MemoryKube, count: int) -> dict[str, ClaimSummary]:
    """The rows of namespace default once ``count`` claims are there and none is Pending."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while True:
        found = await rows(kube, "default")
        if len(found) == count and all(r.state != PENDING for r in found.values()):
            return found
        if loop.time() > deadline:
            raise AssertionError(f"the controller never settled the claims: {found}")
        await asyncio.sleep(0.01)


async def detail_of(kube: MemoryKube, namespace: str, name: str) -> ClaimDetail:
    claim = await fetch_claim(kube, namespace, name)
    return describe(await fetch_details(kube, DRIVER, claim, scene.POLICY_CONFIG_MAP), DRIVER)


async def test_every_state_of_the_scene() -> None:
    found = await rows(scene.build())
    states = {key: (r.state, r.reason, r.namespaces, r.pods) for key, r in found.items()}
    assert states == {
        "team-a/bad-role": (FAILED, "InvalidConfig", (), ()),
        "team-a/expiring": (READY, None, ("ephemeral-ns-e2e2e",), ()),
        "team-a/ready": (READY, None, ("ephemeral-ns-r1r1r",), ("pod0", "pod1")),
        "team-a/waiting": (PENDING, "Unallocated", (), ()),
        "team-b/half": (PENDING, "Provisioning", ("ephemeral-ns-h0h0h",), ()),
        "team-b/leaving": (DELETING, None, ("ephemeral-ns-l2l2l",), ()),
        "team-b/pair": (
            UNHEALTHY,
            "NamespaceDeleted",
            ("ephemeral-ns-p8p8p", "ephemeral-ns-p9p9p"),
            (),
        ),
        "team-b/worker-0-space-7x9kq": (READY, None, ("ephemeral-ns-w7w7w",), ("worker-0",)),
    }
    assert found["team-a/bad-role"].message == scene.BAD_ROLE_MESSAGE
    assert found["team-b/worker-0-space-7x9kq"].pod_claim_name == "space"
    assert found["team-a/ready"].pod_claim_name is None


async def test_a_namespace_selects_its_claims_only() -> None:
    assert sorted(await rows(scene.build(), "team-b")) == [
        "team-b/half",
        "team-b/leaving",
        "team-b/pair",
        "team-b/worker-0-space-7x9kq",
    ]
    assert await rows(scene.build(), "nobody") == {}


async def test_other_drivers_and_classes_are_not_ours_unless_named() -> None:
    kube = scene.build()
    snapshot = await fetch_list(kube, DRIVER, "team-a")
    gpu_class = {r.name for r in summaries(snapshot.claims, DRIVER, "gpu")}
    # A pending claim is ours by its class; an allocated one by its devices, whatever the class.
    assert "gpu-pending" in gpu_class and "waiting" not in gpu_class
    assert "ready" in gpu_class
    gpu_driver = {r.name for r in summaries(snapshot.claims, "gpu.example.com", "gpu")}
    assert gpu_driver == {"gpu-claim", "gpu-pending"}


async def test_expiry_comes_from_status_data_then_from_the_namespace() -> None:
    found = await rows(scene.build())
    assert found["team-a/expiring"].expires_at == parse_time("2026-11-30T13:00:00Z")
    assert found["team-b/worker-0-space-7x9kq"].expires_at == parse_time("2026-11-30T11:00:00Z")
    assert found["team-a/ready"].expires_at is None


def test_status_data_wins_and_garbage_is_ignored() -> None:
    device = ready_device("slot-0", "ns-a")
    device["data"][EXPIRES_AT_FIELD] = "2026-12-01T00:00:00+01:00"
    claim = make_claim(new_uid(), devices=[("ns", "slot-0")], status_devices=[device])
    annotated = Namespace(
        metadata=ObjectMeta(
            name="ns-a", annotations={ManagementLabels(DRIVER).expires_at: "2027-01-01T00:00:00Z"}
        )
    )
    assert summarize(claim, DRIVER, {"ns-a": annotated}).expires_at == parse_time(
        "2026-11-30T23:00:00Z"
    )
    device["data"][EXPIRES_AT_FIELD] = "tomorrow"
    claim = make_claim(new_uid(), devices=[("ns", "slot-0")], status_devices=[device])
    assert summarize(claim, DRIVER, {"ns-a": annotated}).expires_at == parse_time(
        "2027-01-01T00:00:00Z"
    )
    assert summarize(claim, DRIVER).expires_at is None
    # The earliest of a claim's devices is the claim's.
    other = ready_device("slot-1", "ns-b")
    other["data"][EXPIRES_AT_FIELD] = "2026-12-01T00:00:00Z"
    late = ready_device("slot-0", "ns-a")
    late["data"][EXPIRES_AT_FIELD] = "2026-12-02T00:00:00Z"
    claim = make_claim(
        new_uid(), devices=[("ns", "slot-0"), ("ns", "slot-1")], status_devices=[late, other]
    )
    assert summarize(claim, DRIVER).expires_at == parse_time("2026-12-01T00:00:00Z")


def test_one_failed_device_fails_the_claim_and_a_malformed_record_is_a_failure() -> None:
    failed = {
        "driver": DRIVER,
        "pool": "space",
        "device": "slot-1",
        "conditions": [condition("NamespaceFailed", "True", "Rejected", "quota refused")],
    }
    claim = make_claim(
        new_uid(),
        devices=[("ns", "slot-0"), ("ns", "slot-1")],
        status_devices=[ready_device("slot-0", "ns-a"), failed],
    )
    row = summarize(claim, DRIVER)
    assert (row.state, row.reason, row.message, row.namespaces) == (
        FAILED,
        "Rejected",
        "quota refused",
        ("ns-a",),
    )
    broken = {
        "driver": DRIVER,
        "pool": "space",
        "device": "slot-0",
        "data": {"namespace": "ns-a"},
        "conditions": [condition(CONDITION_READY, "True")],
    }
    row = summarize(make_claim(new_uid(), status_devices=[broken]), DRIVER)
    assert (row.state, row.reason) == (FAILED, "InvalidRecord")
    assert "serviceAccount" in (row.message or "")


def test_pending_outranks_unhealthy_and_healthy_again_is_ready() -> None:
    sick = ready_device("slot-0", "ns-a")
    sick["conditions"].append(
        condition(CONDITION_HEALTHY, "False", "NamespaceTerminating", "ns-a is terminating")
    )
    devices = [("ns", "slot-0"), ("ns", "slot-1")]
    row = summarize(make_claim(new_uid(), devices=devices, status_devices=[sick]), DRIVER)
    assert (row.state, row.reason) == (PENDING, "Provisioning")
    assert [d.state for d in row.devices] == [UNHEALTHY, PENDING]
    both = [sick, ready_device("slot-1", "ns-b")]
    row = summarize(make_claim(new_uid(), devices=devices, status_devices=both), DRIVER)
    assert (row.state, row.reason, row.message) == (
        UNHEALTHY,
        "NamespaceTerminating",
        "ns-a is terminating",
    )
    assert row.namespaces == ("ns-a", "ns-b")
    sick["conditions"][-1] = condition(CONDITION_HEALTHY, "True", "Healthy")
    row = summarize(make_claim(new_uid(), devices=devices, status_devices=both), DRIVER)
    assert row.state == READY


async def test_describe_finds_objects_pods_health_and_events() -> None:
    detail = await detail_of(scene.build(), "team-a", "ready")
    [ns] = detail.namespaces
    assert ns.phase == "Active"
    assert [(o.kind, o.name) for o in ns.objects.items] == [
        ("ServiceAccount", "space-user"),
        ("RoleBinding", "space-dra-token-minter"),
        ("RoleBinding", "space-user"),
        ("ResourceQuota", "space-quota"),
        ("NetworkPolicy", "space-isolation"),
    ]
    assert [o.detail for o in ns.objects.items if o.kind == "RoleBinding"] == [
        "ClusterRole/test-token-minter",
        "ClusterRole/edit",
    ]
    assert [(p.name, p.phase) for p in detail.pods.items] == [
        ("pod0", "Running"),
        ("pod1", "Running"),
    ]
    # Only our driver's entry of the claim: pod0's GPU entry and pod1 (nothing reported) are not.
    assert [(h.pod, h.health) for h in detail.health.items] == [("pod0", "Healthy")]
    assert [e.reason for e in detail.events.items] == ["NamespaceProvisioned"]
    [policy] = detail.policies
    assert policy.settings is not None and policy.policy is not None
    assert (policy.settings["role"], policy.settings["quota"]) == ("edit", {"pods": "10"})
    assert policy.policy["allowedRoles"] == ["edit", "view"]


async def test_a_template_claim_is_found_in_its_pod_through_the_pod_claim_name() -> None:
    detail = await detail_of(scene.build(), "team-b", "worker-0-space-7x9kq")
    assert detail.generated_for == "worker-0"
    assert [(h.pod, h.resource, h.health) for h in detail.health.items] == [
        ("worker-0", "claim:space", "Unhealthy")
    ]
    assert detail.namespaces[0].expires_at == parse_time("2026-11-30T11:00:00Z")


def test_health_matches_the_request_suffix_and_skips_other_claims() -> None:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "team-a"},
        "spec": {
            "containers": [{"name": "c", "image": "x"}],
            "resourceClaims": [
                {"name": "mine", "resourceClaimName": "claim-a"},
                {"name": "theirs", "resourceClaimName": "claim-b"},
            ],
        },
        "status": {
            "initContainerStatuses": [
                {
                    "name": "init",
                    "image": "x",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "allocatedResourcesStatus": [
                        {
                            "name": "claim:mine/space",
                            "resources": [
                                {"resourceID": f"{DRIVER}/namespace=a", "health": "Healthy"}
                            ],
                        }
                    ],
                }
            ],
            "containerStatuses": [
                {
                    "name": "c",
                    "image": "x",
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "allocatedResourcesStatus": [
                        {
                            "name": "claim:theirs",
                            "resources": [{"resourceID": f"{DRIVER}/namespace=b"}],
                        },
                        {
                            "name": "claim:mine",
                            # A claim may hold devices of several drivers.
                            "resources": [
                                {"resourceID": "gpu.example.com/gpu=0", "health": "Healthy"},
                                {"resourceID": f"{DRIVER}/namespace=a"},
                            ],
                        },
                    ],
                }
            ],
        },
    }
    pod = codecs.from_dict(body)
    assert isinstance(pod, Pod)
    found = [(h.container, h.resource, h.health) for h in health_rows([pod], "claim-a", DRIVER)]
    assert found == [("init", "claim:mine/space", "Healthy"), ("c", "claim:mine", "Unknown")]


async def test_what_rbac_forbids_is_said_in_its_part_and_the_rest_shows() -> None:
    kube = scene.build()
    kube.fail_next("list", RoleBinding, forbidden("rolebindings"))
    kube.fail_next("get", Pod, forbidden("pods"))
    kube.fail_next("list", Event, forbidden("events"))
    detail = await detail_of(kube, "team-a", "ready")
    objects = detail.namespaces[0].objects
    assert (
        objects.error is not None
        and "cannot read RoleBindings in ephemeral-ns-r1r1r" in objects.error
    )
    assert {o.kind for o in objects.items} == {"ServiceAccount", "ResourceQuota", "NetworkPolicy"}
    for part in (detail.pods, detail.health, detail.events):
        assert part.items == () and part.error and "forbidden" in part.error
    assert detail.summary.state == READY and detail.policies[0].settings is not None


async def test_a_namespace_that_cannot_be_read_or_is_gone() -> None:
    kube = scene.build()
    kube.fail_next("get", Namespace, forbidden("namespaces"))
    detail = await detail_of(kube, "team-b", "worker-0-space-7x9kq")
    assert detail.namespaces[0].phase is None
    # The expiry then comes from nowhere: the annotation could not be read.
    assert detail.summary.expires_at is None
    kube.remove(Namespace, "ephemeral-ns-w7w7w")
    detail = await detail_of(kube, "team-b", "worker-0-space-7x9kq")
    assert detail.namespaces[0].phase == "NotFound"
    assert detail.namespaces[0].objects.items == ()


async def test_list_goes_on_without_namespaces_and_fails_without_claims() -> None:
    kube = scene.build()
    kube.fail_next("list", Namespace, forbidden("namespaces"))
    snapshot = await fetch_list(kube, DRIVER, None)
    assert (
        snapshot.namespaces.error
        and "expiry times come from claim status only" in snapshot.namespaces.error
    )
    assert len(snapshot.claims) == len(kube.stored(ResourceClaim))
    kube.fail_next("list", ResourceClaim, forbidden("resourceclaims"))
    with pytest.raises(FetchError, match=r"^cannot list ResourceClaims in namespace team-a: "):
        await fetch_list(kube, DRIVER, "team-a")


async def test_describe_refuses_missing_claims() -> None:
    kube = scene.build()
    with pytest.raises(FetchError, match=r'^ResourceClaim "nope" not found in namespace team-a$'):
        await fetch_claim(kube, "team-a", "nope")


async def test_describe_shows_what_the_real_controller_made_and_refused() -> None:
    """The controller provisions and refuses; describe's policy, objects and Events agree."""
    kube = MemoryKube()
    labels = ManagementLabels(DRIVER)
    configs = [("FromClaim", namespace_config(role="view", networkPolicy="deny-all"), ["ns"])]
    refused = [("FromClaim", namespace_config(role="cluster-admin"), ["ns"])]
    async with running_reconciler(kube):
        kube.put(make_claim(new_uid(), name="good", configs=configs))
        kube.put(make_claim(new_uid(), name="bad", configs=refused, devices=[("ns", "slot-1")]))

        found = await until_settled(kube, 2)
    good, bad = found["default/good"], found["default/bad"]
    assert good.state == READY and bad.state == FAILED and bad.reason == "InvalidConfig"

    detail = await detail_of(kube, "default", "good")
    [namespace] = detail.namespaces
    bindings = [(b.metadata, "RoleBinding") for b in kube.stored(RoleBinding) if b.metadata]
    policies = [(p.metadata, "NetworkPolicy") for p in kube.stored(NetworkPolicy) if p.metadata]
    made = [
        (kind, meta.name)
        for meta, kind in bindings + policies
        if meta.namespace == namespace.name and (meta.labels or {}).get(labels.managed_by)
    ]
    shown = [
        (o.kind, o.name)
        for o in namespace.objects.items
        if o.kind in ("RoleBinding", "NetworkPolicy")
    ]
    assert sorted(shown) == sorted(made) and len(made) == 3
    assert detail.policies[0].settings is not None
    assert detail.policies[0].settings["role"] == "view"
    assert "NamespaceProvisioned" in [e.reason for e in detail.events.items]

    refusal = await detail_of(kube, "default", "bad")
    # The message the controller recorded is the one describe computes from the same configs.
    assert refusal.policies[0].error is not None
    assert (
        refusal.summary.message is not None and refusal.policies[0].error in refusal.summary.message
    )


async def test_policy_is_resolved_within_the_installation_policy_when_it_can_be_read() -> None:
    kube = scene.build()
    detail = await detail_of(kube, "team-a", "ready")
    assert detail.installation.error is None and detail.installation.policy is not None
    assert detail.installation.policy["minPodSecurity"] == "restricted"
    # The class sets no minimum; the installation's raises the default, as the controller does.
    assert detail.policies[0].settings is not None
    assert detail.policies[0].settings["podSecurity"] == "restricted"

    kube.fail_next("get", ConfigMap, forbidden("configmaps"))
    detail = await detail_of(kube, "team-a", "ready")
    assert detail.installation.error is not None
    assert detail.installation.error.startswith(
        "cannot read ConfigMap space-dra/space-dra-policy: configmaps is forbidden"
    )
    assert detail.policies[0].settings is not None
    assert detail.policies[0].settings["podSecurity"] == "baseline"

    kube.put(
        ConfigMap(
            metadata=ObjectMeta(namespace="space-dra", name="space-dra-policy"),
            data={"policy.yaml": "allowedRoles: admin\n"},
        )
    )
    detail = await detail_of(kube, "team-a", "ready")
    assert detail.installation.error is not None
    assert detail.installation.error.startswith("cannot use ConfigMap space-dra/space-dra-policy: ")
    assert "allowedRoles" in detail.installation.error

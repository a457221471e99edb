"""Namespaces that start with content: a template namespace's ConfigMaps and Secrets copied in.

Against the in-memory API server with the real reconciler: what is copied and how it is
labelled, where the controller refuses to copy from (a template the policy does not name,
a namespace that is missing or not labelled as a template, the claim's own namespace),
that nothing is left half-made, that a template changed later does not reach a namespace
already handed out, and that copies count against the namespace's quota.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from lightkube.models.core_v1 import ResourceQuotaStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace, ResourceQuota, Secret
from lightkube.resources.resource_v1 import DeviceClass

from space_dra.config import SOURCE_CLAIM, SOURCE_CLASS, Policy
from space_dra.contract import (
    DEFAULT_DRIVER_NAME,
    MANAGED_BY_VALUE,
    QUOTA_NAME,
    ManagementLabels,
    NamespaceRecord,
)
from space_dra.controller.templates import copied, copy_of
from space_dra.controller.warm import WarmOptions
from space_dra.kube import Forbidden, Invalid
from space_dra.kube_memory import MemoryKube
from tests.support.claims import make_claim, namespace_config, new_uid
from tests.support.controller import (
    claim_view,
    device_state,
    events,
    eventually,
    namespaces,
    running_reconciler,
    settled,
)

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)
TEMPLATE = "team-defaults"
POLICY = Policy(allowed_templates=(TEMPLATE,))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def template_namespace(name: str = TEMPLATE, labelled: bool = True) -> Namespace:
    labels = {LABELS.template: "true"} if labelled else {}
    return Namespace(metadata=ObjectMeta(name=name, labels=labels))


def config_map(namespace: str, name: str, **data: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace=namespace), data=dict(data))


def secret(namespace: str, name: str, kind: str = "Opaque", **data: str) -> Secret:
    encoded = {key: b64(value) for key, value in data.items()}
    return Secret(metadata=ObjectMeta(name=name, namespace=namespace), type=kind, data=encoded)


def put_template(kube: MemoryKube, name: str = TEMPLATE, labelled: bool = True) -> None:
    kube.put(template_namespace(name, labelled))
    settings = config_map(name, "settings", mode="fast")
    assert settings.metadata is not None
    settings.metadata.labels = {"app": "demo", LABELS.claim_uid: "forged"}
    settings.metadata.annotations = {
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "team": "a",
    }
    kube.put(settings)
    kube.put(
        secret(name, "registry", "kubernetes.io/dockerconfigjson", **{".dockerconfigjson": "{}"})
    )
    # What every namespace has anyway, and another namespace's credentials: never copied.
    kube.put(config_map(name, "kube-root-ca.crt", **{"ca.crt": "PEM"}))
    kube.put(secret(name, "legacy-token", "kubernetes.io/service-account-token", token="t"))


def claim_with(template: str | None, *, namespace: str = "default", **fields: Any) -> Any:
    config = namespace_config(**({"template": template} if template else {}), **fields)
    return make_claim(new_uid(), namespace=namespace, configs=[(SOURCE_CLAIM, config, ["ns"])])


def in_namespace(kube: MemoryKube, kind: type[Any], namespace: str) -> dict[str, Any]:
    return {
        obj.metadata.name: obj
        for obj in kube.stored(kind)
        if obj.metadata and obj.metadata.namespace == namespace
    }


async def ready(kube: MemoryKube) -> NamespaceRecord:
    return await eventually(lambda: device_state(kube).record, "the namespace recorded ready")


async def failed(kube: MemoryKube) -> str:
    return await eventually(lambda: device_state(kube).failure, "the claim marked failed")


async def test_the_new_namespace_starts_with_copies_labelled_as_the_drivers() -> None:
    kube = MemoryKube()
    put_template(kube)
    async with running_reconciler(kube, policy=POLICY):
        kube.put(claim_with(TEMPLATE))
        record = await ready(kube)
    config_maps = in_namespace(kube, ConfigMap, record.namespace)
    secrets = in_namespace(kube, Secret, record.namespace)
    assert set(config_maps) == {"settings"}, "kube-root-ca.crt is the namespace's own"
    assert set(secrets) == {"registry"}, "a ServiceAccount token is never copied"
    settings, registry = config_maps["settings"], secrets["registry"]
    assert settings.data == {"mode": "fast"}
    assert registry.type == "kubernetes.io/dockerconfigjson"
    assert registry.data == {".dockerconfigjson": b64("{}")}
    for copy, source in ((settings, "settings"), (registry, "registry")):
        assert copy.metadata is not None
        assert copy.metadata.labels is not None
        assert copy.metadata.labels[LABELS.managed_by] == MANAGED_BY_VALUE
        assert copy.metadata.annotations is not None
        assert copy.metadata.annotations[LABELS.template_source] == f"{TEMPLATE}/{source}"
    assert settings.metadata is not None and settings.metadata.labels is not None
    assert settings.metadata.labels == {"app": "demo", LABELS.managed_by: MANAGED_BY_VALUE}
    assert settings.metadata.annotations == {
        "team": "a",
        LABELS.template_source: f"{TEMPLATE}/settings",
    }
    # The template itself is untouched.
    assert set(in_namespace(kube, ConfigMap, TEMPLATE)) == {"settings", "kube-root-ca.crt"}


async def test_a_template_changed_later_does_not_touch_a_namespace_handed_out() -> None:
    kube = MemoryKube()
    put_template(kube)
    async with running_reconciler(kube, policy=POLICY) as reconciler:
        kube.put(claim_with(TEMPLATE))
        record = await ready(kube)
        await settled(reconciler)
        kube.put(config_map(TEMPLATE, "settings", mode="slow"))
        kube.put(config_map(TEMPLATE, "added-later", x="y"))
        kube.remove(Secret, "registry", TEMPLATE)
        # The claim changes (a label, say), status and all: it is reconciled again.
        current = claim_view(kube).claim
        assert current.metadata is not None
        current.metadata.labels = {"touched": "yes"}
        kube.put(current)
        await settled(reconciler)
    config_maps = in_namespace(kube, ConfigMap, record.namespace)
    assert set(config_maps) == {"settings"}
    assert config_maps["settings"].data == {"mode": "fast"}
    assert set(in_namespace(kube, Secret, record.namespace)) == {"registry"}
    assert kube.calls.count("create ConfigMap") == 1
    assert kube.calls.count("list Secret") == 1, "the template was read once"


async def test_a_template_the_policy_does_not_name_is_refused_naming_the_field() -> None:
    kube = MemoryKube()
    put_template(kube)
    put_template(kube, "elsewhere")
    async with running_reconciler(kube, policy=POLICY) as reconciler:
        kube.put(claim_with("elsewhere"))
        failure = await failed(kube)
        await settled(reconciler)
    assert failure.startswith("InvalidConfig: ")
    assert "template: 'elsewhere' is not allowed; choose one of team-defaults" in failure
    assert "(policy.allowedTemplates)" in failure
    assert namespaces(kube).keys() == {TEMPLATE, "elsewhere"}, "nothing made"
    assert "create Namespace" not in kube.calls


async def test_a_device_class_narrows_the_templates_it_allows() -> None:
    kube = MemoryKube()
    put_template(kube)
    narrowing = namespace_config(policy={"allowedTemplates": []})
    config = namespace_config(template=TEMPLATE)
    async with running_reconciler(kube, policy=POLICY) as reconciler:
        kube.put(
            make_claim(
                new_uid(), configs=[(SOURCE_CLASS, narrowing, []), (SOURCE_CLAIM, config, [])]
            )
        )
        failure = await failed(kube)
        await settled(reconciler)
    assert "the policy allows no template (policy.allowedTemplates)" in failure


async def test_a_missing_template_fails_the_claim_clearly_and_makes_nothing() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube, policy=POLICY) as reconciler:
        kube.put(claim_with(TEMPLATE))
        failure = await failed(kube)
        await settled(reconciler)
    assert failure.startswith("TemplateUnavailable: template: template namespace team-defaults")
    assert "does not exist" in failure
    assert namespaces(kube) == {}
    assert "create Namespace" not in kube.calls
    assert [e.reason for e in events(kube)] == ["NamespaceTemplateUnavailable"]


async def test_a_namespace_not_labelled_as_a_template_is_never_copied_from() -> None:
    kube = MemoryKube()
    # The claim's own namespace, holding Secrets its users may not read: even when the
    # policy names it, it is not a template until an admin labels it one.
    put_template(kube, "team-a", labelled=False)
    policy = Policy(allowed_templates=("team-a",))
    async with running_reconciler(kube, policy=policy) as reconciler:
        kube.put(claim_with("team-a", namespace="team-a"))
        failure = await failed(kube)
        await settled(reconciler)
    assert failure.startswith("TemplateUnavailable: ")
    assert f'namespace team-a is not labelled {LABELS.template}: "true"' in failure
    assert namespaces(kube).keys() == {"team-a"}
    assert "create Secret" not in kube.calls and "create ConfigMap" not in kube.calls


async def test_without_a_template_nothing_is_read_or_copied() -> None:
    kube = MemoryKube()
    put_template(kube, "default")
    async with running_reconciler(kube, policy=POLICY):
        kube.put(claim_with(None))
        record = await ready(kube)
    assert in_namespace(kube, Secret, record.namespace) == {}
    assert "list Secret" not in kube.calls and "list ConfigMap" not in kube.calls


async def test_a_copy_refused_at_admission_fails_the_claim_and_is_collected() -> None:
    kube = MemoryKube()
    put_template(kube)
    # Another admission policy of the cluster refuses it (422): the namespace is half-made.
    kube.fail_next("create", ConfigMap, Invalid('configmaps "settings" is invalid: no', 422))
    async with running_reconciler(kube, policy=POLICY, rejection_memory_seconds=60):
        kube.put(claim_with(TEMPLATE))
        failure = await failed(kube)
        assert failure.startswith("Rejected: ")
        assert "copying ConfigMap settings of template team-defaults" in failure
        await eventually(lambda: namespaces(kube).keys() == {TEMPLATE}, "the namespace collected")


async def test_a_template_deleted_later_fails_new_claims_clearly() -> None:
    kube = MemoryKube()
    put_template(kube)
    async with running_reconciler(kube, policy=POLICY) as reconciler:
        kube.put(claim_with(TEMPLATE))
        first = await ready(kube)
        kube.remove(Namespace, TEMPLATE)
        second = claim_with(TEMPLATE)
        assert second.metadata is not None
        second.metadata.name = "second"
        kube.put(second)
        failure = await eventually(lambda: device_state(kube, "second").failure, "refused")
        await settled(reconciler)
    assert "template namespace team-defaults does not exist" in failure
    assert set(namespaces(kube)) == {first.namespace}, "the first keeps its namespace"


def counted_quota(verb: str, quota: Any) -> None:
    """The quota controller, at once: every limited resource counted (nothing used yet)."""
    hard = dict(quota.spec.hard or {})
    quota.status = ResourceQuotaStatus(hard=hard, used=dict.fromkeys(hard, "0"))


def quotas_in(kube: MemoryKube, namespace: str) -> list[ResourceQuota]:
    return [
        q for q in kube.stored(ResourceQuota) if q.metadata and q.metadata.namespace == namespace
    ]


def quota_admission(kube: MemoryKube) -> Any:
    """The API server's quota admission for Secrets (count/secrets), once counted."""

    def admit(verb: str, obj: Any) -> None:
        namespace = obj.metadata.namespace
        for quota in quotas_in(kube, namespace):
            limit = (quota.status.hard or {}).get("count/secrets") if quota.status else None
            if limit is None:
                continue
            used = len(in_namespace(kube, Secret, namespace))
            if used + 1 > int(limit):
                raise Forbidden(
                    f'secrets "{obj.metadata.name}" is forbidden: exceeded quota: {QUOTA_NAME}, '
                    f"requested: count/secrets=1, used: count/secrets={used}, "
                    f"limited: count/secrets={limit}",
                    403,
                    "Forbidden",
                )

    return admit


async def test_copies_over_the_quota_fail_the_claim_and_leave_nothing() -> None:
    kube = MemoryKube()
    put_template(kube)
    kube.put(secret(TEMPLATE, "second", token="x"))
    kube.admit(ResourceQuota, counted_quota)
    kube.admit(Secret, quota_admission(kube))
    async with running_reconciler(kube, policy=POLICY, rejection_memory_seconds=60):
        kube.put(claim_with(TEMPLATE, quota={"count/secrets": "1"}))
        failure = await failed(kube)
        assert failure.startswith("Rejected: the API server rejected the namespace's objects")
        assert "exceeded quota" in failure and "of template team-defaults" in failure
        await eventually(lambda: namespaces(kube).keys() == {TEMPLATE}, "the namespace collected")
        assert [e.reason for e in events(kube)] == ["NamespaceRejected"]


async def test_copies_within_the_quota_wait_until_it_is_counted() -> None:
    kube = MemoryKube()
    put_template(kube)
    kube.admit(Secret, quota_admission(kube))
    counted_when_copied: list[bool] = []

    def record_quota_state(verb: str, obj: Any) -> None:
        quotas = quotas_in(kube, obj.metadata.namespace)
        counted_when_copied.append(all(q.status and q.status.used for q in quotas))

    kube.admit(Secret, record_quota_state)
    async with running_reconciler(kube, policy=POLICY):
        kube.put(claim_with(TEMPLATE, quota={"count/secrets": "5"}))
        quota = await eventually(lambda: kube.stored(ResourceQuota), "the quota made")
        await asyncio.sleep(0.2)
        assert counted_when_copied == [], "nothing copied before the quota counts"
        counted = quota[0]
        counted_quota("update", counted)
        kube.put(counted)  # the quota controller's status write
        record = await ready(kube)
    assert counted_when_copied == [True]
    assert set(in_namespace(kube, Secret, record.namespace)) == {"registry"}


async def test_a_quota_never_counted_keeps_the_namespace_waiting_not_failed() -> None:
    kube = MemoryKube()
    put_template(kube)
    async with running_reconciler(
        kube, policy=POLICY, template_quota_wait_seconds=0.1
    ) as reconciler:
        kube.put(claim_with(TEMPLATE, quota={"count/secrets": "5"}))
        await eventually(lambda: kube.stored(ResourceQuota), "the quota made")
        await asyncio.sleep(0.5)
        state = device_state(kube)
        assert state.record is None and state.failure is None, "retried, not refused"
        [quota] = kube.stored(ResourceQuota)
        counted_quota("update", quota)
        kube.put(quota)
        # The work queue's backoff brings the claim back.
        await eventually(lambda: device_state(kube).record, "ready once counted", within=30)
        await settled(reconciler)
    assert len([n for n in namespaces(kube) if n != TEMPLATE]) == 1


def test_what_a_template_holds_is_copied_unless_it_is_the_namespaces_own() -> None:
    assert copied(config_map(TEMPLATE, "settings"))
    assert not copied(config_map(TEMPLATE, "kube-root-ca.crt"))
    assert copied(secret(TEMPLATE, "tls", "kubernetes.io/tls"))
    assert not copied(secret(TEMPLATE, "t", "kubernetes.io/service-account-token"))
    going = config_map(TEMPLATE, "going")
    assert going.metadata is not None
    going.metadata.deletionTimestamp = "2026-01-01T00:00:00Z"  # type: ignore[assignment]
    assert not copied(going)
    immutable = secret(TEMPLATE, "fixed", token="x")
    immutable.immutable = True
    copy = copy_of(immutable, "ephemeral-ns-abcde", LABELS)
    assert isinstance(copy, Secret) and copy.immutable
    assert copy.metadata is not None and copy.metadata.namespace == "ephemeral-ns-abcde"
    assert copy.metadata.uid is None and copy.metadata.resourceVersion is None


def warm_pool(defaults: dict[str, Any]) -> tuple[DeviceClass, WarmOptions]:
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "space"},
        "spec": {
            "config": [
                {
                    "opaque": {
                        "driver": DEFAULT_DRIVER_NAME,
                        "parameters": namespace_config(**defaults),
                    }
                }
            ]
        },
    }
    klass = DeviceClass.from_dict(body)
    assert isinstance(klass, DeviceClass)
    return klass, WarmOptions(size=2, pool_size=4, device_class="space", policy=POLICY)


def warm_namespaces(kube: MemoryKube) -> set[str]:
    return {
        ns.metadata.name or ""
        for ns in kube.stored(Namespace)
        if ns.metadata and (ns.metadata.labels or {}).get(LABELS.warm)
    }


async def test_a_claim_with_a_template_never_gets_a_warm_namespace() -> None:
    kube = MemoryKube()
    put_template(kube)
    klass, options = warm_pool({})
    kube.put(klass)
    async with running_reconciler(kube, policy=POLICY, warm=options):
        await eventually(lambda: len(warm_namespaces(kube)) == 2, "the warm pool filled")
        warm = warm_namespaces(kube)
        kube.put(claim_with(TEMPLATE))
        record = await ready(kube)
    assert record.namespace not in warm
    assert set(in_namespace(kube, ConfigMap, record.namespace)) == {"settings"}


async def test_defaults_naming_a_template_keep_no_warm_pool() -> None:
    kube = MemoryKube()
    put_template(kube)
    klass, options = warm_pool({"template": TEMPLATE})
    kube.put(klass)
    async with running_reconciler(kube, policy=POLICY, warm=options) as reconciler:
        kube.put(
            make_claim(new_uid(), configs=[(SOURCE_CLASS, namespace_config(template=TEMPLATE), [])])
        )
        record = await ready(kube)
        await asyncio.sleep(0.3)
        await settled(reconciler)
    assert warm_namespaces(kube) == set(), "a warm copy would be as old as the namespace"
    assert set(in_namespace(kube, Secret, record.namespace)) == {"registry"}


async def test_a_large_template_is_copied_whole() -> None:
    kube = MemoryKube()
    kube.put(template_namespace())
    for index in range(40):
        kube.put(config_map(TEMPLATE, f"part-{index}", index=str(index)))
    async with running_reconciler(kube, policy=POLICY):
        kube.put(claim_with(TEMPLATE))
        record = await ready(kube)
    copies = in_namespace(kube, ConfigMap, record.namespace)
    assert {name: c.data for name, c in copies.items()} == {
        f"part-{i}": {"index": str(i)} for i in range(40)
    }

"""Namespaces that start with content: copies of a template namespace's ConfigMaps and Secrets.

An admin keeps shared configuration (credentials, CA bundles, settings) in a
namespace labelled ``<driver>/template: "true"``; a claim names it in
``NamespaceConfig.template``, and its namespace starts with copies made while it is
provisioned, before it is recorded ready. Copying needs two deliberate acts by admins:
the policy names the namespace (``policy.allowedTemplates``, checked by
:mod:`space_dra.config`), and the namespace carries the label. So a user who may create
claims can never have the controller copy from anywhere else, in particular not from the
claim's own namespace, whose Secrets that user may not be allowed to read.

What is copied: ConfigMaps and Secrets, with their data, type, labels and annotations
(not the driver's own keys), plus the driver's managed-by label (the chart's admission
policy then keeps the workload from changing or deleting them) and an annotation naming
the original. Not copied: the ``kube-root-ca.crt`` ConfigMap every namespace gets anyway,
and ServiceAccount token Secrets: they are the template namespace's credentials, and in
the new namespace the token controller would fill one in for whichever ServiceAccount it
names. Roles and RoleBindings are never copied: creating them would need the controller
to hold (or ``escalate`` to, and ``bind``) whatever they grant, and would let whoever can
write the template hand any role to any subject in every new namespace.

A snapshot: copies are created once, while the namespace is provisioned, and never
patched, so a template that changes later does not touch namespaces already handed out,
and the controller needs only ``create`` on ConfigMaps and Secrets cluster-wide (its
admission policy confines that to namespaces it manages) and read access in the template
namespaces alone (a Role the chart makes in each).

Copies count against the namespace's ResourceQuota like anything else. The API server's
quota admission counts nothing for a quota whose usage the quota controller has not
computed yet, so when the namespace has a quota the copies wait for it first. A copy that
the quota (or any admission) refuses is :class:`CopyRefused`: the claim fails as
``Rejected`` and the half-made namespace is collected, like any refused one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeAlias

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace, ResourceQuota, Secret

from space_dra.contract import QUOTA_NAME, ManagementLabels
from space_dra.kube import Conflict, ControllerAPI, Forbidden, Invalid, KubeError, NotFound

ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
SERVICE_ACCOUNT_TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105 - a Secret type
# Bookkeeping of the client that wrote the original, not content.
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
# The API server's quota admission while the quota controller has not counted yet.
_QUOTA_NOT_COUNTED = "status unknown for quota"
# Copies created at once: a template may hold many objects.
COPY_CONCURRENCY = 16

Copyable: TypeAlias = ConfigMap | Secret


class TemplateUnavailable(Exception):
    """The named template cannot be used: missing, not labelled, being deleted, unreadable."""


class CopyRefused(Exception):
    """The API server refused a copy (quota, admission): the same copy would be refused again."""


@dataclass(frozen=True)
class Template:
    """What a template namespace holds that a new namespace starts with, as read once."""

    name: str
    objects: tuple[Copyable, ...]


def copied(obj: Copyable) -> bool:
    """Whether ``obj`` of a template namespace is part of what new namespaces start with."""
    meta = obj.metadata
    if meta is None or not meta.name or meta.deletionTimestamp:
        return False
    if isinstance(obj, ConfigMap):
        return meta.name != ROOT_CA_CONFIG_MAP
    return obj.type != SERVICE_ACCOUNT_TOKEN_TYPE


def copy_of(obj: Copyable, namespace: str, labels: ManagementLabels) -> Copyable:
    """``obj`` as it is created in ``namespace``: the same content, labelled as the driver's."""
    meta = obj.metadata or ObjectMeta()
    kept_labels = {k: v for k, v in (meta.labels or {}).items() if not k.startswith(labels.prefix)}
    annotations = {
        k: v
        for k, v in (meta.annotations or {}).items()
        if k not in _DROPPED_ANNOTATIONS and not k.startswith(labels.prefix)
    }
    annotations[labels.template_source] = f"{meta.namespace}/{meta.name}"
    metadata = ObjectMeta(
        name=meta.name,
        namespace=namespace,
        labels={**kept_labels, **labels.managed},
        annotations=annotations,
    )
    if isinstance(obj, Secret):
        return Secret(metadata=metadata, type=obj.type, data=obj.data, immutable=obj.immutable)
    return ConfigMap(
        metadata=metadata, data=obj.data, binaryData=obj.binaryData, immutable=obj.immutable
    )


class TemplateCopier:
    def __init__(
        self, kube: ControllerAPI, labels: ManagementLabels, quota_wait_seconds: float = 30.0
    ) -> None:
        self.kube = kube
        self.labels = labels
        self.quota_wait_seconds = quota_wait_seconds

    async def read(self, name: str | None) -> Template | None:
        """The template ``name`` (None: no template). Raises TemplateUnavailable naming
        what to fix; any other KubeError is transient."""
        if name is None:
            return None
        label = f'{self.labels.template}: "true"'
        try:
            namespace = await self.kube.get(Namespace, name)
        except NotFound:
            raise TemplateUnavailable(
                f"template namespace {name} does not exist; create it (labelled {label}) "
                "or choose another of policy.allowedTemplates"
            ) from None
        meta = namespace.metadata or ObjectMeta()
        namespace_labels = meta.labels or {}
        if namespace_labels.get(self.labels.template) != "true":
            raise TemplateUnavailable(
                f"namespace {name} is not labelled {label}, so it is not a template"
            )
        if self.labels.managed_by in namespace_labels:
            raise TemplateUnavailable(
                f"namespace {name} was provisioned by this driver and cannot be a template"
            )
        if meta.deletionTimestamp:
            raise TemplateUnavailable(f"template namespace {name} is being deleted")
        where = {"metadata.namespace": name}
        try:
            config_maps, _ = await self.kube.list(ConfigMap, fields=where)
            secrets, _ = await self.kube.list(Secret, fields=where)
        except Forbidden as exc:
            raise TemplateUnavailable(
                f"the controller may not read template namespace {name} ({exc}); the chart "
                "grants it in each namespace of its policy.allowedTemplates when installed "
                "or upgraded, so run helm upgrade after creating the namespace"
            ) from None
        objects: list[Copyable] = [*config_maps, *secrets]
        return Template(name, tuple(obj for obj in objects if copied(obj)))

    async def copy(self, template: Template | None, namespace: str, has_quota: bool) -> int:
        """Create the template's copies in ``namespace``; how many there are. Raises
        CopyRefused when the API server refuses one; any KubeError is transient."""
        if template is None or not template.objects:
            return 0
        if has_quota:
            await self._wait_until_quota_counts(namespace)
        copies = [copy_of(obj, namespace, self.labels) for obj in template.objects]
        gate = asyncio.Semaphore(COPY_CONCURRENCY)

        async def create(obj: Copyable) -> None:
            async with gate:
                await self._create(template.name, obj)

        results = await asyncio.gather(*(create(obj) for obj in copies), return_exceptions=True)
        for failure in results:
            if isinstance(failure, CopyRefused):
                raise failure
        for failure in results:
            if isinstance(failure, BaseException):
                raise failure
        return len(copies)

    async def _create(self, template: str, obj: Copyable) -> None:
        meta = obj.metadata or ObjectMeta()
        what = f"copying {type(obj).__name__} {meta.name} of template {template}"
        try:
            await self.kube.create(obj)
        except Conflict:
            # Made by an earlier attempt: the namespace has not been handed out yet.
            return
        except Forbidden as exc:
            if _QUOTA_NOT_COUNTED in str(exc):
                raise KubeError(f"{what}: {exc}", exc.status, exc.reason) from exc
            raise CopyRefused(f"{what}: {exc}") from exc
        except Invalid as exc:
            raise CopyRefused(f"{what}: {exc}") from exc

    async def _wait_until_quota_counts(self, namespace: str) -> None:
        """Until the quota controller has computed the usage of every resource the
        namespace's ResourceQuota limits (transient KubeError after a while)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.quota_wait_seconds
        delay = 0.05
        while True:
            quota = await self.kube.get(ResourceQuota, QUOTA_NAME, namespace)
            limited = set((quota.spec.hard if quota.spec else None) or {})
            status = quota.status
            if limited <= set((status.hard if status else None) or {}) and limited <= set(
                (status.used if status else None) or {}
            ):
                return
            if loop.time() >= deadline:
                raise KubeError(
                    f"ResourceQuota {namespace}/{QUOTA_NAME} has no usage yet after "
                    f"{self.quota_wait_seconds:g}s; the template's copies wait for it so "
                    "that they count against it (is the quota controller running?)"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

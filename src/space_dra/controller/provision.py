"""Give every allocated device of a claim a ready namespace, or record why not.

For each of our devices without a record: check the config against policy (a
rejection is recorded as ``NamespaceFailed`` and nothing is created, see
:mod:`refusals`), adopt a namespace we already made for it (after a crash), take one
from the warm pool when the settings match (see :mod:`warm`), or create one (retrying
another name if it is taken) and fill it (server-side apply, so re-running
converges); then record ``NamespaceReady`` with the namespace, ServiceAccount and
server URL in the claim's status.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from lightkube.resources.resource_v1 import ResourceClaim

from space_dra import faults
from space_dra.config import ConfigError, Policy, Settings, resolve
from space_dra.contract import (
    WORKLOAD_SERVICE_ACCOUNT,
    ClaimView,
    DeviceRef,
    ManagementLabels,
    NamespaceRecord,
    NamespaceView,
    RecordError,
    device_label,
)
from space_dra.controller.create import create_with_free_name
from space_dra.controller.manifests import (
    DnsServers,
    expiry,
    namespace_contents,
    namespace_object,
)
from space_dra.controller.namespaces import ManagedNamespaces
from space_dra.controller.ownership import Signer
from space_dra.controller.refusals import (
    REFUSAL_REPORTS,
    RETRIED_FAILURES,
    Refusals,
    shape_refusal,
)
from space_dra.controller.status import DeviceOutcome, emit_event, emit_pod_events, write_status
from space_dra.controller.templates import CopyRefused, TemplateCopier, TemplateUnavailable
from space_dra.controller.warm import WarmPool, settings_key
from space_dra.kube import ControllerAPI, Invalid, KubeError, NotFound
from space_dra.logs import log_event
from space_dra.metrics import FAILURES, PROVISION_SECONDS, PROVISIONED, WARM_HANDOVERS
from space_dra.times import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProvisionerOptions:
    driver: str
    plugin_service_account: str  # "<namespace>/<name>"
    token_minter_cluster_role: str
    pod_api_server: str  # recorded for pods
    # How long a rejection by the API server is answered from memory.
    rejection_memory_seconds: float = 300.0
    # The installation's policy; a DeviceClass's can only narrow it.
    policy: Policy = field(default_factory=Policy)
    dns: DnsServers = field(default_factory=DnsServers)
    # How long a template's copies wait for the quota controller to count a new quota.
    template_quota_wait_seconds: float = 30.0


class ClaimGone(Exception):
    """The claim was deleted, or replaced under its name, while it was provisioned."""


class Provisioner:
    def __init__(
        self,
        kube: ControllerAPI,
        options: ProvisionerOptions,
        signer: Signer,
        namespaces: ManagedNamespaces,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.kube = kube
        self.clock = clock
        self.options = options
        self.signer = signer
        self.namespaces = namespaces
        self.labels = ManagementLabels(options.driver)
        self.refusals = Refusals()
        self.templates = TemplateCopier(kube, self.labels, options.template_quota_wait_seconds)
        # Set by the reconciler when the warm pool is on.
        self.warm: WarmPool | None = None
        # Claim UID -> when provisioning it started (wall clock), for PROVISION_SECONDS.
        self._first_seen: dict[str, float] = {}

    def claim_deallocated(self, claim_uid: str) -> None:
        self._first_seen.pop(claim_uid, None)

    def claim_deleted(self, claim_uid: str) -> None:
        # Refusals are kept across deallocations (the scheduler's retries), dropped here.
        self.claim_deallocated(claim_uid)
        self.refusals.forget_claim(claim_uid)

    async def provision(
        self, view: ClaimView, nodes: frozenset[str] = frozenset()
    ) -> ResourceClaim | None:
        """Provision the devices without a record; return the claim as stored after
        recording the outcomes, or None when every device was already recorded.
        ``nodes``: where the claim's pods run so far (written with a warm hand-over).

        Raises ClaimGone when the claim went away meanwhile: the caller undoes.
        """
        outcomes: list[DeviceOutcome] = []
        changed = False
        existing = self.namespaces.for_claim(view.uid)
        for device in view.our_devices():
            try:
                state = view.device_state(device)
            except RecordError:
                state = None
            if state is not None and state.record is not None:
                outcomes.append(DeviceOutcome(device, record=state.record))
                continue
            if state is not None and state.failure is not None:
                reason, _, message = state.failure.partition(": ")
                if reason in RETRIED_FAILURES:
                    # Without binding conditions nobody re-allocates the claim: a rejection
                    # by the API server is tried again once it is no longer remembered, so
                    # the claim recovers by itself when the cause is fixed.
                    outcome = await self._provision_device(view, device, existing, nodes)
                    outcomes.append(outcome)
                    changed = changed or outcome.failure_reason != reason
                    continue
                outcomes.append(
                    DeviceOutcome(device, failure_reason=reason, failure_message=message)
                )
                continue
            outcomes.append(await self._provision_device(view, device, existing, nodes))
            changed = True
        if not changed:
            return None
        faults.point("controller-before-status-write")
        try:
            stored = await write_status(self.kube, view, outcomes)
        except KubeError as exc:
            if not await self._claim_gone(view, exc):
                raise
            log_event(
                log,
                logging.INFO,
                "claim_replaced",
                claim_uid=view.uid,
                claim=f"{view.namespace}/{view.name}",
                detail="deleted (and maybe re-created) while provisioning; undoing",
            )
            self._first_seen.pop(view.uid, None)
            raise ClaimGone(view.uid) from exc
        now = time.time()
        first_seen = self._first_seen.pop(view.uid, now)
        started = _allocated_at(view) or first_seen
        for outcome in outcomes:
            if not outcome.failed:
                PROVISION_SECONDS.observe(max(0.0, now - started))
        return stored

    async def _claim_gone(self, view: ClaimView, exc: KubeError) -> bool:
        """Whether a failed status write means the claim is gone or is another object now."""
        if isinstance(exc, NotFound):
            return True
        if not isinstance(exc, Invalid):
            return False
        try:
            current = await self.kube.get_claim(view.namespace, view.name)
        except NotFound:
            return True
        return (current.metadata.uid if current.metadata else None) != view.uid

    async def _provision_device(
        self,
        view: ClaimView,
        device: DeviceRef,
        existing: list[NamespaceView],
        nodes: frozenset[str] = frozenset(),
    ) -> DeviceOutcome:
        self._first_seen.setdefault(view.uid, time.time())
        label = f"{device.request}={device.pool}/{device.device}"
        configs = view.opaque_configs(device.request)
        # The key is what the decision depends on, so a changed DeviceClass config is
        # judged afresh.
        refusal_key = (view.uid, repr((configs, device.admin_access)))
        refused = self.refusals.get(refusal_key)
        if refused is not None:
            reason, message = refused
            return DeviceOutcome(device, failure_reason=reason, failure_message=message)
        try:
            resolved = resolve(configs, device.admin_access, installation=self.options.policy)
        except ConfigError as exc:
            # The parser's verdict depends only on the key: remembered for good.
            return await self._refuse(
                view, device, label, refusal_key, "InvalidConfig", str(exc), math.inf
            )
        # Admission refuses both for the chart's DeviceClass; this catches any other class
        # that selects our devices. The claim's shape never changes: remembered for good.
        refusal = shape_refusal(view, resolved.policy, self.namespaces.is_managed)
        if refusal is not None:
            return await self._refuse(view, device, label, refusal_key, *refusal, math.inf)

        adopted = self._adopt(device, existing)
        warm = None
        if adopted is None and self.warm is not None:
            # A warm namespace's lifetime starts when it becomes the claim's.
            warm = await self.warm.hand_over(
                settings_key(resolved.settings, resolved.policy),
                view.uid,
                f"{view.namespace}/{view.name}",
                device,
                nodes,
                expiry(self.clock(), resolved.settings),
            )
        WARM_HANDOVERS.labels("warm" if warm is not None else "cold").inc()
        if warm is not None:
            # Complete already: one write made it the claim's, and the status write says
            # so. No NamespaceProvisioned Event: it would be a third write on the path
            # meant to take two (docs/performance.md); refusals still get theirs.
            self.namespaces.created(warm)
            return self._provisioned(view, device, label, warm, "warm")
        settings = resolved.settings
        try:
            # Read first: a template that cannot be used leaves nothing behind.
            template = await self.templates.read(settings.template)
            made = adopted
            if made is None:
                made = await self.create_namespace(
                    view.uid,
                    f"{view.namespace}/{view.name}",
                    device,
                    resolved.settings,
                    resolved.policy.max_token_expiration_seconds,
                    expiry(self.clock(), resolved.settings),
                )
                self.namespaces.created(made)
                faults.point("controller-after-namespace-create")
            name = made.name
            await self.fill(name, resolved.settings)
            copies = await self.templates.copy(template, name, has_quota=bool(settings.quota))
        except TemplateUnavailable as exc:
            # An admin may create or label it meanwhile: remembered for a while only.
            return await self._refuse(
                view,
                device,
                label,
                refusal_key,
                "TemplateUnavailable",
                f"template: {exc}",
                time.monotonic() + self.options.rejection_memory_seconds,
            )
        except (Invalid, CopyRefused) as exc:
            # Any other KubeError is transient: the work queue retries. But the API
            # server refuses what this config makes (e.g. a quota on a resource it does
            # not know, or a template's copy over the quota): retrying cannot help. GC
            # removes the half-filled namespace once the failure is recorded. An admission
            # policy or webhook can be behind a 400/422 too, and may be fixed: remembered
            # for a while only.
            return await self._refuse(
                view,
                device,
                label,
                refusal_key,
                "Rejected",
                f"the API server rejected the namespace's objects: {exc}",
                time.monotonic() + self.options.rejection_memory_seconds,
            )
        if copies:
            log_event(
                log,
                logging.INFO,
                "namespace_template_copied",
                claim_uid=view.uid,
                namespace=name,
                template=settings.template,
                copies=copies,
            )
        faults.point("controller-after-namespace-contents")
        await emit_event(
            self.kube, view, "Normal", "NamespaceProvisioned", f"{label}: namespace {name} is ready"
        )
        return self._provisioned(view, device, label, made, "cold")

    def _provisioned(
        self, view: ClaimView, device: DeviceRef, label: str, made: NamespaceView, path: str
    ) -> DeviceOutcome:
        PROVISIONED.labels("ok").inc()
        log_event(
            log,
            logging.INFO,
            "namespace_provisioned",
            claim_uid=view.uid,
            claim=f"{view.namespace}/{view.name}",
            device=label,
            namespace=made.name,
            path=path,
        )
        return DeviceOutcome(
            device,
            record=NamespaceRecord(
                made.name, WORKLOAD_SERVICE_ACCOUNT, self.options.pod_api_server, made.expires_at
            ),
        )

    async def _refuse(
        self,
        view: ClaimView,
        device: DeviceRef,
        label: str,
        refusal_key: tuple[str, str],
        reason: str,
        message: str,
        until: float,
    ) -> DeviceOutcome:
        """Record a device's provisioning failure: metrics, memory, log and a Warning Event."""
        FAILURES.labels(reason).inc()
        PROVISIONED.labels("failed").inc()
        self.refusals.remember(refusal_key, reason, message, until)
        log_name, event_reason = REFUSAL_REPORTS[reason]
        log_event(log, logging.WARNING, log_name, claim_uid=view.uid, device=label, error=message)
        await emit_event(self.kube, view, "Warning", event_reason, f"{label}: {message}")
        await emit_pod_events(
            self.kube,
            view,
            "Warning",
            event_reason,
            f"ResourceClaim {view.name}: {label}: {message}",
        )
        return DeviceOutcome(device, failure_reason=reason, failure_message=message)

    def _adopt(self, device: DeviceRef, existing: list[NamespaceView]) -> NamespaceView | None:
        """Reuse the oldest namespace we already made for this device; GC drops the rest."""
        candidates = [
            ns for ns in existing if ns.device == device_label(device) and not ns.deleting
        ]
        return min(candidates, key=lambda ns: ns.age_key, default=None)

    async def create_namespace(
        self,
        claim_uid: str,
        claim_ref: str,
        device: DeviceRef,
        settings: Settings,
        max_token_seconds: int | None = None,
        expires_at: datetime | None = None,
    ) -> NamespaceView:
        """Create a fresh namespace (another suffix if the name is taken)."""
        created = await create_with_free_name(
            self.kube,
            settings.generate_name,
            lambda name: namespace_object(
                self.labels,
                self.signer,
                name,
                claim_uid,
                claim_ref,
                device,
                settings,
                max_token_seconds,
                expires_at,
            ),
        )
        return NamespaceView.of(created, self.labels)

    async def fill(self, namespace: str, settings: Settings) -> None:
        contents = namespace_contents(
            self.labels,
            namespace,
            settings,
            self.options.plugin_service_account,
            self.options.token_minter_cluster_role,
            self.options.dns,
        )
        # The objects are independent of each other: apply them concurrently.
        await asyncio.gather(*(self.kube.apply(obj) for obj in contents))


def _allocated_at(view: ClaimView) -> float | None:
    allocation = view.claim.status.allocation if view.claim.status else None
    stamp = allocation.allocationTimestamp if allocation else None
    return stamp.timestamp() if stamp else None

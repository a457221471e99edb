"""Namespaces made before they are asked for: the warm pool.

Making a namespace after allocation costs its API round trips (about eight writes) on the
pod's start path. The warm pool keeps up to ``size`` namespaces ready for the settings a
claim gets from the DeviceClass when it asks for nothing itself: complete (ServiceAccount,
bindings, quota, LimitRange, NetworkPolicy, Pod Security labels) and never used. A claim
whose resolved settings are exactly those takes one with a single write (the namespace
relabelled and re-signed for the claim, together with the nodes of its pods) instead of
making one; any other claim gets a cold one as before.

Why it is safe:

- Before hand-over nobody can use a warm namespace: it names no claim, so the admission
  policy on ``serviceaccounts/token`` refuses every plugin (the claim UID must match), and
  nobody else has any role in it.
- A namespace is taken from the pool in memory first (one event loop: no two claims take
  the same), and the hand-over write carries the resourceVersion it was seen at, so a write
  from anyone else in between fails instead of handing it out twice.
- Warm namespaces count against the pool: held devices plus warm namespaces never exceed
  the pool's size, so the cap on live namespaces still holds.
- They are signed like any other (over the name and the warm device label), so only this
  controller deletes them; the pool itself deletes the stale (settings changed) and the
  surplus ones, and garbage collection leaves them to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.resource_v1 import DeviceClass

from space_dra.config import ConfigError, Policy, Resolved, Settings, resolve
from space_dra.contract import (
    DeviceRef,
    ManagementLabels,
    NamespaceView,
    device_label,
)
from space_dra.controller.create import create_with_free_name
from space_dra.controller.manifests import namespace_object
from space_dra.controller.namespaces import ManagedNamespaces
from space_dra.controller.ownership import Signer
from space_dra.kube import Conflict, ControllerAPI, KubeError, NotFound
from space_dra.logs import log_event
from space_dra.metrics import WARM_NAMESPACES
from space_dra.times import rfc3339

log = logging.getLogger(__name__)

# The warm label's value while the namespace is being filled: never offered then.
FILLING = "filling-"
# The device a warm namespace is signed for until it is handed to a claim's device.
WARM_DEVICE = DeviceRef(request="warm", pool="warm", device="namespace")
REFILL_SECONDS = 2.0
# How long a refill gives way to claims being provisioned (see WarmPool._claims_first).
REFILL_DEFER_SECONDS = 5.0
# Namespaces made at once while refilling. Making one takes three round trips in a row
# (create, contents, ready label), so the refill is bound by their latency: 16 at once
# refilled 37-48 namespaces/s on the benchmark's control plane, 64 at once 50-63/s
# (docs/performance.md); the API server's priority and fairness bounds the load.
REFILL_CONCURRENCY = 64


def settings_key(settings: Settings, policy: Policy) -> str:
    """What a namespace looks like, as a short hash: equal keys, interchangeable namespaces.

    Only what the controller puts into the namespace counts; the env names, mount path and
    token lifetime are the kubelet plugin's business.
    """
    shape = {
        "generateName": settings.generate_name,
        "role": settings.role,
        "podSecurity": settings.pod_security,
        "quota": dict(settings.quota),
        "limitRange": {kind: dict(values) for kind, values in settings.limit_range.items()},
        "networkPolicy": settings.network_policy,
        "maxTokenSeconds": policy.max_token_expiration_seconds,
        # Only when set, so the keys of pools made before templates existed still match.
        **({"template": settings.template} if settings.template else {}),
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WarmOptions:
    size: int  # how many to keep ready; 0 turns the pool off
    pool_size: int  # the cap on live namespaces
    device_class: str  # whose config gives the default settings
    policy: Policy


class WarmPool:
    def __init__(
        self,
        kube: ControllerAPI,
        labels: ManagementLabels,
        signer: Signer,
        namespaces: ManagedNamespaces,
        options: WarmOptions,
        held: Callable[[], int],
        fill: Callable[[str, Settings], object],
        claims_idle: asyncio.Event | None = None,
    ) -> None:
        """``held()``: devices of ours allocated now; ``fill(name, settings)``: awaitable that
        puts the namespace's contents in (the provisioner's); ``claims_idle``: set while no
        claim is being provisioned."""
        self.kube = kube
        self.labels = labels
        self.signer = signer
        self.namespaces = namespaces
        self.options = options
        self._held = held
        self._fill = fill
        self._claims_idle = claims_idle
        self._defaults: Resolved | None = None
        self._owner: OwnerReference | None = None
        self._key = ""
        self._taken: set[str] = set()  # names handed out, until the watch shows it
        self._filling: set[str] = set()  # names this process is filling now
        # Names the pool is deleting (surplus or stale): never offered meanwhile. A claim
        # that took one just before would lose its namespace to the delete.
        self._retiring: set[str] = set()
        self._creating = 0
        self._wake = asyncio.Event()

    @property
    def key(self) -> str:
        return self._key

    def wake(self) -> None:
        self._wake.set()

    def _current(self, view: NamespaceView) -> bool:
        """Made for today's defaults by this installation. A warm namespace owned by an
        earlier DeviceClass of the same name (a reinstall) is the garbage collector's: it
        may be deleting it right now, so it is never handed to a claim."""
        owner = self._owner.uid if self._owner else None
        owned_here = owner in view.owner_uids if owner else not view.owner_uids
        return view.warm_key == self._key and owned_here

    def available(self) -> list[NamespaceView]:
        return [
            view
            for view in self.namespaces.warm()
            if self._current(view)
            and view.name not in self._taken
            and view.name not in self._retiring
            and not view.deleting
        ]

    # -- hand-over -------------------------------------------------------------------

    async def hand_over(
        self,
        key: str,
        claim_uid: str,
        claim_ref: str,
        device: DeviceRef,
        nodes: frozenset[str],
        expires_at: datetime | None = None,
    ) -> NamespaceView | None:
        """A warm namespace with settings ``key``, now the claim's device's (expiring at
        ``expires_at``, if given); None when the pool has none (the caller makes one)."""
        if not self._key or key != self._key:
            return None
        while True:
            candidates = self.available()
            if not candidates:
                return None
            view = min(candidates, key=lambda v: v.age_key)
            self._taken.add(view.name)
            stored = self.namespaces.informer.cache.get(("", view.name))
            if stored is None or stored.metadata is None:
                continue
            meta = stored.metadata
            labels = dict(meta.labels or {})
            labels.pop(self.labels.warm, None)
            labels[self.labels.claim_uid] = claim_uid
            labels[self.labels.device] = device_label(device)
            annotations = dict(meta.annotations or {})
            annotations[self.labels.claim_ref] = claim_ref
            annotations[self.labels.ownership] = self.signer.sign(
                view.name, claim_uid, device_label(device)
            )
            annotations[self.labels.nodes] = ",".join(sorted(nodes))
            if expires_at is not None:
                annotations[self.labels.expires_at] = rfc3339(expires_at)
            meta.labels, meta.annotations = labels, annotations
            meta.ownerReferences = None  # the claim's now, not the installation's
            try:
                # resourceVersion from the cache: a change since makes this a Conflict.
                replaced: Namespace = await self.kube.replace(stored)
            except (Conflict, NotFound):
                continue  # someone else's write won; try the next one
            self.wake()  # refill
            handed = NamespaceView.of(replaced, self.labels)
            log_event(
                log,
                logging.INFO,
                "warm_namespace_handed_over",
                claim_uid=claim_uid,
                namespace=view.name,
            )
            return handed

    # -- refill ----------------------------------------------------------------------

    async def _claims_first(self) -> None:
        """Wait (a while at most) until no claim is being provisioned.

        A burst of claims takes the pool's namespaces with two writes each; refilling at
        the same time adds five writes per namespace on the same API server, which on a
        small control plane made every claim of the burst wait for the refill's writes.
        """
        if self._claims_idle is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REFILL_DEFER_SECONDS):
                await self._claims_idle.wait()

    async def run(self) -> None:
        """Keep the pool full until cancelled; failures are logged and retried. A pool of
        size 0 returns once it has removed the namespaces an earlier setting made."""
        while True:
            # Cleared before, not after: a namespace handed over while this refill runs
            # (a burst) starts the next one as soon as it ends, not REFILL_SECONDS later.
            self._wake.clear()
            await self._claims_first()
            try:
                await self.refill()
                if self.options.size <= 0:
                    return
            except KubeError as exc:
                log_event(log, logging.WARNING, "warm_refill_failed", error=str(exc))
            try:
                async with asyncio.timeout(REFILL_SECONDS):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def refill(self) -> None:
        await self._load_defaults()
        warm = [v for v in self.namespaces.warm() if not v.deleting]
        self._taken &= {v.name for v in warm}
        stale = [v for v in warm if not self._current(v) and v.name not in self._filling]
        ready = [v for v in warm if self._current(v) and v.name not in self._taken]
        budget = self.options.pool_size - self._held() - len(self._taken)
        wanted = max(0, min(self.options.size, budget))
        surplus = ready[wanted:] if len(ready) > wanted else []
        retiring = stale + surplus
        # Marked before the first await, so no hand-over picks one meanwhile; and each
        # delete is conditional on the version judged, so one handed over by another
        # writer (the API server orders the two) is a Conflict, not a lost namespace.
        self._retiring.update(view.name for view in retiring)
        try:
            for view in retiring:
                await self._delete(view, unchanged=True)
        finally:
            self._retiring.difference_update(view.name for view in retiring)
        missing = wanted - len(ready) - self._creating
        WARM_NAMESPACES.set(len(ready) - len(surplus))
        if missing <= 0 or self._defaults is None:
            return
        gate = asyncio.Semaphore(REFILL_CONCURRENCY)
        self._creating += missing
        try:
            # Every make runs to its end before the count drops: a failure raised at once
            # would leave the others creating, uncounted, and the next refill would start
            # as many again, past the pool's cap.
            made = await asyncio.gather(
                *(self._make(gate) for _ in range(missing)), return_exceptions=True
            )
        finally:
            self._creating -= missing
        for outcome in made:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _load_defaults(self) -> None:
        """The settings a claim of the DeviceClass gets when it asks for nothing itself."""
        try:
            klass = await self.kube.get(DeviceClass, self.options.device_class)
        except NotFound:
            self._defaults, self._key, self._owner = None, "", None
            return
        uid = klass.metadata.uid if klass.metadata else None
        self._owner = (
            OwnerReference(
                apiVersion="resource.k8s.io/v1",
                kind="DeviceClass",
                name=self.options.device_class,
                uid=uid,
            )
            if uid
            else None
        )
        configs = [
            ("FromClass", entry.opaque.parameters)
            for entry in (klass.spec.config if klass.spec else None) or []
            if entry.opaque is not None and entry.opaque.driver == self.labels.driver
        ]
        try:
            resolved = resolve(configs, installation=self.options.policy)
        except ConfigError as exc:
            log_event(log, logging.WARNING, "warm_pool_defaults_invalid", error=str(exc))
            self._defaults, self._key = None, ""
            return
        if resolved.settings.template is not None:
            # A template is copied when a claim gets its namespace, not ahead of it (a
            # warm copy would be as old as the namespace): no warm pool for such defaults.
            self._defaults, self._key = None, ""
            return
        self._defaults = resolved
        self._key = settings_key(resolved.settings, resolved.policy)

    async def _make(self, gate: asyncio.Semaphore) -> None:
        defaults, key = self._defaults, self._key
        assert defaults is not None
        async with gate:

            def build(name: str) -> Namespace:
                namespace = namespace_object(
                    self.labels,
                    self.signer,
                    name,
                    "",
                    "",
                    WARM_DEVICE,
                    defaults.settings,
                    defaults.policy.max_token_expiration_seconds,
                )
                assert namespace.metadata is not None and namespace.metadata.labels is not None
                # Owned by the installation's DeviceClass until handed over: uninstalling
                # removes the pool (see owner).
                namespace.metadata.ownerReferences = [self._owner] if self._owner else None
                # Marked as filling until its contents are in: only then can it be offered.
                namespace.metadata.labels[self.labels.warm] = FILLING + key
                return namespace

            created = await create_with_free_name(self.kube, defaults.settings.generate_name, build)
            name = (created.metadata.name if created.metadata else None) or ""
            self._filling.add(name)
            try:
                self.namespaces.created(NamespaceView.of(created, self.labels))
                await self._fill(name, defaults.settings)  # type: ignore[misc]
                await self.kube.apply(
                    Namespace(metadata=ObjectMeta(name=name, labels={self.labels.warm: key}))
                )
            except KubeError:
                # Half-made: deleted, so the next refill starts afresh.
                await self._delete(NamespaceView.of(created, self.labels))
                raise
            finally:
                self._filling.discard(name)

    async def _delete(self, view: NamespaceView, unchanged: bool = False) -> None:
        """Delete ``view``'s namespace; with ``unchanged``, only if it is still as seen."""
        version = view.resource_version if unchanged else ""
        try:
            await self.kube.delete(
                Namespace, view.name, uid=view.uid or None, resource_version=version or None
            )
        except (NotFound, Conflict):
            return
        self.namespaces.deleted(view)
        log_event(log, logging.INFO, "warm_namespace_deleted", namespace=view.name)

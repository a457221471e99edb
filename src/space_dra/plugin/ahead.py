"""Tokens minted, and claims read, before the kubelet asks for them.

The controller lists a node in a claim's namespace (``<driver>/nodes``) as soon as a pod
of the claim is bound there; the kubelet calls NodePrepareResources for that pod a few
hundred milliseconds later (its pod admission comes first; 260-300 ms on the local
cluster). A prepare's two API calls, reading the claim and the TokenRequest, can be made in
that gap instead. This watches the namespaces the controller manages and, for one that
newly lists this node for a claim the node has not prepared, reads the claim, resolves the
device's token lifetime as the prepare will, and mints; it keeps the claim once it carries
every record of the controller (reading it again briefly if the record is still to come).
The prepare then uses the claim read less than ``READ_AHEAD_SECONDS`` ago instead of
reading it, and takes the token when it was minted for the same claim, namespace,
ServiceAccount and lifetime; otherwise it reads and mints as before. A token nobody takes
is dropped from memory after ``KEEP_SECONDS``.

Nothing here widens what a node may do: the API server still judges every TokenRequest
(the node must be listed, the claim UID must match, the token is bound to the Node). What
it adds is a read: the plugin lists and watches namespaces (the chart grants that only with
``kubeletPlugin.mintAhead``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from lightkube.resources.core_v1 import Namespace

from space_dra.config import ConfigError
from space_dra.contract import (
    WORKLOAD_SERVICE_ACCOUNT,
    ClaimView,
    ManagementLabels,
    NamespaceView,
    RecordError,
    device_label,
)
from space_dra.kube import KubeError, WatchAPI
from space_dra.logs import log_event
from space_dra.metrics import TOKENS_AHEAD
from space_dra.plugin.options import DriverOptions
from space_dra.plugin.plan import Planner

log = logging.getLogger(__name__)

# How long a token minted ahead waits for its prepare before it is dropped.
KEEP_SECONDS = 60.0
# At most this many tokens wait at once (a burst beyond it is minted by the prepares).
MAX_WAITING = 256
# A claim read ahead stands in for the prepare's own read for this long.
READ_AHEAD_SECONDS = 10.0
# Reads of a claim whose record the controller has not written yet (it writes the
# namespace first, the claim's status next), and the pause before each re-read.
RECORD_RETRIES = (0.05, 0.1, 0.2)

Mint = Callable[[str, str, str, int], Awaitable[tuple[str, float, float]]]


@dataclass(frozen=True)
class AheadToken:
    service_account: str
    lifetime: int
    token: str
    issued_at: float
    expires_at: float


@dataclass
class _Waiting:
    started: float  # on the monotonic clock
    task: asyncio.Task[AheadToken | None] | None  # None: the prepare came first
    taken: bool = False


def slim_namespace(raw: dict[str, Any], labels: ManagementLabels) -> dict[str, Any]:
    """A namespace's JSON reduced to what this module reads."""
    meta = raw.get("metadata") or {}
    kept = {key: meta[key] for key in ("name", "uid", "resourceVersion") if key in meta}
    if meta.get("deletionTimestamp"):
        kept["deletionTimestamp"] = meta["deletionTimestamp"]
    ours = meta.get("labels") or {}
    kept["labels"] = {k: ours[k] for k in (labels.claim_uid, labels.device) if k in ours}
    notes = meta.get("annotations") or {}
    kept["annotations"] = {k: notes[k] for k in (labels.nodes, labels.claim_ref) if k in notes}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": kept}


class MintAhead:
    def __init__(
        self,
        kube: WatchAPI,
        options: DriverOptions,
        planner: Planner,
        mint: Mint,
        is_prepared: Callable[[str], bool],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``mint(claim_uid, namespace, service_account, lifetime)``: (token, issued_at,
        expires_at), raising KubeError (one attempt, no retries); ``is_prepared(claim_uid)``:
        this node has prepared the claim."""
        self.kube = kube
        self.options = options
        self.labels = ManagementLabels(options.driver_name)
        self.planner = planner
        self._mint = mint
        self._is_prepared = is_prepared
        self._monotonic = monotonic
        self._waiting: dict[tuple[str, str], _Waiting] = {}
        # Claim UID -> (when read, on the monotonic clock; the claim with every record).
        self._read: dict[str, tuple[float, ClaimView]] = {}
        # Re-reads of claims whose record is still to come (a prepare never waits on them).
        self._reading: set[asyncio.Task[None]] = set()

    def _remember(self, key: tuple[str, str], waiting: _Waiting) -> None:
        """Keep ``waiting`` and make sure it goes within a little over KEEP_SECONDS, even
        if no other namespace event comes."""
        self._waiting[key] = waiting
        asyncio.get_running_loop().call_later(KEEP_SECONDS + 1, self._drop_old)

    def read_ahead(self, claim_uid: str) -> ClaimView | None:
        """The claim as read ahead with every record in, if that was a moment ago."""
        read = self._read.pop(claim_uid, None)
        if read is None or self._monotonic() - read[0] > READ_AHEAD_SECONDS:
            return None
        return read[1]

    async def take(
        self, claim_uid: str, namespace: str, service_account: str, lifetime: int
    ) -> tuple[str, float, float] | None:
        """The token minted ahead for this device, or None (the caller mints). Either way
        the device is marked taken: no later event of its namespace mints for it again."""
        key = (claim_uid, namespace)
        waiting = self._waiting.get(key)
        if waiting is None or waiting.taken:
            self._remember(key, _Waiting(self._monotonic(), None, taken=True))
            return None
        waiting.taken = True
        task = waiting.task
        if task is None or task.cancelled():
            return None
        try:
            # Started a moment ago at most: waiting for it beats starting anew.
            ahead = await task
        except Exception:  # a head start that broke is no reason to fail the prepare
            log.exception("token_ahead_broken", extra={"space_fields": {"claim_uid": claim_uid}})
            return None
        if ahead is None or (ahead.service_account, ahead.lifetime) != (service_account, lifetime):
            return None
        TOKENS_AHEAD.labels("used").inc()
        return ahead.token, ahead.issued_at, ahead.expires_at

    def seen(self, namespace: Namespace) -> None:
        """A watch event: start minting if the namespace newly lists this node."""
        view = NamespaceView.of(namespace, self.labels)
        meta = namespace.metadata
        claim_ref = ((meta.annotations if meta else None) or {}).get(self.labels.claim_ref, "")
        key = (view.claim_uid, view.name)
        if (
            view.deleting
            or not view.claim_uid
            or self.options.node_name not in view.nodes
            or self._is_prepared(view.claim_uid)
            or key in self._waiting
            or "/" not in claim_ref
        ):
            return
        self._drop_old()
        if len(self._waiting) >= MAX_WAITING:
            return
        task = asyncio.create_task(self._mint_for(view, claim_ref), name=f"ahead-{view.name}")
        self._remember(key, _Waiting(self._monotonic(), task))

    def _drop_old(self) -> None:
        now = self._monotonic()
        for uid, (read_at, _) in list(self._read.items()):
            if now - read_at > READ_AHEAD_SECONDS:
                del self._read[uid]
        for key, waiting in list(self._waiting.items()):
            if now - waiting.started > KEEP_SECONDS:
                del self._waiting[key]
                if waiting.task is not None and not waiting.taken:
                    waiting.task.cancel()
                    TOKENS_AHEAD.labels("unused").inc()

    async def _mint_for(self, namespace: NamespaceView, claim_ref: str) -> AheadToken | None:
        claim_namespace, _, claim_name = claim_ref.partition("/")
        try:
            view = ClaimView(
                await self.kube.get_claim(claim_namespace, claim_name), self.options.driver_name
            )
            device = next(
                (d for d in view.our_devices() if device_label(d) == namespace.device), None
            )
            if view.uid != namespace.claim_uid or device is None:
                return None  # replaced, or not (or no longer) allocated this device
            lifetime = self.planner.settings(view, device).token_expiration_seconds
            reading = asyncio.create_task(self._keep_read(view, claim_namespace, claim_name))
            self._reading.add(reading)
            reading.add_done_callback(self._reading.discard)
            token, issued_at, expires_at = await self._mint(
                namespace.claim_uid, namespace.name, WORKLOAD_SERVICE_ACCOUNT, lifetime
            )
        except (KubeError, ConfigError) as exc:
            # The prepare mints (and reports) on its own; this was only a head start.
            TOKENS_AHEAD.labels("failed").inc()
            log_event(
                log,
                logging.DEBUG,
                "token_ahead_failed",
                claim_uid=namespace.claim_uid,
                namespace=namespace.name,
                error=str(exc),
            )
            return None
        TOKENS_AHEAD.labels("minted").inc()
        return AheadToken(WORKLOAD_SERVICE_ACCOUNT, lifetime, token, issued_at, expires_at)

    async def _keep_read(self, view: ClaimView, namespace: str, name: str) -> None:
        """Keep the claim for the prepare once it has every record, reading it again
        (a few times, briefly) while the controller has yet to write one; on any failure
        the prepare reads the claim itself."""
        for pause in (*RECORD_RETRIES, None):
            if _complete(view):
                self._read[view.uid] = (self._monotonic(), view)
                return
            if pause is None:
                return
            await asyncio.sleep(pause)
            try:
                again = ClaimView(await self.kube.get_claim(namespace, name), view.driver)
            except KubeError:
                return
            if again.uid != view.uid:
                return
            view = again

    async def run(self) -> None:
        """List and watch the managed namespaces until cancelled."""
        delay = 0.5
        slim = partial(slim_namespace, labels=self.labels)
        while True:
            try:
                items, version = await self.kube.list(
                    Namespace, labels=self.labels.managed, slim=slim
                )
                for item in items:
                    self.seen(item)
                delay = 0.5
                async for event, item in self.kube.watch(
                    Namespace, version, labels=self.labels.managed, slim=slim
                ):
                    if event != "DELETED":
                        self.seen(item)
            except KubeError as exc:
                log_event(
                    log,
                    logging.WARNING,
                    "namespace_watch_restarting",
                    error=str(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        tasks = [w.task for w in self._waiting.values() if w.task is not None]
        tasks += self._reading
        self._waiting.clear()
        self._read.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _complete(view: ClaimView) -> bool:
    """Every device of ours has the controller's record (a ready namespace)."""
    try:
        return all(view.device_state(device).record is not None for device in view.our_devices())
    except RecordError:
        return False

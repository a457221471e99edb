"""List-then-watch caches, the controller's view of the cluster.

lightkube has no informer, so this is a small one: list (remember the
resourceVersion), then watch from it; on any watch failure (410 Gone, the API
server restarting, a dropped connection) list again and diff against the cache,
so a change made while the watch was down still produces an event. Handlers run
synchronously and must only enqueue work. Each list after the first is counted
(``space_dra_controller_informer_relists_total``): a steady rate means watches keep
breaking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from lightkube.core import resource as lkr

from space_dra.kube import ControllerAPI, KubeError
from space_dra.kube_reads import Slim
from space_dra.logs import log_event
from space_dra.metrics import INFORMER_RELISTS

log = logging.getLogger(__name__)

T = TypeVar("T", bound=lkr.Resource)
Key = tuple[str, str]
Handler = Callable[[str, Any, Any], None]
"""(event, old, new): ADDED (None, new), MODIFIED (old, new), DELETED (old, None)."""


def key_of(obj: Any) -> Key:
    return (obj.metadata.namespace or "", obj.metadata.name or "")


class Informer(Generic[T]):
    def __init__(
        self,
        kube: ControllerAPI,
        res: type[T],
        handler: Handler,
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        slim: Slim | None = None,
    ) -> None:
        """``slim`` reduces every object's JSON to what the handler and the cache's
        readers use, before it is parsed (see :mod:`space_dra.kube_reads`)."""
        self.kube = kube
        self.res = res
        self.handler = handler
        self.labels = labels
        self.fields = fields
        self.slim = slim
        self.cache: dict[Key, T] = {}
        self.synced = asyncio.Event()
        self.relists = 0

    def _emit(self, event: str, old: T | None, new: T | None) -> None:
        try:
            self.handler(event, old, new)
        except Exception:
            log.exception(
                "informer_handler_failed", extra={"space_fields": {"kind": self.res.__name__}}
            )

    async def _relist(self) -> str:
        items, version = await self.kube.list(
            self.res, labels=self.labels, fields=self.fields, slim=self.slim
        )
        fresh = {key_of(item): item for item in items}
        for key, gone in list(self.cache.items()):
            if key not in fresh:
                del self.cache[key]
                self._emit("DELETED", gone, None)
        for key, item in fresh.items():
            old = self.cache.get(key)
            self.cache[key] = item
            if old is None:
                self._emit("ADDED", None, item)
            elif old.metadata.resourceVersion != item.metadata.resourceVersion:  # type: ignore[attr-defined]
                self._emit("MODIFIED", old, item)
        self.relists += 1
        if self.relists > 1:
            INFORMER_RELISTS.labels(kind=self.res.__name__).inc()
        return version

    def _apply(self, event: str, obj: T) -> None:
        key = key_of(obj)
        old = self.cache.get(key)
        if event == "DELETED":
            self.cache.pop(key, None)
            self._emit("DELETED", old or obj, None)
        elif event in ("ADDED", "MODIFIED"):
            self.cache[key] = obj
            self._emit("ADDED" if old is None else "MODIFIED", old, obj)

    def remember(self, obj: T) -> None:
        """Write through an object we just wrote, so work queued before the watch
        echoes it back sees the new state instead of redoing the work.

        Only over a cached entry: a missing one means the watch already reported the
        object deleted, and storing it would bring it back until the next relist.
        """
        key = key_of(obj)
        cached = self.cache.get(key)
        if cached is not None and _newer(obj, cached):
            if self.slim is not None:
                obj = self.res.from_dict(self.slim(obj.to_dict()))  # type: ignore[attr-defined]
            self.cache[key] = obj

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                version = await self._relist()
                self.synced.set()
                delay = 0.5
                async for event, obj in self.kube.watch(
                    self.res, version, labels=self.labels, fields=self.fields, slim=self.slim
                ):
                    self._apply(event, obj)
            except KubeError as exc:
                log_event(
                    log,
                    logging.WARNING,
                    "watch_restarting",
                    kind=self.res.__name__,
                    error=str(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _newer(candidate: Any, cached: Any) -> bool:
    """resourceVersions are opaque, but etcd's are increasing integers; only trust that."""
    new, old = candidate.metadata.resourceVersion, cached.metadata.resourceVersion
    if new and old and new.isdigit() and old.isdigit():
        return int(new) > int(old)
    return False

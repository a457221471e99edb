"""What the controller knows about the namespaces it manages.

The namespace informer's cache lags behind the controller's own writes: a namespace
it just created may not be cached yet, and one it just deleted may not show as
Terminating yet. Acting on the cache alone would create a second namespace for a
device, or delete (and count) one twice, so our own writes are overlaid here until
the watch reports them. Every namespace is seen through a :class:`NamespaceView`,
and is *owned* only if its ownership signature verifies (see :mod:`ownership`): a
labelled namespace without one is reported once and never adopted or deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lightkube.resources.core_v1 import Namespace

from space_dra.contract import ManagementLabels, NamespaceView
from space_dra.controller.informer import Informer
from space_dra.controller.ownership import Signer
from space_dra.kube import ControllerAPI
from space_dra.logs import log_event

log = logging.getLogger(__name__)


class ManagedNamespaces:
    def __init__(
        self,
        kube: ControllerAPI,
        labels: ManagementLabels,
        signer: Signer,
        on_change: Callable[[NamespaceView], None],
    ) -> None:
        """``on_change`` is called (synchronously) for every watch event."""
        self.labels = labels
        self.signer = signer
        self._on_change = on_change
        self.informer: Informer[Namespace] = Informer(
            kube, Namespace, self._on_event, labels=labels.managed
        )
        # Name -> a namespace we created (or handed over) that the watch has not reported
        # in that state yet, so a re-run before the cache catches up adopts it.
        self._created: dict[str, NamespaceView] = {}
        # UIDs of namespaces we asked to delete whose Terminating state may not be
        # cached yet, so a second pass does not delete (and count) them again.
        self._deleting: set[str] = set()
        self._unverified_reported: set[str] = set()

    def _on_event(self, event: str, old: Any, new: Any) -> None:
        view = NamespaceView.of(new or old, self.labels)
        if new is not None:
            self._created.pop(view.name, None)
        if new is None or view.deleting:
            self._deleting.discard(view.uid)
        self._on_change(view)

    def __len__(self) -> int:
        return len(self.informer.cache)

    def cached(self) -> list[NamespaceView]:
        return [NamespaceView.of(ns, self.labels) for ns in self.informer.cache.values()]

    def warm(self) -> list[NamespaceView]:
        """The warm pool's namespaces that we own, cached or just created."""
        found = {view.name: view for view in self.cached() if view.warm_key}
        for view in self._created.values():
            if view.warm_key and view.name not in found:
                found[view.name] = view
        return [view for view in found.values() if self.owned(view)]

    def for_claim(self, claim_uid: str) -> list[NamespaceView]:
        """The namespaces we own that were made for ``claim_uid``, cached or just created."""
        found = {view.name: view for view in self.cached() if view.claim_uid == claim_uid}
        for view in self._created.values():
            if view.claim_uid == claim_uid and view.name not in found:
                found[view.name] = view
        return [view for view in found.values() if self.owned(view)]

    def named(self, name: str) -> NamespaceView | None:
        """The namespace ``name`` as we last wrote or saw it, signed or not (whether it is
        still there; a changed ownership key must not make it look gone); None if neither."""
        for view in self._created.values():
            if view.name == name:
                return view
        cached = self.informer.cache.get(("", name))
        return NamespaceView.of(cached, self.labels) if cached is not None else None

    def is_managed(self, name: str) -> bool:
        """Whether ``name`` is a namespace we made (cached, with a valid signature)."""
        namespace = self.informer.cache.get(("", name))
        return namespace is not None and self.signer.owns(NamespaceView.of(namespace, self.labels))

    def owned(self, view: NamespaceView) -> bool:
        if self.signer.owns(view):
            return True
        if view.name and view.name not in self._unverified_reported:
            self._unverified_reported.add(view.name)
            log_event(
                log,
                logging.WARNING,
                "namespace_unverified",
                namespace=view.name,
                detail="carries our labels but no valid ownership signature; never deleted",
            )
        return False

    def unverified_count(self) -> int:
        return sum(1 for view in self.cached() if not self.signer.owns(view))

    def created(self, view: NamespaceView) -> None:
        self._created[view.name] = view

    def deleted(self, view: NamespaceView) -> None:
        if view.uid:
            self._deleting.add(view.uid)
        self._created.pop(view.name, None)

    def deleting(self, view: NamespaceView) -> bool:
        """Whether we already asked to delete it (its Terminating state may not be cached)."""
        return view.uid in self._deleting

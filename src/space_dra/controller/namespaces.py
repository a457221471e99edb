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
        # The cache seen through views, indexed by what the reconciler asks for on every
        # claim: with a thousand claims and namespaces, scanning the cache per question
        # kept the event loop busy for seconds (probes failed, the lease was lost).
        # Kept by the watch events, the only way the namespace cache changes.
        self._views: dict[str, NamespaceView] = {}
        self._by_claim: dict[str, set[str]] = {}
        self._warm: set[str] = set()

    def _on_event(self, event: str, old: Any, new: Any) -> None:
        view = NamespaceView.of(new or old, self.labels)
        self._unindex(view.name)
        if new is not None:
            self._index(view)
            self._created.pop(view.name, None)
        if new is None or view.deleting:
            self._deleting.discard(view.uid)
        self._on_change(view)

    def _index(self, view: NamespaceView) -> None:
        self._views[view.name] = view
        if view.claim_uid:
            self._by_claim.setdefault(view.claim_uid, set()).add(view.name)
        if view.warm_key:
            self._warm.add(view.name)

    def _unindex(self, name: str) -> None:
        view = self._views.pop(name, None)
        if view is None:
            return
        names = self._by_claim.get(view.claim_uid)
        if names is not None:
            names.discard(name)
            if not names:
                del self._by_claim[view.claim_uid]
        self._warm.discard(name)

    def __len__(self) -> int:
        return len(self.informer.cache)

    def cached(self) -> list[NamespaceView]:
        return list(self._views.values())

    def warm(self) -> list[NamespaceView]:
        """The warm pool's namespaces that we own, cached or just created."""
        found = {name: self._views[name] for name in self._warm}
        return self._owned_with_created(found, lambda view: bool(view.warm_key))

    def for_claim(self, claim_uid: str) -> list[NamespaceView]:
        """The namespaces we own that were made for ``claim_uid``, cached or just created."""
        found = {name: self._views[name] for name in self._by_claim.get(claim_uid, ())}
        return self._owned_with_created(found, lambda view: view.claim_uid == claim_uid)

    def _owned_with_created(
        self, found: dict[str, NamespaceView], wanted: Callable[[NamespaceView], bool]
    ) -> list[NamespaceView]:
        for view in self._created.values():
            if wanted(view) and view.name not in found:
                found[view.name] = view
        return [view for view in found.values() if self.owned(view)]

    def named(self, name: str) -> NamespaceView | None:
        """The namespace ``name`` as we last wrote or saw it, signed or not (whether it is
        still there; a changed ownership key must not make it look gone); None if neither."""
        return self._created.get(name) or self._views.get(name)

    def is_managed(self, name: str) -> bool:
        """Whether ``name`` is a namespace we made (cached, with a valid signature)."""
        view = self._views.get(name)
        return view is not None and self.signer.owns(view)

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

"""One open watch of the in-memory API server: what it sees of each write."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from space_dra.kube import KubeError
from space_dra.kube_memory.objects import Data, Kind, matches


@dataclass
class Watch:
    kind: Kind
    labels: Mapping[str, str] | None
    fields: Mapping[str, str] | None
    events: asyncio.Queue[tuple[str, Data] | KubeError | None] = field(
        default_factory=asyncio.Queue
    )

    def offer(self, before: Data | None, after: Data | None, deleted: bool) -> None:
        """Queue what this watch sees of one write: objects entering or leaving its
        selectors are ADDED or DELETED, as the API server reports them."""
        was = matches(before, self.labels, self.fields)
        now = not deleted and matches(after, self.labels, self.fields)
        if after is None:
            return
        if was and now:
            self.events.put_nowait(("MODIFIED", after))
        elif now:
            self.events.put_nowait(("ADDED", after))
        elif was:
            self.events.put_nowait(("DELETED", after))

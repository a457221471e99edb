"""The two asyncio primitives a driver shares with the layer: claim locks and a change signal.

:class:`ClaimLocks` is how the layer serialises calls for one claim; a driver that does
background work on claims (refreshing credentials, repairing files) takes the same lock
so it never races a prepare or unprepare of that claim. :class:`ChangeSignal` wakes the
health stream when a driver's devices or their health change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ClaimLocks:
    """One lock per claim UID, kept only while someone holds or waits for it.

    A lock per UID ever seen would grow without bound under hostile requests, so each
    lock carries a count of its users and is dropped when the last one leaves.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        """How many claims have a lock right now (held or waited for)."""
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, uid: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(uid, (asyncio.Lock(), 0))
        self._locks[uid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[uid]
            if users == 1:
                del self._locks[uid]
            else:
                self._locks[uid] = (lock, users - 1)


class ChangeSignal:
    """Wakes every waiter when something changed (prepared devices, their health).

    A waiter that looks at the state and then waits would miss a change made in
    between; it reads :attr:`version` before looking and passes it to :meth:`wait`.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.version = 0

    def notify(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float, since: int | None = None) -> None:
        """Return on the next change or after ``seconds``, whichever comes first; at
        once if there was a change after :attr:`version` was ``since``."""
        if since is not None and since != self.version:
            return
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

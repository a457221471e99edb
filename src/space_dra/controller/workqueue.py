"""A keyed work queue: each key is processed by one worker at a time.

Like client-go's workqueue: adding a key that is already waiting is a no-op; a
key added while it is being processed runs again afterwards; failures are
retried with per-key exponential backoff. This is what makes concurrent
reconciles of one claim impossible, so duplicates cannot come from races here.
Its depth and retries are metrics, labelled with the queue's name: a depth that
keeps growing means the workers cannot keep up, retries mean reconciles fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from space_dra.logs import log_event
from space_dra.metrics import WORKQUEUE_DEPTH, WORKQUEUE_RETRIES

log = logging.getLogger(__name__)

K = TypeVar("K")

# Reconciles mostly wait on the API server: a burst of 200 warm claims came ready at
# p50 1.1-1.6 s with 8 workers, 0.8-0.9 s with 32 or 64, and 1.8 s with 200 (the API server
# then queues them); see docs/performance.md.
DEFAULT_WORKERS = 32


class WorkQueue(Generic[K]):
    def __init__(
        self,
        process: Callable[[K], Awaitable[None]],
        workers: int = DEFAULT_WORKERS,
        name: str = "claims",
    ) -> None:
        self._process = process
        self._workers = workers
        self._depth = WORKQUEUE_DEPTH.labels(queue=name)
        self._retries = WORKQUEUE_RETRIES.labels(queue=name)
        self._depth.set(0)
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._waiting: set[K] = set()
        self._active: set[K] = set()
        self._again: set[K] = set()
        self._failures: dict[K, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Set while no key waits or is being processed.
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, key: K) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)
            self._depth.set(len(self._waiting))
            self.idle.clear()

    def add_after(self, key: K, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    def __len__(self) -> int:
        return len(self._waiting) + len(self._active)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self._workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._waiting.discard(key)
            self._depth.set(len(self._waiting))
            self._active.add(key)
            try:
                await self._process(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(0.2 * 2 ** (failures - 1), 60.0)
                log_event(
                    log,
                    logging.WARNING,
                    "reconcile_failed",
                    key=str(key),
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=round(delay, 2),
                )
                self._retries.inc()
                self.add_after(key, delay)
            finally:
                self._active.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.add(key)
                if not self._waiting and not self._active:
                    self.idle.set()

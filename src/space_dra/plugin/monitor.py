"""Re-read every prepared claim every few seconds: the controller's word on its namespaces.

The controller records what it knows about a device in the claim's status (a failure,
a namespace deleted behind its back); this plugin may read claims but not Namespaces,
so it reads each prepared claim once per ``health_check_interval`` (jittered, so claims
prepared together are not read together) and hands what it says to the
:class:`~space_dra.plugin.health.HealthBook`. Every round ends by publishing health, so
changes reach the kubelet at once, and so do verdicts that change with time alone (a
token expiring).
"""

from __future__ import annotations

import asyncio
import logging
import random

from space_dra.contract import ClaimView
from space_dra.kube import KubeAPI, KubeError, NotFound
from space_dra.logs import log_event
from space_dra.plugin.health import claim_verdicts, jittered
from space_dra.plugin.options import DriverOptions
from space_dra.plugin.state import NodeState

log = logging.getLogger(__name__)

# Claims read at once; the rest wait their turn.
CONCURRENT_READS = 16


class ClaimMonitor:
    def __init__(
        self, kube: KubeAPI, options: DriverOptions, state: NodeState, rng: random.Random
    ) -> None:
        self.kube = kube
        self.options = options
        self.state = state
        self.rng = rng
        self.next_check: dict[str, float] = {}
        self._reads = asyncio.Semaphore(CONCURRENT_READS)

    async def check(self, uid: str) -> None:
        """Read one prepared claim and record what it says about each of its devices."""
        claim = self.state.prepared.get(uid)
        if claim is None:
            return
        async with self._reads:
            try:
                view: ClaimView | None = ClaimView(
                    await self.kube.get_claim(claim.namespace, claim.name),
                    self.options.driver_name,
                )
            except NotFound:
                view = None
            except KubeError as exc:
                if uid in self.state.prepared:
                    self.state.book.claim_read_failed(uid, exc)
                log_event(log, logging.WARNING, "claim_check_failed", claim_uid=uid, error=str(exc))
                return
        # Unprepared (or prepared anew) while the read was in flight: nothing to record.
        if self.state.prepared.get(uid) is claim:
            self.state.book.claim_read(uid, claim_verdicts(view, claim))

    async def check_due(self) -> float:
        """Check every claim whose turn has come; return seconds until the next turn."""
        interval = self.options.health_check_interval
        now = self.state.clock()
        for uid in self.next_check.keys() - self.state.prepared.keys():
            del self.next_check[uid]
        for uid in self.state.prepared.keys() - self.next_check.keys():
            # Just prepared (read a moment ago) or recovered after a restart.
            self.next_check[uid] = now + jittered(interval, self.rng)
        due = [uid for uid, at in self.next_check.items() if at <= now]
        for uid in due:
            self.next_check[uid] = now + jittered(interval, self.rng)
        await asyncio.gather(*(self.check(uid) for uid in due))
        self.state.publish_health()
        upcoming = min(self.next_check.values(), default=now + interval)
        return max(0.0, upcoming - self.state.clock())

    async def run(self) -> None:
        """Check claims as they fall due, for ever; new claims wake it."""
        interval = self.options.health_check_interval
        while True:
            seen = self.state.changed.version
            try:
                wait = await self.check_due()
            except Exception:
                # Health must keep flowing whatever one round hit.
                log.exception("claim_monitor_failed")
                wait = interval
            await self.state.changed.wait(min(max(wait, 0.05), interval), since=seen)

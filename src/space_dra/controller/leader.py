"""Leader election on a coordination.k8s.io Lease, so two replicas never both write.

The same protocol as client-go's leaderelection: the holder renews ``renewTime``
every ``retry`` seconds; a candidate takes the Lease over only when it has not
been renewed for ``lease_duration``; every write carries the resourceVersion it
read, so two candidates cannot both win. A leader that cannot renew within
``renew_deadline``, or finds the Lease held by another, stops leading (the
caller ends its term's work and stands for election again), and a leader that
shuts down cleanly releases the Lease so a standby takes over at once instead of
after the lease duration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from space_dra.kube import Conflict, ControllerAPI, KubeError, NotFound
from space_dra.logs import log_event
from space_dra.metrics import LEADER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseOptions:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0


class LeaderElector:
    def __init__(self, kube: ControllerAPI, options: LeaseOptions) -> None:
        self.kube = kube
        self.options = options
        self.leading = False
        # Monotonic time at which the last successful acquire or renewal was sent.
        self._renewed_at = 0.0

    def _spec(self, acquired: datetime | None, transitions: int) -> LeaseSpec:
        now = datetime.now(UTC)
        return LeaseSpec(
            holderIdentity=self.options.identity,
            leaseDurationSeconds=int(self.options.lease_duration),
            acquireTime=acquired or now,
            renewTime=now,
            leaseTransitions=transitions,
        )

    async def try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.kube.get(Lease, self.options.name, self.options.namespace)
        except NotFound:
            fresh = Lease(
                metadata=ObjectMeta(name=self.options.name, namespace=self.options.namespace),
                spec=self._spec(None, 0),
            )
            try:
                await self.kube.create(fresh)
            except Conflict:
                return False
            return True
        spec = lease.spec or LeaseSpec()
        mine = spec.holderIdentity == self.options.identity
        if not mine and spec.holderIdentity:
            renewed = spec.renewTime or spec.acquireTime or datetime.min.replace(tzinfo=UTC)
            duration = timedelta(seconds=spec.leaseDurationSeconds or self.options.lease_duration)
            if datetime.now(UTC) < renewed + duration:
                return False
        transitions = (spec.leaseTransitions or 0) + (0 if mine else 1)
        lease.spec = self._spec(spec.acquireTime if mine else None, transitions)
        try:
            await self.kube.replace(lease)
        except Conflict:
            return False
        return True

    async def acquire(self) -> None:
        """Return once this replica leads."""
        log_event(
            log,
            logging.INFO,
            "leader_election_waiting",
            lease=f"{self.options.namespace}/{self.options.name}",
        )
        while True:
            attempt = time.monotonic()
            try:
                if await self.try_acquire_or_renew():
                    self._renewed_at = attempt
                    break
            except KubeError as exc:
                log_event(log, logging.WARNING, "leader_election_error", error=str(exc))
            await asyncio.sleep(self.options.retry)
        self.leading = True
        LEADER.set(1)
        log_event(log, logging.INFO, "leader_elected", identity=self.options.identity)

    async def keep_leading(self) -> None:
        """Renew; return when another replica holds the Lease or when renewal has not
        succeeded for renew_deadline (shorter than the lease duration, so this replica
        stops before anyone may take over).

        The deadline counts from when the last successful renewal was *sent*: the
        renewTime it wrote is no later than that, and each attempt is cut off at the
        deadline, so a hung API call cannot stretch a term.
        """
        while True:
            # Never sleep past the deadline: a term must end at it, not a retry later.
            await asyncio.sleep(min(self.options.retry, max(0.0, self._remaining())))
            remaining = self._remaining()
            if remaining <= 0:
                break
            attempt = time.monotonic()
            try:
                if await asyncio.wait_for(self.try_acquire_or_renew(), remaining):
                    self._renewed_at = attempt
                    continue
                log_event(log, logging.WARNING, "leader_lease_taken")
                break
            except TimeoutError:
                log_event(log, logging.WARNING, "leader_renew_error", error="timed out")
            except KubeError as exc:
                log_event(log, logging.WARNING, "leader_renew_error", error=str(exc))
        self.leading = False
        LEADER.set(0)
        log_event(log, logging.ERROR, "leader_lost", identity=self.options.identity)

    def _remaining(self) -> float:
        return self.options.renew_deadline - (time.monotonic() - self._renewed_at)

    async def release(self) -> None:
        if not self.leading:
            return
        try:
            lease = await self.kube.get(Lease, self.options.name, self.options.namespace)
            if lease.spec and lease.spec.holderIdentity == self.options.identity:
                lease.spec.holderIdentity = None
                lease.spec.leaseDurationSeconds = 1
                await self.kube.replace(lease)
        except KubeError as exc:
            log_event(log, logging.WARNING, "leader_release_failed", error=str(exc))
        self.leading = False
        LEADER.set(0)

"""From the claims of one kubelet request to driver calls, and back to one outcome per UID.

The kubelet treats a UID missing from a response as "call again", so every UID of the
request gets an entry whatever happens: a UID named twice for different claims, a UID
that is not a Kubernetes UID, a driver that forgets a claim or raises. Which calls run
at the same time is decided here, by the :class:`~space_dra.kubeletplugin.api.Serialization`
the driver chose.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from space_dra.kubeletplugin.api import (
    Claim,
    ClaimError,
    DRAPlugin,
    PrepareResult,
    Serialization,
    UnprepareResult,
    clip,
    uid_problem,
)
from space_dra.kubeletplugin.sync import ClaimLocks
from space_dra.logs import log_event

log = logging.getLogger(__name__)

R = TypeVar("R")
DriverCall = Callable[[Sequence[Claim]], Awaitable[Mapping[str, R]]]


def admissible(claims: Iterable[Claim]) -> tuple[list[Claim], dict[str, ClaimError]]:
    """The claims a driver may see, and the refusals for the others.

    Repeated UIDs collapse into one claim; a UID named for two different claims, or
    that is not a Kubernetes UID, is refused here.
    """
    unique: dict[str, Claim] = {}
    refused: dict[str, ClaimError] = {}
    for claim in claims:
        seen = unique.get(claim.uid)
        if seen is not None and seen != claim:
            refused[claim.uid] = ClaimError(
                f"claim {clip(claim.uid, 64)}: the request names this UID for both "
                f"{seen.display} and {claim.display}"
            )
        unique.setdefault(claim.uid, claim)
    admitted = []
    for uid, claim in unique.items():
        if uid in refused:
            continue
        problem = uid_problem(uid)
        if problem is None:
            admitted.append(claim)
        else:
            refused[uid] = ClaimError(f"claim {claim.display}: {problem}")
            log_event(log, logging.WARNING, "claim_refused", claim=claim.display, error=problem)
    return admitted, refused


class Dispatcher:
    def __init__(self, plugin: DRAPlugin, serialization: Serialization, locks: ClaimLocks) -> None:
        self.plugin = plugin
        self.serialization = serialization
        self.locks = locks
        self._one_call_at_a_time = asyncio.Lock()

    async def prepare(self, claims: Iterable[Claim]) -> dict[str, PrepareResult]:
        return await self._dispatch(claims, self.plugin.prepare_resource_claims, "prepare")

    async def unprepare(self, claims: Iterable[Claim]) -> dict[str, UnprepareResult]:
        return await self._dispatch(claims, self.plugin.unprepare_resource_claims, "unprepare")

    async def _dispatch(
        self, claims: Iterable[Claim], call: DriverCall[R], what: str
    ) -> dict[str, R | ClaimError]:
        admitted, refused = admissible(claims)
        results: dict[str, R | ClaimError] = dict(refused)
        if not admitted:
            return results
        if self.serialization is Serialization.PER_CLAIM:
            outcomes = await asyncio.gather(
                *(self._call_holding_lock(call, claim, what) for claim in admitted)
            )
            for outcome in outcomes:
                results.update(outcome)
        elif self.serialization is Serialization.GLOBAL:
            async with self._one_call_at_a_time:
                results.update(await self._call(call, admitted, what))
        else:
            results.update(await self._call(call, admitted, what))
        return results

    async def _call_holding_lock(
        self, call: DriverCall[R], claim: Claim, what: str
    ) -> dict[str, R | ClaimError]:
        async with self.locks.hold(claim.uid):
            return await self._call(call, [claim], what)

    async def _call(
        self, call: DriverCall[R], claims: Sequence[Claim], what: str
    ) -> dict[str, R | ClaimError]:
        """One driver call; a crash or a forgotten claim becomes that claim's error."""
        try:
            answered = await call(claims)
        except Exception as exc:
            uids = ",".join(claim.uid for claim in claims)
            log.exception(f"claim_{what}_crashed", extra={"space_fields": {"claim_uid": uids}})
            return {
                claim.uid: ClaimError(
                    f"claim {claim.uid}: internal error: {type(exc).__name__}: {exc}"
                )
                for claim in claims
            }
        results: dict[str, R | ClaimError] = {}
        for claim in claims:
            if claim.uid in answered:
                results[claim.uid] = answered[claim.uid]
            else:
                results[claim.uid] = ClaimError(
                    f"claim {claim.uid}: the driver returned no result for this claim"
                )
        return results

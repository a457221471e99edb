"""Is each prepared namespace still usable? The decisions behind the health stream.

The plugin's RBAC lets it read claims and mint tokens in the namespaces it serves, nothing
else (it cannot read Namespaces), so health is judged from two kinds of evidence, both
gathered by others and recorded here:

- **The claim**, re-read every few seconds (:mod:`~space_dra.plugin.monitor`): the
  controller's conditions on the device (``NamespaceFailed``, ``NamespaceHealthy``
  False, ``NamespaceReady`` no longer True), the record naming another namespace, the
  device or the claim gone.
- **Token requests**, made by the refresh (:mod:`~space_dra.plugin.state`) at least every
  ``credential_check_interval``: 404, or a 403 saying the namespace is being terminated,
  means the namespace is going or gone (Unhealthy at once); any other 403 means this node
  may no longer mint there (the namespace was deleted with its RoleBindings, or the
  minting RoleBinding was removed), and counts towards ``health_failure_threshold``
  before the device turns Unhealthy; anything else means the API server cannot be
  reached, and after as many failures the device is Unknown.

Messages stay the same while the cause does (no counters or times in them): the kubelet
re-syncs every pod using a device each time its message changes. Nothing here does I/O;
the clock and the random source for jitter are passed in.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from space_dra.contract import (
    CONDITION_HEALTHY,
    CONDITION_READY,
    TOKEN_MINTER_BINDING,
    ClaimView,
    RecordError,
)
from space_dra.kube import Forbidden, KubeError, NotFound
from space_dra.kubeletplugin import DeviceHealth, HealthStatus
from space_dra.plugin.checkpoint import PreparedClaim, PreparedDevice
from space_dra.plugin.options import DriverOptions

# The first retry after a failed token request comes this soon (or sooner, when the
# credential check interval is shorter); each further one waits twice as long, up to
# the credential check interval.
RETRY_SECONDS = 5.0
# Spread of the scheduled checks around their nominal interval, so claims prepared
# together do not hit the API server together.
JITTER = 0.2
_TERMINATING = "because it is being terminated"


class Failure(Enum):
    """What a failed token request (or credential write) says about the namespace,
    least severe first: until a request succeeds, a device's failure only escalates, so
    a namespace seen terminating does not look merely refused at the next attempt."""

    UNREACHABLE = 1
    """No verdict from the API server: Unknown past the threshold."""
    BROKEN = 2
    """Refused, or the files cannot be written: Unhealthy past the threshold."""
    GONE = 3
    """Its ServiceAccount is gone, or it is being deleted: Unhealthy at once."""


def classify(error: KubeError | OSError) -> Failure:
    if isinstance(error, OSError):
        return Failure.BROKEN
    if isinstance(error, NotFound):
        return Failure.GONE
    if isinstance(error, Forbidden):
        # The NamespaceLifecycle admission plugin's refusal of creates in a namespace
        # being deleted; a 403 all the same, so a changed wording only delays the verdict.
        return Failure.GONE if _TERMINATING in str(error) else Failure.BROKEN
    return Failure.UNREACHABLE


def describe(error: KubeError | OSError) -> str:
    """The error for a health message, with what a refusal can mean here."""
    if isinstance(error, Forbidden) and classify(error) is Failure.BROKEN:
        return (
            f"{error} (the namespace may have been deleted, or the RoleBinding "
            f"{TOKEN_MINTER_BINDING} that lets this node mint tokens there removed)"
        )
    return str(error)


@dataclass(frozen=True)
class Verdict:
    status: HealthStatus
    message: str


def _unhealthy(message: str) -> Verdict:
    return Verdict(HealthStatus.UNHEALTHY, message)


def healthy(namespace: str) -> Verdict:
    return Verdict(HealthStatus.HEALTHY, f"namespace {namespace} is ready")


def claim_verdicts(view: ClaimView | None, claim: PreparedClaim) -> list[Verdict]:
    """What a fresh read of the claim says about each prepared device (``view`` is None
    when the claim is not found), in the order of ``claim.devices``."""
    where = f"ResourceClaim {claim.namespace}/{claim.name}"
    if view is None:
        return [_unhealthy(f"{where} no longer exists") for _ in claim.devices]
    if view.uid != claim.uid:
        return [_unhealthy(f"{where} was deleted and created again") for _ in claim.devices]
    if not view.allocated:
        return [_unhealthy(f"{where} is no longer allocated") for _ in claim.devices]
    allocated = {(ref.pool, ref.device, ref.share_id): ref for ref in view.our_devices()}
    verdicts = []
    for device in claim.devices:
        ref = allocated.get((device.pool, device.device, device.share_id))
        namespace = device.record.namespace
        if ref is None:
            verdicts.append(
                _unhealthy(
                    f"device {device.pool}/{device.device} is no longer allocated to {where}"
                )
            )
            continue
        try:
            state = view.device_state(ref)
        except RecordError as exc:
            verdicts.append(
                Verdict(
                    HealthStatus.UNKNOWN,
                    f"cannot read the controller's record of namespace {namespace}: {exc}",
                )
            )
            continue
        conditions = view.device_conditions(ref)
        health = conditions.get(CONDITION_HEALTHY)
        ready = conditions.get(CONDITION_READY)
        if state.failure is not None:
            verdict = _unhealthy(
                f"the controller marked namespace {namespace} failed: {state.failure}"
            )
        elif health is not None and health.status == "False":
            verdict = _unhealthy(f"namespace {namespace}: {health.reason}: {health.message}")
        elif state.record is None:
            said = f" ({ready.reason}: {ready.message})" if ready is not None else ""
            verdict = _unhealthy(
                f"the controller no longer reports namespace {namespace} ready{said}"
            )
        elif state.record.namespace != namespace:
            verdict = _unhealthy(
                f"the controller now records namespace {state.record.namespace} for this "
                f"device; this pod's credentials are for {namespace} (re-create the pod)"
            )
        else:
            verdict = healthy(namespace)
        verdicts.append(verdict)
    return verdicts


@dataclass
class DeviceWatch:
    """The latest evidence about one prepared device; mutated as checks report."""

    # From the last successful read of the claim; None before the first one (after a
    # restart), which counts as no objection: the device was ready when it was prepared.
    claim: Verdict | None = None
    claim_failures: int = 0
    claim_error: str = ""
    mint_failures: int = 0
    mint_failure: Failure | None = None
    mint_error: str = ""
    # When the next token request for this device is due at the latest (a credential
    # check after a success, a retry after a failure).
    next_mint: float = 0.0


def judge(
    watch: DeviceWatch,
    device: PreparedDevice,
    claim_display: str,
    now: float,
    threshold: int,
    files_complete: bool,
) -> Verdict:
    """The device's health from the evidence, most specific cause first."""
    namespace = device.record.namespace
    if watch.claim is not None and watch.claim.status is HealthStatus.UNHEALTHY:
        return watch.claim
    if watch.mint_failure is Failure.GONE:
        return _unhealthy(f"namespace {namespace} is gone or being deleted: {watch.mint_error}")
    if device.token_expires_at and now >= device.token_expires_at:
        cause = f": {watch.mint_error}" if watch.mint_error else ""
        return _unhealthy(
            f"the credentials for namespace {namespace} expired and could not be refreshed{cause}"
        )
    if watch.mint_failures >= threshold:
        if watch.mint_failure is Failure.BROKEN:
            return _unhealthy(
                f"cannot refresh the credentials for namespace {namespace}: "
                f"{threshold} attempts in a row failed: {watch.mint_error}"
            )
        return Verdict(
            HealthStatus.UNKNOWN,
            f"cannot tell whether namespace {namespace} is usable: {threshold} attempts "
            f"in a row to refresh its credentials failed: {watch.mint_error}",
        )
    if not files_complete:
        return _unhealthy(f"credential files for namespace {namespace} are missing on this node")
    if watch.claim is not None and watch.claim.status is HealthStatus.UNKNOWN:
        return watch.claim
    if watch.claim_failures >= threshold:
        return Verdict(
            HealthStatus.UNKNOWN,
            f"cannot tell whether namespace {namespace} is usable: {threshold} reads in a "
            f"row of {claim_display} failed: {watch.claim_error}",
        )
    return healthy(namespace)


def retry_delay(failures: int, interval: float) -> float:
    """How long to wait after the ``failures``-th failed token request in a row."""
    first = min(RETRY_SECONDS, interval)
    return float(min(first * 2 ** max(failures - 1, 0), interval))


def jittered(seconds: float, rng: random.Random) -> float:
    return seconds * rng.uniform(1 - JITTER, 1 + JITTER)


@dataclass
class HealthBook:
    """The evidence for every prepared device, keyed by claim UID and device index."""

    options: DriverOptions
    clock: Callable[[], float]
    rng: random.Random = field(default_factory=random.Random)
    watches: dict[str, list[DeviceWatch]] = field(default_factory=dict)

    def track(self, claim: PreparedClaim, just_prepared: bool) -> None:
        """Start watching ``claim`` (again); a claim just prepared was read and minted
        for a moment ago, one recovered from disk is checked soon."""
        interval = self.options.credential_check_interval
        now = self.clock()
        watches = []
        for device in claim.devices:
            if just_prepared:
                watch = DeviceWatch(
                    claim=healthy(device.record.namespace),
                    next_mint=now + jittered(interval, self.rng),
                )
            else:
                watch = DeviceWatch(next_mint=now + self.rng.uniform(0, interval))
            watches.append(watch)
        self.watches[claim.uid] = watches

    def forget(self, uid: str) -> None:
        self.watches.pop(uid, None)

    def _watch(self, uid: str, index: int) -> DeviceWatch | None:
        watches = self.watches.get(uid)
        return watches[index] if watches is not None and index < len(watches) else None

    # -- what the checks report ----------------------------------------------------------

    def claim_read(self, uid: str, verdicts: list[Verdict]) -> None:
        for watch, verdict in zip(self.watches.get(uid, []), verdicts, strict=False):
            watch.claim = verdict
            watch.claim_failures = 0
            watch.claim_error = ""

    def claim_read_failed(self, uid: str, error: KubeError) -> None:
        for watch in self.watches.get(uid, []):
            watch.claim_failures += 1
            watch.claim_error = str(error)

    def minted(self, uid: str, index: int) -> None:
        watch = self._watch(uid, index)
        if watch is not None:
            watch.mint_failures = 0
            watch.mint_failure = None
            watch.mint_error = ""
            watch.next_mint = self.clock() + jittered(
                self.options.credential_check_interval, self.rng
            )

    def mint_failed(self, uid: str, index: int, error: KubeError | OSError) -> None:
        watch = self._watch(uid, index)
        if watch is not None:
            watch.mint_failures += 1
            failure = classify(error)
            if watch.mint_failure is None or failure.value >= watch.mint_failure.value:
                watch.mint_failure = failure
                watch.mint_error = describe(error)
            watch.next_mint = self.clock() + retry_delay(
                watch.mint_failures, self.options.credential_check_interval
            )

    # -- what the refresh and the stream ask -----------------------------------------------

    def mint_due(self, uid: str, index: int, now: float, needed: bool) -> bool:
        """Whether to request a token for the device now: its check or retry is due, or
        ``needed`` (token due, files missing) and it is not backing off after a failure."""
        watch = self._watch(uid, index)
        if watch is None or now >= watch.next_mint:
            return True
        return needed and watch.mint_failures == 0

    def next_attempt(self, uid: str, index: int, token_due_at: float) -> float:
        """When the device's next token request is due: its check or retry, or earlier
        when its token falls due and it is not backing off."""
        watch = self._watch(uid, index)
        if watch is None:
            return token_due_at
        if watch.mint_failures:
            return watch.next_mint
        return min(watch.next_mint, token_due_at)

    def report(
        self,
        prepared: dict[str, PreparedClaim],
        files_complete: Callable[[PreparedDevice], bool],
    ) -> Iterator[tuple[str, DeviceHealth]]:
        """(claim UID, health) of every prepared device."""
        now = self.clock()
        threshold = self.options.health_failure_threshold
        for uid, claim in prepared.items():
            watches = self.watches.get(uid) or [DeviceWatch() for _ in claim.devices]
            display = f"ResourceClaim {claim.namespace}/{claim.name}"
            for device, watch in zip(claim.devices, watches, strict=False):
                verdict = judge(watch, device, display, now, threshold, files_complete(device))
                yield uid, DeviceHealth(device.pool, device.device, verdict.status, verdict.message)

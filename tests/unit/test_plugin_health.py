"""The health decisions of the namespace driver (space_dra.plugin.health), without I/O."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from space_dra.contract import (
    CONDITION_FAILED,
    CONDITION_HEALTHY,
    CONDITION_READY,
    POOL_NAME,
    WORKLOAD_SERVICE_ACCOUNT,
    ClaimView,
    NamespaceRecord,
)
from space_dra.kube import Forbidden, KubeError, NotFound
from space_dra.kubeletplugin import HealthStatus
from space_dra.naming import DeviceLayout
from space_dra.plugin.checkpoint import PreparedClaim, PreparedDevice
from space_dra.plugin.health import (
    DeviceWatch,
    Failure,
    HealthBook,
    Verdict,
    claim_verdicts,
    classify,
    describe,
    jittered,
    judge,
    retry_delay,
)
from space_dra.plugin.options import DriverOptions
from tests.support.claims import SERVER, condition, make_claim, new_uid, ready_device

DRIVER = "space.resource.example.com"
HEALTHY, UNHEALTHY, UNKNOWN = HealthStatus.HEALTHY, HealthStatus.UNHEALTHY, HealthStatus.UNKNOWN
NOW = 1_000_000.0
THRESHOLD = 3
TERMINATING = Forbidden(
    "create token for ServiceAccount ns-a/space-user: unable to create new content in "
    "namespace ns-a because it is being terminated",
    403,
    "Forbidden",
)
REFUSED = Forbidden(
    'create token for ServiceAccount ns-a/space-user: serviceaccounts "space-user" is '
    'forbidden: User "system:serviceaccount:space-dra:plugin" cannot create resource',
    403,
    "Forbidden",
)
UNREACHABLE = KubeError("create token for ServiceAccount ns-a/space-user: ConnectError: refused")


def prepared_device(device: str = "slot-0", namespace: str = "ns-a", **times: float) -> Any:
    return PreparedDevice(
        request="ns",
        pool=POOL_NAME,
        device=device,
        share_id=None,
        layout=DeviceLayout(f"u-{device}", f"u-{device}", "TEST_CLAIM", "/etc/test-claim"),
        record=NamespaceRecord(namespace, WORKLOAD_SERVICE_ACCOUNT, SERVER),
        token_expiration_seconds=3600,
        token_issued_at=times.get("issued", NOW - 60),
        token_expires_at=times.get("expires", NOW + 3540),
    )


def prepared_claim(uid: str, *devices: PreparedDevice) -> PreparedClaim:
    return PreparedClaim(uid, "default", "test-claim", devices or (prepared_device(),))


def view_of(uid: str, **claim: Any) -> ClaimView:
    return ClaimView(make_claim(uid, **claim), DRIVER)


def verdict_of(uid: str, **claim: Any) -> Verdict:
    [verdict] = claim_verdicts(view_of(uid, **claim), prepared_claim(uid))
    return verdict


# -- what a failed token request means ------------------------------------------------


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (NotFound('serviceaccounts "space-user" not found', 404, "NotFound"), Failure.GONE),
        (TERMINATING, Failure.GONE),
        (REFUSED, Failure.BROKEN),
        (OSError(28, "No space left on device"), Failure.BROKEN),
        (UNREACHABLE, Failure.UNREACHABLE),
        (KubeError("etcdserver: request timed out", 500, "InternalError"), Failure.UNREACHABLE),
        (KubeError("Unauthorized", 401, "Unauthorized"), Failure.UNREACHABLE),
    ],
)
def test_token_request_failures_are_classified(error: Any, failure: Failure) -> None:
    assert classify(error) is failure


# -- what a read of the claim says --------------------------------------------------------


def test_a_ready_device_is_healthy_and_says_which_namespace() -> None:
    uid = new_uid()
    verdict = verdict_of(uid, status_devices=[ready_device("slot-0", "ns-a")])
    assert verdict == Verdict(HEALTHY, "namespace ns-a is ready")


def test_the_controller_marking_the_device_failed_makes_it_unhealthy_with_the_reason() -> None:
    uid = new_uid()
    device = ready_device("slot-0", "ns-a")
    device["conditions"] = [
        condition(CONDITION_READY, "False", "Failed", "lost"),
        condition(CONDITION_FAILED, "True", "NamespaceLost", "namespace ns-a was deleted"),
    ]
    verdict = verdict_of(uid, status_devices=[device])
    assert verdict.status is UNHEALTHY
    assert verdict.message == (
        "the controller marked namespace ns-a failed: NamespaceLost: namespace ns-a was deleted"
    )


def test_namespace_healthy_false_is_unhealthy_and_true_is_no_objection() -> None:
    uid = new_uid()
    device = ready_device("slot-0", "ns-a")
    device["conditions"].append(
        condition(CONDITION_HEALTHY, "False", "NamespaceDeleted", "deleted outside the driver")
    )
    assert verdict_of(uid, status_devices=[device]) == Verdict(
        UNHEALTHY, "namespace ns-a: NamespaceDeleted: deleted outside the driver"
    )
    device["conditions"][-1] = condition(CONDITION_HEALTHY, "True", "NamespaceActive")
    assert verdict_of(uid, status_devices=[device]).status is HEALTHY


def test_ready_no_longer_true_is_unhealthy_and_quotes_the_condition() -> None:
    uid = new_uid()
    device = ready_device("slot-0", "ns-a")
    device["conditions"] = [condition(CONDITION_READY, "False", "Reprovisioning", "one moment")]
    assert verdict_of(uid, status_devices=[device]) == Verdict(
        UNHEALTHY,
        "the controller no longer reports namespace ns-a ready (Reprovisioning: one moment)",
    )
    assert verdict_of(uid, status_devices=[]) == Verdict(
        UNHEALTHY, "the controller no longer reports namespace ns-a ready"
    )


def test_another_namespace_recorded_for_the_device_is_unhealthy() -> None:
    uid = new_uid()
    verdict = verdict_of(uid, status_devices=[ready_device("slot-0", "ns-b")])
    assert verdict.status is UNHEALTHY
    assert "now records namespace ns-b" in verdict.message
    assert "credentials are for ns-a" in verdict.message


def test_an_unreadable_record_is_unknown() -> None:
    uid = new_uid()
    device = ready_device("slot-0", "ns-a")
    device["data"]["server"] = "http://plain.example"
    verdict = verdict_of(uid, status_devices=[device])
    assert verdict.status is UNKNOWN
    assert "not an https URL" in verdict.message


def test_a_claim_gone_replaced_or_deallocated_is_unhealthy() -> None:
    uid = new_uid()
    claim = prepared_claim(uid, prepared_device("slot-0"), prepared_device("slot-1", "ns-b"))
    gone = claim_verdicts(None, claim)
    assert [v.status for v in gone] == [UNHEALTHY, UNHEALTHY]
    assert gone[0].message == "ResourceClaim default/test-claim no longer exists"
    [replaced, _] = claim_verdicts(view_of(new_uid()), claim)
    assert replaced.message == "ResourceClaim default/test-claim was deleted and created again"
    [deallocated, _] = claim_verdicts(view_of(uid, allocated=False), claim)
    assert deallocated.message == "ResourceClaim default/test-claim is no longer allocated"


def test_each_device_of_a_claim_gets_its_own_verdict() -> None:
    uid = new_uid()
    claim = prepared_claim(
        uid, prepared_device("slot-0", "ns-a"), prepared_device("slot-1", "ns-b")
    )
    failed = ready_device("slot-1", "ns-b")
    failed["conditions"].append(condition(CONDITION_FAILED, "True", "Broken", "slot-1 only"))
    view = view_of(
        uid,
        devices=[("ns", "slot-0")],  # slot-1 is no longer allocated
        status_devices=[ready_device("slot-0", "ns-a"), failed],
    )
    first, second = claim_verdicts(view, claim)
    assert first == Verdict(HEALTHY, "namespace ns-a is ready")
    assert second.message == (
        "device space/slot-1 is no longer allocated to ResourceClaim default/test-claim"
    )
    view = view_of(
        uid,
        devices=[("ns", "slot-0"), ("ns", "slot-1")],
        status_devices=[ready_device("slot-0", "ns-a"), failed],
    )
    first, second = claim_verdicts(view, claim)
    assert first.status is HEALTHY
    assert second == Verdict(
        UNHEALTHY, "the controller marked namespace ns-b failed: Broken: slot-1 only"
    )


# -- the verdict from all the evidence ----------------------------------------------------


def judged(watch: DeviceWatch, device: Any = None, files_complete: bool = True) -> Verdict:
    device = device or prepared_device()
    return judge(watch, device, "ResourceClaim default/test-claim", NOW, THRESHOLD, files_complete)


def failing(times: int, error: Any) -> DeviceWatch:
    return DeviceWatch(
        mint_failures=times, mint_failure=classify(error), mint_error=describe(error)
    )


def test_no_evidence_against_a_device_is_healthy() -> None:
    assert judged(DeviceWatch()) == Verdict(HEALTHY, "namespace ns-a is ready")


def test_refused_token_requests_turn_unhealthy_at_the_threshold_with_one_stable_message() -> None:
    assert judged(failing(THRESHOLD - 1, REFUSED)).status is HEALTHY
    at = judged(failing(THRESHOLD, REFUSED))
    assert at.status is UNHEALTHY
    assert f"{THRESHOLD} attempts in a row failed" in at.message
    assert "cannot create resource" in at.message
    assert "RoleBinding" in at.message
    assert judged(failing(THRESHOLD + 5, REFUSED)) == at, "no counter in the message"


def test_unreachable_api_server_turns_unknown_at_the_threshold() -> None:
    assert judged(failing(THRESHOLD - 1, UNREACHABLE)).status is HEALTHY
    verdict = judged(failing(THRESHOLD, UNREACHABLE))
    assert verdict.status is UNKNOWN
    assert "ConnectError" in verdict.message


def test_a_namespace_gone_or_terminating_is_unhealthy_at_once() -> None:
    verdict = judged(failing(1, TERMINATING))
    assert verdict.status is UNHEALTHY
    assert "ns-a is gone or being deleted" in verdict.message
    assert "being terminated" in verdict.message


def test_expired_credentials_are_unhealthy_whatever_the_threshold() -> None:
    expired = prepared_device(issued=NOW - 3600, expires=NOW - 1)
    assert judged(DeviceWatch(), expired).message == (
        "the credentials for namespace ns-a expired and could not be refreshed"
    )
    verdict = judged(failing(1, UNREACHABLE), expired)
    assert verdict.status is UNHEALTHY
    assert verdict.message.endswith(str(UNREACHABLE))


def test_missing_files_are_unhealthy() -> None:
    verdict = judged(DeviceWatch(), files_complete=False)
    assert verdict == Verdict(
        UNHEALTHY, "credential files for namespace ns-a are missing on this node"
    )


def test_claim_reads_failing_past_the_threshold_are_unknown_until_one_succeeds() -> None:
    watch = DeviceWatch(claim_failures=THRESHOLD - 1, claim_error="get ResourceClaim: timeout")
    assert judged(watch).status is HEALTHY
    watch.claim_failures = THRESHOLD
    verdict = judged(watch)
    assert verdict.status is UNKNOWN
    assert "reads in a row of ResourceClaim default/test-claim failed" in verdict.message


def test_the_most_specific_cause_wins() -> None:
    controller_says = Verdict(UNHEALTHY, "namespace ns-a: NamespaceDeleted: gone")
    watch = failing(THRESHOLD, REFUSED)
    watch.claim = controller_says
    watch.claim_failures = THRESHOLD
    assert judged(watch, prepared_device(expires=NOW - 1), files_complete=False) == controller_says
    # An unreadable record (Unknown) does not hide that the credentials are refused.
    watch.claim = Verdict(UNKNOWN, "cannot read the controller's record")
    assert judged(watch).status is UNHEALTHY


# -- scheduling ----------------------------------------------------------------------------


def test_retries_start_at_five_seconds_and_double_up_to_the_interval() -> None:
    assert [retry_delay(n, 60) for n in range(1, 6)] == [5, 10, 20, 40, 60]
    assert [retry_delay(n, 2) for n in (1, 2)] == [2, 2], "never later than the interval"


def test_jitter_stays_within_twenty_percent() -> None:
    rng = random.Random(7)
    values = [jittered(10, rng) for _ in range(1000)]
    assert 8 <= min(values) < 8.5 and 11.5 < max(values) <= 12


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def book_with(clock: Clock, **options: Any) -> HealthBook:
    unused = Path("/nonexistent")
    driver = DriverOptions(DRIVER, unused, unused, unused, ca_pem=b"", **options)
    return HealthBook(driver, clock, random.Random(1))


def test_the_book_schedules_checks_and_backs_off_after_failures() -> None:
    clock = Clock()
    book = book_with(clock, credential_check_interval=60, health_failure_threshold=2)
    uid = new_uid()
    claim = prepared_claim(uid)
    book.track(claim, just_prepared=True)
    assert not book.mint_due(uid, 0, clock.now, needed=False)
    assert book.mint_due(uid, 0, clock.now, needed=True), "a due token is minted at once"
    check_at = book.next_attempt(uid, 0, token_due_at=NOW + 10_000)
    assert NOW + 48 <= check_at <= NOW + 72
    clock.now = check_at
    assert book.mint_due(uid, 0, clock.now, needed=False), "the credential check"

    book.mint_failed(uid, 0, REFUSED)
    assert not book.mint_due(uid, 0, clock.now, needed=True), "backing off"
    assert book.next_attempt(uid, 0, token_due_at=0) == clock.now + 5
    reports = [h for _, h in book.report({uid: claim}, lambda _: True)]
    assert [h.status for h in reports] == [HEALTHY]
    clock.now += 5
    book.mint_failed(uid, 0, REFUSED)
    assert book.next_attempt(uid, 0, token_due_at=0) == clock.now + 10
    [(_, report)] = list(book.report({uid: claim}, lambda _: True))
    assert report.status is UNHEALTHY and "2 attempts in a row failed" in report.message

    book.minted(uid, 0)
    [(_, report)] = list(book.report({uid: claim}, lambda _: True))
    assert report.status is HEALTHY, "healthy again as soon as a token is minted"


def test_the_book_records_claim_reads_and_forgets_unprepared_claims() -> None:
    clock = Clock()
    book = book_with(clock, health_failure_threshold=1)
    uid = new_uid()
    claim = prepared_claim(uid)
    book.track(claim, just_prepared=False)
    book.claim_read_failed(uid, KubeError("get ResourceClaim default/test-claim: timeout"))
    [(_, report)] = list(book.report({uid: claim}, lambda _: True))
    assert report.status is UNKNOWN
    book.claim_read(uid, [Verdict(UNHEALTHY, "the controller marked namespace ns-a failed: x")])
    [(_, report)] = list(book.report({uid: claim}, lambda _: True))
    assert (report.status, report.message) == (
        UNHEALTHY,
        "the controller marked namespace ns-a failed: x",
    )
    book.forget(uid)
    assert book.watches == {}
    # Reports from checks still in flight for a forgotten claim change nothing.
    book.claim_read_failed(uid, KubeError("late"))
    book.mint_failed(uid, 0, REFUSED)
    assert book.watches == {}


async def test_a_change_between_looking_and_waiting_is_not_lost() -> None:
    from space_dra.kubeletplugin import ChangeSignal

    changes = ChangeSignal()
    seen = changes.version
    changes.notify()  # after the waiter looked, before it waits
    await asyncio.wait_for(changes.wait(60, since=seen), 1)
    seen = changes.version
    waiter = asyncio.ensure_future(changes.wait(60, since=seen))
    await asyncio.sleep(0)
    assert not waiter.done()
    changes.notify()
    await asyncio.wait_for(waiter, 1)
    started = time.monotonic()
    await changes.wait(0.05, since=changes.version)
    assert time.monotonic() - started >= 0.04, "no change: waits its time"


def test_a_failure_only_escalates_until_a_token_is_minted() -> None:
    clock = Clock()
    book = book_with(clock, health_failure_threshold=THRESHOLD)
    uid = new_uid()
    claim = prepared_claim(uid)
    book.track(claim, just_prepared=True)

    def health() -> Verdict:
        [(_, item)] = list(book.report({uid: claim}, lambda _: True))
        return Verdict(item.status, item.message)

    # Terminating, then refused once its RoleBindings are gone: still gone, no flap.
    book.mint_failed(uid, 0, TERMINATING)
    gone = health()
    assert gone.status is UNHEALTHY
    book.mint_failed(uid, 0, REFUSED)
    assert health() == gone
    book.minted(uid, 0)
    assert health().status is HEALTHY
    # Refused past the threshold, then the API server goes away: still Unhealthy.
    for _ in range(THRESHOLD):
        book.mint_failed(uid, 0, REFUSED)
    refused = health()
    assert refused.status is UNHEALTHY
    book.mint_failed(uid, 0, UNREACHABLE)
    assert health() == refused


def test_only_a_plain_refusal_gets_the_rbac_hint() -> None:
    assert describe(REFUSED).endswith(
        "(the namespace may have been deleted, or the RoleBinding space-dra-token-minter "
        "that lets this node mint tokens there removed)"
    )
    assert describe(TERMINATING) == str(TERMINATING)
    assert describe(OSError(28, "No space left on device")) == "[Errno 28] No space left on device"

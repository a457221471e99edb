"""Garbage-collection verdicts and ownership signatures (pure logic)."""

from __future__ import annotations

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from space_dra.contract import (
    DEFAULT_DRIVER_NAME,
    POOL_NAME,
    ClaimView,
    DeviceRef,
    ManagementLabels,
    NamespaceView,
    device_label,
)
from space_dra.controller.gc import judge
from space_dra.controller.ownership import Signer
from tests.support.claims import failed_device, make_claim, new_uid, ready_device

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)
SIGNER = Signer(b"k" * 32)


def namespace(
    name: str, claim_uid: str, device: str = "slot-0", terminating: bool = False
) -> NamespaceView:
    return NamespaceView.of(
        Namespace(
            metadata=ObjectMeta(
                name=name,
                labels={
                    LABELS.claim_uid: claim_uid,
                    LABELS.device: device_label(DeviceRef("ns", POOL_NAME, device)),
                },
                deletionTimestamp="2026-11-26T00:00:00Z" if terminating else None,  # type: ignore[arg-type]
            )
        ),
        LABELS,
    )


def test_signature_binds_name_claim_and_device() -> None:
    signature = SIGNER.sign("ephemeral-ns-abcde", "uid-1", "space.slot-0")
    assert SIGNER.verify(signature, "ephemeral-ns-abcde", "uid-1", "space.slot-0")
    assert not SIGNER.verify(signature, "someone-elses", "uid-1", "space.slot-0")
    assert not SIGNER.verify(signature, "ephemeral-ns-abcde", "uid-2", "space.slot-0")
    assert not SIGNER.verify(signature, "ephemeral-ns-abcde", "uid-1", "space.slot-1")
    assert not Signer(b"x" * 32).verify(signature, "ephemeral-ns-abcde", "uid-1", "space.slot-0")
    assert not SIGNER.verify(None, "ephemeral-ns-abcde", "uid-1", "space.slot-0")
    with pytest.raises(ValueError, match="32 bytes"):
        Signer(b"short")


def test_device_label_format() -> None:
    assert device_label(DeviceRef("r", "space", "slot-7")) == "space.slot-7"


def views(*claims: object) -> dict[str, ClaimView]:
    result = {}
    for claim in claims:
        view = ClaimView(claim, DEFAULT_DRIVER_NAME)  # type: ignore[arg-type]
        result[view.uid] = view
    return result


def test_verdicts() -> None:
    uid = new_uid()
    live = views(make_claim(uid, status_devices=[ready_device("slot-0", "ns-a")]))
    assert judge(namespace("ns-a", uid), live, frozenset(), True).delete is False
    assert judge(namespace("ns-b", uid), live, frozenset(), True).why == "duplicate"
    assert (
        judge(namespace("ns-c", uid, device="slot-9"), live, frozenset(), True).why
        == "device-released"
    )
    assert judge(namespace("ns-a", new_uid()), live, frozenset(), True).why == "claim-deleted"
    unallocated = views(make_claim(uid, allocated=False))
    assert judge(namespace("ns-a", uid), unallocated, frozenset(), True).why == "claim-deallocated"
    pending = views(make_claim(uid))
    assert judge(namespace("ns-a", uid), pending, frozenset(), True).delete is False, (
        "being provisioned"
    )
    # The API server refused the namespace's objects and the failure is recorded:
    # the half-made namespace is not held by anyone.
    failed = views(make_claim(uid, status_devices=[failed_device("slot-0", "rejected")]))
    assert judge(namespace("ns-a", uid), failed, frozenset(), True).why == "provisioning-failed"


@pytest.mark.parametrize(
    ("name", "protected", "signed", "terminating", "why"),
    [
        ("default", frozenset(), True, False, "protected"),
        ("kube-system", frozenset(), True, False, "protected"),
        ("platform", frozenset({"platform"}), True, False, "protected"),
        ("ns-x", frozenset(), False, False, "unverified"),
        ("ns-x", frozenset(), True, True, "terminating"),
    ],
)
def test_never_deleted(
    name: str, protected: frozenset[str], signed: bool, terminating: bool, why: str
) -> None:
    verdict = judge(namespace(name, new_uid(), terminating=terminating), {}, protected, signed)
    assert (verdict.delete, verdict.why) == (False, why)

"""Claim status records, Events and the ownership key, against the in-memory API server."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Secret

from space_dra.contract import (
    CONDITION_FAILED,
    CONDITION_READY,
    CONTROLLER_NAME,
    DEFAULT_DRIVER_NAME,
    WORKLOAD_SERVICE_ACCOUNT,
    ClaimView,
    ManagementLabels,
    NamespaceRecord,
    NamespaceView,
)
from space_dra.controller.ownership import KEY_FIELD, Signer, load_signer
from space_dra.controller.status import DeviceOutcome, device_status, emit_event, write_status
from space_dra.kube import Conflict, Invalid
from space_dra.kube_memory import MemoryKube
from tests.support.claims import SERVER, failed_device, make_claim, new_uid, ready_device
from tests.support.controller import signed_namespace

RECORDED = datetime(2026, 11, 26, tzinfo=UTC)  # lastTransitionTime in tests.support.claims
RECORD = NamespaceRecord("ephemeral-ns-abcde", WORKLOAD_SERVICE_ACCOUNT, SERVER)


def view_of(claim: Any) -> ClaimView:
    return ClaimView(claim, DEFAULT_DRIVER_NAME)


def conditions(status: Any) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


def test_a_ready_device_records_the_namespace() -> None:
    view = view_of(make_claim(new_uid()))
    status = device_status(view, DeviceOutcome(view.our_devices()[0], record=RECORD))
    assert (status.driver, status.pool, status.device) == (DEFAULT_DRIVER_NAME, "space", "slot-0")
    assert status.data == RECORD.to_data()
    assert conditions(status) == {
        CONDITION_READY: ("True", "Provisioned", f"namespace {RECORD.namespace} is ready"),
        CONDITION_FAILED: ("False", "Provisioned", ""),
    }


def test_a_failed_device_records_why_and_no_data() -> None:
    view = view_of(make_claim(new_uid()))
    outcome = DeviceOutcome(
        view.our_devices()[0], failure_reason="InvalidConfig", failure_message="role: no"
    )
    status = device_status(view, outcome)
    assert status.data is None
    assert conditions(status) == {
        CONDITION_READY: ("False", "InvalidConfig", "role: no"),
        CONDITION_FAILED: ("True", "InvalidConfig", "role: no"),
    }


def test_transition_times_move_only_when_the_status_changes() -> None:
    view = view_of(make_claim(new_uid(), status_devices=[ready_device("slot-0", "ns-a")]))
    device = view.our_devices()[0]
    again = device_status(view, DeviceOutcome(device, record=RECORD))
    stamps = {c.type: c.lastTransitionTime for c in again.conditions or []}
    assert stamps[CONDITION_READY] == RECORDED, "still True: kept"
    assert stamps[CONDITION_FAILED] not in (None, RECORDED), "new: stamped now"

    view = view_of(make_claim(new_uid(), status_devices=[failed_device("slot-0", "no")]))
    failed = device_status(view, DeviceOutcome(device, failure_reason="X", failure_message="no"))
    stamps = {c.type: c.lastTransitionTime for c in failed.conditions or []}
    assert stamps[CONDITION_READY] == stamps[CONDITION_FAILED] == datetime(2026, 11, 26, tzinfo=UTC)


async def test_write_status_returns_the_stored_claim_and_refuses_a_replaced_one() -> None:
    kube = MemoryKube()
    uid = new_uid()
    claim = make_claim(uid)
    kube.put(claim)
    view = view_of(claim)
    stored = await write_status(kube, view, [DeviceOutcome(view.our_devices()[0], record=RECORD)])
    stored_view = view_of(stored)
    assert stored_view.uid == uid
    assert stored_view.device_state(stored_view.our_devices()[0]).record == RECORD

    kube.put(make_claim(new_uid()))  # deleted and re-created under the same name
    with pytest.raises(Invalid):
        await write_status(kube, view, [DeviceOutcome(view.our_devices()[0], record=RECORD)])


async def test_events_name_the_claim_and_their_failure_is_not_fatal() -> None:
    kube = MemoryKube()
    uid = new_uid()
    view = view_of(make_claim(uid))
    await emit_event(kube, view, "Warning", "InvalidNamespaceConfig", "x" * 2000)
    [event] = kube.stored(Event)
    assert event.metadata and event.metadata.namespace == "default"
    assert (event.involvedObject.kind, event.involvedObject.uid) == ("ResourceClaim", uid)
    assert event.source and event.source.component == CONTROLLER_NAME
    assert len(event.message or "") == 1024, "clipped"

    kube.fail_next("create", Event)
    await emit_event(kube, view, "Normal", "NamespaceProvisioned", "ok")
    assert len(kube.stored(Event)) == 1


async def test_the_ownership_key_is_created_once_then_read() -> None:
    kube = MemoryKube()
    first = await load_signer(kube, "space-dra", "space-dra-ownership")
    second = await load_signer(kube, "space-dra", "space-dra-ownership")
    assert first.sign("ns", "uid", "space.slot-0") == second.sign("ns", "uid", "space.slot-0")
    [secret] = kube.stored(Secret)
    assert len(base64.b64decode((secret.data or {})[KEY_FIELD])) == 32


async def test_a_key_created_by_another_replica_first_is_used() -> None:
    kube = MemoryKube()
    theirs = b"t" * 32

    def another_replica_wins(verb: str, secret: Any) -> None:
        kube.put(
            Secret(
                metadata=ObjectMeta(name="key", namespace="space-dra"),
                data={KEY_FIELD: base64.b64encode(theirs).decode()},
            )
        )
        raise Conflict('secrets "key" already exists', 409, "AlreadyExists")

    kube.admit(Secret, another_replica_wins)
    signer = await load_signer(kube, "space-dra", "key")
    assert signer.sign("ns", "uid", "d") == Signer(theirs).sign("ns", "uid", "d")


async def test_a_key_secret_without_the_key_is_an_error() -> None:
    kube = MemoryKube()
    kube.put(Secret(metadata=ObjectMeta(name="key", namespace="space-dra"), data={"other": "eA=="}))
    with pytest.raises(ValueError, match="has no 'hmac-key' field"):
        await load_signer(kube, "space-dra", "key")


def test_owns_needs_a_signature_over_name_claim_and_device() -> None:
    labels = ManagementLabels(DEFAULT_DRIVER_NAME)
    signer = Signer(b"k" * 32)
    uid = new_uid()
    assert signer.owns(NamespaceView.of(signed_namespace("ns-a", uid), labels))
    assert not Signer(b"x" * 32).owns(NamespaceView.of(signed_namespace("ns-a", uid), labels))
    forged = signed_namespace("ns-a", uid)
    assert forged.metadata and forged.metadata.labels
    forged.metadata.labels[labels.claim_uid] = new_uid()  # copied onto another claim
    assert not signer.owns(NamespaceView.of(forged, labels))

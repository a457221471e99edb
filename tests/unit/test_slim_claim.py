"""What the controller keeps of a claim: everything it reads, nothing a tenant can inflate."""

from __future__ import annotations

import json
from typing import Any

from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.contract import (
    DEFAULT_DRIVER_NAME,
    EXTENDED_RESOURCE_CLAIM_ANNOTATION,
    POD_CLAIM_NAME_ANNOTATION,
    ClaimView,
)
from space_dra.controller.slim import slim_claim
from tests.support.claims import make_claim, namespace_config, new_uid, ready_device

FOREIGN = "gpu.example.com"
BULK = {"blob": "x" * 8000}


def inflated(claim: ResourceClaim) -> dict[str, Any]:
    """The claim as a hostile tenant would make it: foreign configs, huge metadata."""
    raw = claim.to_dict()
    raw["metadata"].setdefault("annotations", {})["bulk"] = "y" * 8000
    raw["metadata"]["labels"] = {f"l{i}": "v" for i in range(50)}
    foreign = [{"opaque": {"driver": FOREIGN, "parameters": BULK}} for _ in range(32)]
    raw["spec"]["devices"]["config"] = foreign
    allocation = raw["status"].setdefault("allocation", {"devices": {"results": []}})
    allocation["devices"].setdefault("config", []).extend(
        [{"source": "FromClaim", "opaque": {"driver": FOREIGN, "parameters": BULK}}] * 32
    )
    allocation["devices"]["results"].append(
        {"request": "gpu", "driver": FOREIGN, "pool": "p", "device": "d"}
    )
    raw["status"].setdefault("devices", []).append(
        {"driver": FOREIGN, "pool": "p", "device": "d", "data": BULK}
    )
    return raw


def parsed(raw: dict[str, Any]) -> ResourceClaim:
    claim = ResourceClaim.from_dict(raw)
    assert isinstance(claim, ResourceClaim)
    return claim


def views(claim: ResourceClaim) -> tuple[ClaimView, ClaimView, int]:
    raw = inflated(claim)
    full = ClaimView(parsed(raw), DEFAULT_DRIVER_NAME)
    slim_raw = slim_claim(raw, DEFAULT_DRIVER_NAME)
    slim = ClaimView(parsed(slim_raw), DEFAULT_DRIVER_NAME)
    return full, slim, len(json.dumps(slim_raw))


def test_the_controller_reads_the_same_from_a_slim_claim() -> None:
    uid = new_uid()
    claim = make_claim(
        uid,
        devices=[("a", "slot-0"), ("b", "slot-1")],
        configs=[("FromClaim", namespace_config(role="view"), ["a"])],
        status_devices=[ready_device("slot-0", "ns-a")],
        annotations={POD_CLAIM_NAME_ANNOTATION: "workspace"},
        reserved_for=[("pod-1", new_uid())],
    )
    full, slim, size = views(claim)
    assert slim.uid == full.uid == uid
    assert (slim.namespace, slim.name, slim.display_name) == (
        full.namespace,
        full.name,
        "workspace",
    )
    assert slim.allocated and not slim.deleting
    assert slim.our_devices() == full.our_devices()
    for device in full.our_devices():
        assert slim.opaque_configs(device.request) == full.opaque_configs(device.request)
        assert slim.device_state(device) == full.device_state(device)
    assert slim.claim.status is not None and full.claim.status is not None
    assert slim.claim.status.reservedFor == full.claim.status.reservedFor
    assert size < 4000, "foreign configs, labels and annotations are dropped"


def test_a_claim_generated_for_an_extended_resource_is_known_as_such_when_slim() -> None:
    claim = make_claim(
        new_uid(),
        name="pod0-extended-resources-x7k2p",
        annotations={EXTENDED_RESOURCE_CLAIM_ANNOTATION: "true", "other": "dropped"},
    )
    full, slim, _ = views(claim)
    assert full.extended_resource and slim.extended_resource
    assert slim.claim.metadata is not None
    assert slim.claim.metadata.annotations == {EXTENDED_RESOURCE_CLAIM_ANNOTATION: "true"}
    # Only "true" marks it (the API's single valid value).
    other = make_claim(new_uid(), annotations={EXTENDED_RESOURCE_CLAIM_ANNOTATION: "yes"})
    assert not views(other)[1].extended_resource
    assert not views(make_claim(new_uid()))[1].extended_resource


def test_a_claim_not_allocated_to_us_keeps_only_its_identity() -> None:
    claim = make_claim(new_uid(), driver=FOREIGN)
    raw = inflated(claim)
    slim_raw = slim_claim(raw, DEFAULT_DRIVER_NAME)
    assert slim_raw["status"] == {}
    assert len(json.dumps(slim_raw)) < 600
    view = ClaimView(parsed(slim_raw), DEFAULT_DRIVER_NAME)
    assert view.our_devices() == [] and not view.allocated

"""Which managed namespaces must go, decided from the caches alone.

A namespace is deleted only when all of these hold: it carries a valid ownership
signature (see :mod:`ownership`), it is not protected, and its device is no
longer held: the claim is gone, deallocated, being deleted, no longer has that
device, records a different namespace for it (a duplicate left by a crash), or
records that provisioning failed. A namespace for a device with no record yet is
being provisioned and is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lightkube.resources.core_v1 import Namespace

from space_dra.contract import ClaimView, ManagementLabels, RecordError
from space_dra.controller.provision import device_label

ALWAYS_PROTECTED = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


@dataclass(frozen=True)
class Verdict:
    delete: bool
    why: str


KEEP = Verdict(False, "in use")


def judge(
    namespace: Namespace,
    labels: ManagementLabels,
    claims_by_uid: Mapping[str, ClaimView],
    protected: frozenset[str],
    signature_valid: bool,
) -> Verdict:
    meta = namespace.metadata
    name = (meta.name if meta else None) or ""
    if name in protected or name in ALWAYS_PROTECTED:
        return Verdict(False, "protected")
    if not signature_valid:
        return Verdict(False, "unverified")
    if meta is not None and meta.deletionTimestamp is not None:
        return Verdict(False, "terminating")
    ns_labels = (meta.labels if meta else None) or {}
    claim = claims_by_uid.get(ns_labels.get(labels.claim_uid, ""))
    if claim is None:
        return Verdict(True, "claim-deleted")
    if claim.deleting or not claim.allocated:
        return Verdict(True, "claim-deallocated")
    wanted = ns_labels.get(labels.device, "")
    devices = [d for d in claim.our_devices() if device_label(d) == wanted]
    if not devices:
        return Verdict(True, "device-released")
    try:
        state = claim.device_state(devices[0])
    except RecordError:
        return KEEP
    if state.record is not None and state.record.namespace != name:
        return Verdict(True, "duplicate")
    if state.record is None and state.failure is not None:
        return Verdict(True, "provisioning-failed")
    return KEEP

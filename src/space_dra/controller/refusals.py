"""What the provisioner refuses, and how long it remembers.

The scheduler answers a failure by allocating the claim again every few seconds (with
binding conditions), so refusals are remembered: a config refused before is refused
again from memory, with no new namespace, Event or log line. The parser's verdict and
the claim's shape are remembered for the claim's lifetime; a rejection by the API
server (an admission policy may be fixed meanwhile) only for a while, after which it is
tried again (:data:`RETRIED_FAILURES`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container

from space_dra.config import Policy
from space_dra.contract import ClaimView

# Failures that can go away without a new claim: tried again after the memory expires.
RETRIED_FAILURES = frozenset({"Rejected", "TemplateUnavailable"})
# Failure reason recorded on the claim -> (log event, reason of the Warning Event).
REFUSAL_REPORTS = {
    "InvalidConfig": ("claim_config_rejected", "InvalidNamespaceConfig"),
    "TooManyDevices": ("claim_too_many_devices", "TooManyNamespaces"),
    "NestedClaim": ("claim_nested_refused", "NestedNamespaceRefused"),
    "Rejected": ("namespace_rejected", "NamespaceRejected"),
    "TemplateUnavailable": ("namespace_template_unavailable", "NamespaceTemplateUnavailable"),
}


class Refusals:
    """Devices refused before: (claim UID, what the decision depends on) -> verdict."""

    def __init__(self) -> None:
        self._refused: dict[tuple[str, str], tuple[str, str, float]] = {}

    def get(self, key: tuple[str, str]) -> tuple[str, str] | None:
        """(reason, message) while the refusal is remembered."""
        refused = self._refused.get(key)
        if refused is None or time.monotonic() >= refused[2]:
            return None
        return refused[0], refused[1]

    def remember(self, key: tuple[str, str], reason: str, message: str, until: float) -> None:
        self._refused[key] = (reason, message, until)

    def forget_claim(self, claim_uid: str) -> None:
        for key in [k for k in self._refused if k[0] == claim_uid]:
            del self._refused[key]

    def keep_only(self, claim_uids: Container[str]) -> None:
        for key in [k for k in self._refused if k[0] not in claim_uids]:
            del self._refused[key]


def shape_refusal(
    view: ClaimView, policy: Policy, is_managed: Callable[[str], bool]
) -> tuple[str, str] | None:
    """(reason, message) when the claim as a whole is not allowed, else None."""
    count = len(view.our_devices())
    if count > policy.max_devices_per_claim:
        return (
            "TooManyDevices",
            f"the claim holds {count} namespace devices; the policy allows at most "
            f"{policy.max_devices_per_claim} per claim (policy.maxDevicesPerClaim)",
        )
    if not policy.allow_nested_claims and is_managed(view.namespace):
        return (
            "NestedClaim",
            f"the claim is in {view.namespace}, a namespace this driver provisioned; "
            "namespaces cannot be nested (policy.allowNestedClaims)",
        )
    return None

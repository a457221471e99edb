"""Quantity parsing and the names derived for a prepared device."""

from __future__ import annotations

from decimal import Decimal

import pytest

from space_dra.config import Settings
from space_dra.naming import (
    NamingError,
    check_uid,
    device_layout,
    env_prefix_from_name,
    owned_artifact_names,
)
from space_dra.quantity import parse_quantity

UID = "2f1c0a4e-9b7d-4e3a-8c61-0d5f7a9b1e23"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("500m", Decimal("0.5")),
        ("2Gi", 2 * 2**30),
        ("1e3", 1000),
        ("1.5k", 1500),
        ("0.1", Decimal("0.1")),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "ten", "1 Gi", "1GiB", "--1", "1e", "ki"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(text)


def test_env_prefix_from_claim_name() -> None:
    assert env_prefix_from_name("test-claim") == "TEST_CLAIM"
    assert env_prefix_from_name("a.b-c") == "A_B_C"
    with pytest.raises(NamingError, match="envPrefix"):
        env_prefix_from_name("9lives")


def test_single_and_numbered_layouts() -> None:
    one = device_layout(UID, "test-claim", 0, 1, Settings())
    assert (one.cdi_device_name, one.env_prefix, one.mount_path) == (
        UID,
        "TEST_CLAIM",
        "/etc/test-claim",
    )
    assert (
        one.env("drv", "ns", "https://s")["TEST_CLAIM_KUBECONFIG"] == "/etc/test-claim/kubeconfig"
    )
    second = device_layout(UID, "test-claim", 1, 2, Settings())
    assert (second.cdi_device_name, second.env_prefix, second.mount_path) == (
        f"{UID}-1",
        "TEST_CLAIM_1",
        "/etc/test-claim-1",
    )


@pytest.mark.parametrize("uid", ["", "../x", UID.upper(), UID + "/..", "x" * 36])
def test_uid_must_be_a_kubernetes_uid(uid: str) -> None:
    with pytest.raises(NamingError):
        check_uid(uid)


def test_owned_artifact_names_match_only_the_claim() -> None:
    names = [UID, f"{UID}-0", f"{UID}-12", f"{UID}x", "other", f"{UID}-a"]
    assert owned_artifact_names(UID, names) == [UID, f"{UID}-0", f"{UID}-12"]

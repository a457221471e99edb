"""Quantity parsing and the names derived for a prepared device."""

from __future__ import annotations

from decimal import Decimal

import pytest

from space_dra.config import Settings
from space_dra.naming import (
    EXTENDED_RESOURCE_ENV_PREFIX,
    EXTENDED_RESOURCE_MOUNT_PATH,
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


def test_a_claim_generated_for_an_extended_resource_gets_the_fixed_names() -> None:
    # The scheduler names the claim "<pod>-extended-resources-<random>": never the prefix.
    generated = "pod0-extended-resources-x7k2p"
    one = device_layout(UID, generated, 0, 1, Settings(), extended_resource=True)
    assert (one.env_prefix, one.mount_path) == ("SPACE", "/etc/space")
    assert (EXTENDED_RESOURCE_ENV_PREFIX, EXTENDED_RESOURCE_MOUNT_PATH) == ("SPACE", "/etc/space")
    assert one.env("drv", "ns-a", "https://s") == {
        "DRA_RESOURCE_DRIVER_NAME": "drv",
        "SPACE_CLUSTER": "https://s",
        "SPACE_NAMESPACE": "ns-a",
        "SPACE_KUBECONFIG": "/etc/space/kubeconfig",
    }
    assert one.cdi_device_name == UID


def test_several_extended_resource_devices_are_numbered_across_the_claim() -> None:
    layouts = [
        device_layout(UID, "p-extended-resources-abcde", i, 3, Settings(), extended_resource=True)
        for i in range(3)
    ]
    assert [(x.env_prefix, x.mount_path, x.cdi_device_name) for x in layouts] == [
        ("SPACE_0", "/etc/space-0", f"{UID}-0"),
        ("SPACE_1", "/etc/space-1", f"{UID}-1"),
        ("SPACE_2", "/etc/space-2", f"{UID}-2"),
    ]


def test_a_class_config_still_names_extended_resource_devices() -> None:
    settings = Settings(env_prefix="WORK", mount_path="/var/work")
    layout = device_layout(
        UID, "p-extended-resources-abcde", 0, 1, settings, extended_resource=True
    )
    assert (layout.env_prefix, layout.mount_path) == ("WORK", "/var/work")


def test_a_generated_name_that_is_no_env_name_does_not_matter_for_extended_resources() -> None:
    # A pod named "9-lives" gets a claim "9-lives-extended-resources-…": no valid env prefix.
    with pytest.raises(NamingError):
        device_layout(UID, "9-lives-extended-resources-abcde", 0, 1, Settings())
    layout = device_layout(
        UID, "9-lives-extended-resources-abcde", 0, 1, Settings(), extended_resource=True
    )
    assert layout.env_prefix == "SPACE"


@pytest.mark.parametrize("uid", ["", "../x", UID.upper(), UID + "/..", "x" * 36])
def test_uid_must_be_a_kubernetes_uid(uid: str) -> None:
    with pytest.raises(NamingError):
        check_uid(uid)


def test_owned_artifact_names_match_only_the_claim() -> None:
    names = [UID, f"{UID}-0", f"{UID}-12", f"{UID}x", "other", f"{UID}-a"]
    assert owned_artifact_names(UID, names) == [UID, f"{UID}-0", f"{UID}-12"]

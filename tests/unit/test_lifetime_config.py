"""``lifetimeSeconds`` and its policy: unset means no expiry unless the policy has a default
(or a cap); a claim cannot outlive the cap; a DeviceClass can only shorten what the
installation allows."""

from __future__ import annotations

from typing import Any

import pytest

from space_dra.config import (
    SOURCE_CLAIM,
    SOURCE_CLASS,
    ConfigError,
    Policy,
    load_policy,
    resolve,
)
from space_dra.schema import MAX_LIFETIME_SECONDS, MIN_LIFETIME_SECONDS
from tests.support.claims import namespace_config as doc


def claim(**fields: Any) -> tuple[str, dict[str, Any]]:
    return SOURCE_CLAIM, doc(**fields)


def klass(**fields: Any) -> tuple[str, dict[str, Any]]:
    return SOURCE_CLASS, doc(**fields)


def lifetime(*documents: tuple[str, dict[str, Any]], installation: Policy | None = None) -> Any:
    return resolve(list(documents), installation=installation).settings.lifetime_seconds


def test_unset_means_no_expiry() -> None:
    assert lifetime() is None
    assert lifetime(klass(), claim()) is None


def test_the_claim_asks_for_a_lifetime() -> None:
    assert lifetime(claim(lifetimeSeconds=20)) == 20
    assert lifetime(klass(lifetimeSeconds=600), claim(lifetimeSeconds=20)) == 20


def test_the_policy_default_applies_when_unset() -> None:
    installation = load_policy({"defaultLifetimeSeconds": 3600})
    assert lifetime(installation=installation) == 3600
    assert lifetime(claim(), installation=installation) == 3600
    # What the class itself sets as its claims' default comes first.
    assert lifetime(klass(lifetimeSeconds=600), installation=installation) == 600
    assert lifetime(claim(lifetimeSeconds=60), installation=installation) == 60
    # A class's policy default counts the same way.
    assert lifetime(klass(policy={"defaultLifetimeSeconds": 120})) == 120


def test_a_cap_alone_makes_every_namespace_expire() -> None:
    installation = load_policy({"maxLifetimeSeconds": 7200})
    assert lifetime(installation=installation) == 7200
    assert lifetime(claim(lifetimeSeconds=60), installation=installation) == 60


def test_the_policy_refuses_a_lifetime_over_the_cap() -> None:
    installation = load_policy({"maxLifetimeSeconds": 3600})
    with pytest.raises(ConfigError) as caught:
        lifetime(claim(lifetimeSeconds=3601), installation=installation)
    assert caught.value.path == "lifetimeSeconds"
    assert "3601" in str(caught.value) and "3600" in str(caught.value)
    assert "policy.maxLifetimeSeconds" in str(caught.value)
    assert "from the claim" in str(caught.value)


def test_a_class_default_over_the_cap_is_lowered_to_it() -> None:
    installation = load_policy({"maxLifetimeSeconds": 3600})
    assert lifetime(klass(lifetimeSeconds=86400), installation=installation) == 3600


@pytest.mark.parametrize("seconds", [0, MIN_LIFETIME_SECONDS - 1, MAX_LIFETIME_SECONDS + 1])
def test_absolute_bounds(seconds: int) -> None:
    with pytest.raises(ConfigError, match="lifetimeSeconds"):
        lifetime(claim(lifetimeSeconds=seconds))


@pytest.mark.parametrize("value", ["20", 20.5, True, None, [20]])
def test_lifetime_must_be_an_integer(value: Any) -> None:
    with pytest.raises(ConfigError, match="lifetimeSeconds: must be an integer"):
        lifetime(claim(lifetimeSeconds=value))


def test_a_class_can_only_shorten_the_installations_lifetimes() -> None:
    installation = load_policy({"maxLifetimeSeconds": 3600, "defaultLifetimeSeconds": 1800})
    longer = resolve(
        [klass(policy={"maxLifetimeSeconds": 86400, "defaultLifetimeSeconds": 7200})],
        installation=installation,
    ).policy
    assert (longer.max_lifetime_seconds, longer.default_lifetime_seconds) == (3600, 1800)

    shorter = resolve([klass(policy={"maxLifetimeSeconds": 600})], installation=installation)
    # The installation's default follows the class's lower cap down.
    assert shorter.policy.max_lifetime_seconds == 600
    assert shorter.policy.default_lifetime_seconds == 600
    assert shorter.settings.lifetime_seconds == 600

    # Where the installation has no cap, the class's is the cap.
    capped = resolve([klass(policy={"maxLifetimeSeconds": 600})]).policy
    assert capped.max_lifetime_seconds == 600


def test_a_default_above_the_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="defaultLifetimeSeconds"):
        load_policy({"maxLifetimeSeconds": 60, "defaultLifetimeSeconds": 600})
    with pytest.raises(ConfigError, match="defaultLifetimeSeconds"):
        resolve([klass(policy={"maxLifetimeSeconds": 60, "defaultLifetimeSeconds": 600})])

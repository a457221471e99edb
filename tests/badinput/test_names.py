"""Names and prefixes from requests never escape the plugin's directories."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from space_dra.config import ConfigError, Settings
from space_dra.kubeletplugin import ArtifactError, ArtifactStore, CDIError, CDISpecs
from space_dra.naming import NamingError, check_uid, device_layout, env_prefix_from_name
from tests.badinput.conftest import TALLY

pytestmark = pytest.mark.badinput

names = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "..",
            ".",
            "/",
            "a/../../b",
            "ok-name",
            "x" * 256,
            "\u202eevil",
            "é",
            "a\x00b",
            "--",
            "1st",
        ]
    ),
)
UID = "2f1c0a4e-9b7d-4e3a-8c61-0d5f7a9b1e23"


@settings(max_examples=500, deadline=None)
@given(name=names)
def test_claim_names_give_valid_env_and_mount_or_a_clear_error(name: str) -> None:
    TALLY["claim names tried"] += 1
    try:
        layout = device_layout(UID, name, 0, 1, Settings())
    except NamingError as exc:
        TALLY["claim names rejected"] += 1
        assert str(exc)
        return
    TALLY["claim names accepted"] += 1
    assert layout.env_prefix.replace("_", "").isalnum() or layout.env_prefix.isidentifier()
    assert layout.mount_path.startswith("/") and ".." not in layout.mount_path.split("/")
    assert layout.cdi_device_name == UID


@settings(max_examples=500, deadline=None)
@given(uid=st.one_of(names, st.uuids().map(str)))
def test_uids_that_name_files_are_only_real_uids(uid: str) -> None:
    TALLY["UIDs tried"] += 1
    root = Path("/nonexistent-root")
    try:
        check_uid(uid)
    except NamingError:
        TALLY["UIDs rejected"] += 1
        return
    TALLY["UIDs accepted"] += 1
    store = ArtifactStore(root / "artifacts")
    specs = CDISpecs(root / "cdi", "space.resource.example.com")
    assert store.path(uid).parent == store.root
    assert specs.spec_path(uid).parent == specs.directory


@settings(max_examples=300, deadline=None)
@given(name=names)
def test_artifact_store_refuses_anything_but_a_plain_child(name: str) -> None:
    TALLY["artifact names tried"] += 1
    store = ArtifactStore(Path("/nonexistent-root"))
    try:
        path = store.path(name)
    except ArtifactError:
        TALLY["artifact names rejected"] += 1
        return
    assert path.parent == store.root and not name.startswith(".")


@settings(max_examples=300, deadline=None)
@given(prefix=names)
def test_env_prefix_from_any_name(prefix: str) -> None:
    try:
        value = env_prefix_from_name(prefix)
    except NamingError:
        return
    assert value.isidentifier() and value.isascii()


def test_cdi_spec_path_refuses_separators() -> None:
    specs = CDISpecs(Path("/tmp/cdi"), "space.resource.example.com")
    with pytest.raises(CDIError):
        specs.spec_path("../x")
    with pytest.raises(ConfigError):
        from space_dra.config import validate_mount_path

        validate_mount_path("mountPath", "/etc/../x")

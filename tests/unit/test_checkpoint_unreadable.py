"""An unreadable checkpoint, corrupt or of an unknown format version, is reported with
its kind, moved aside, and replaced by what the driver's recovery hook gives."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from space_dra import kubeletplugin as kp

LAMPS = kp.Codec(
    encode=lambda colour: {"colour": colour},
    decode=lambda _uid, entry: str(entry["colour"]),
)


def written(path: Path, version: int, **claims: str) -> str:
    text = json.dumps({"version": version, "claims": {u: {"colour": c} for u, c in claims.items()}})
    path.write_text(text)
    return text


def test_a_future_version_is_named_with_the_version_this_code_reads(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    original = written(path, 99, a="red")
    with pytest.raises(kp.CheckpointCorrupt) as caught:
        kp.Checkpoint(path, LAMPS, version=1).load()
    assert caught.value.kind == kp.UNSUPPORTED_VERSION
    assert "format version 99, this plugin reads version 1" in str(caught.value)
    assert caught.value.moved_to is not None
    assert caught.value.moved_to.read_text() == original, "kept for a later, newer plugin"
    assert str(caught.value.moved_to) in str(caught.value)


@pytest.mark.parametrize(
    "content", ["{ not json", '{"version": 1, "claims": {"a": {}}}', '{"version": 1}', "[]"]
)
def test_anything_else_unreadable_is_corrupt(tmp_path: Path, content: str) -> None:
    path = tmp_path / "cp.json"
    path.write_text(content)
    with pytest.raises(kp.CheckpointCorrupt) as caught:
        kp.Checkpoint(path, LAMPS).load()
    assert caught.value.kind == kp.CORRUPT


def test_update_starts_again_from_the_recovery_hook(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    written(path, 2, a="red")
    seen: list[kp.CheckpointCorrupt] = []

    def recover(unreadable: kp.CheckpointCorrupt) -> Mapping[str, str]:
        seen.append(unreadable)
        return {"a": "blue", "b": "green"}

    checkpoint = kp.Checkpoint(path, LAMPS, on_unreadable=recover)
    assert checkpoint.update(lambda lamps: lamps.pop("b")) == {"a": "blue"}
    assert [exc.kind for exc in seen] == [kp.UNSUPPORTED_VERSION]
    assert json.loads(path.read_text()) == {"version": 1, "claims": {"a": {"colour": "blue"}}}
    # The rebuilt file is read normally from then on.
    assert checkpoint.update(lambda lamps: None) == {"a": "blue"}
    assert len(seen) == 1


def test_a_file_that_cannot_be_moved_aside_is_still_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No crash loop even when the rename fails: the write replaces the bad file."""
    path = tmp_path / "cp.json"
    path.write_text("garbage")
    # Where it would be moved is taken by a directory that is not empty.
    monkeypatch.setattr("space_dra.kubeletplugin.checkpoint.time.time", lambda: 1000.0)
    (tmp_path / "cp.json.corrupt-1000" / "occupied").mkdir(parents=True)
    kinds: list[str] = []

    def recover(unreadable: kp.CheckpointCorrupt) -> Mapping[str, str]:
        kinds.append(unreadable.kind)
        assert unreadable.moved_to is None
        return {}

    checkpoint = kp.Checkpoint(path, LAMPS, on_unreadable=recover)
    assert checkpoint.update(lambda lamps: lamps.update(x="on")) == {"x": "on"}
    assert kinds == [kp.CORRUPT]
    assert json.loads(path.read_text())["claims"] == {"x": {"colour": "on"}}

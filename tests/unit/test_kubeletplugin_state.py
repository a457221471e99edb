"""The layer's building blocks for a driver's state: the checkpoint and the CDI spec writer.

(That the layer imports nothing of the namespace driver is checked in test_layering.py.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from space_dra import kubeletplugin as kp


@dataclass(frozen=True)
class Lamp:
    colour: str


def _decode(_uid: str, data: Mapping[str, Any]) -> Lamp:
    return Lamp(data["colour"])


LAMPS = kp.Codec(encode=lambda lamp: {"colour": lamp.colour}, decode=_decode)


def test_checkpoint_round_trip_and_format(tmp_path: Path) -> None:
    checkpoint = kp.Checkpoint(tmp_path / "cp.json", LAMPS, version=3)
    checkpoint.update(lambda lamps: lamps.update(b=Lamp("red"), a=Lamp("blue")))
    assert json.loads((tmp_path / "cp.json").read_text()) == {
        "version": 3,
        "claims": {"a": {"colour": "blue"}, "b": {"colour": "red"}},
    }
    assert kp.Checkpoint(tmp_path / "cp.json", LAMPS, version=3).load() == {
        "a": Lamp("blue"),
        "b": Lamp("red"),
    }


@pytest.mark.parametrize(
    "content",
    [
        '{"version": 2, "claims": {}}',
        '{"version": 1, "claims": {"a": {"shade": "red"}}}',
        "[1, 2]",
        "{ not json",
    ],
    ids=["other version", "entry the codec refuses", "not an object", "truncated"],
)
def test_an_unreadable_checkpoint_is_moved_aside(tmp_path: Path, content: str) -> None:
    path = tmp_path / "cp.json"
    path.write_text(content)
    with pytest.raises(kp.CheckpointCorrupt) as caught:
        kp.Checkpoint(path, LAMPS).load()
    assert caught.value.moved_to is not None
    assert caught.value.moved_to.read_text() == content
    assert not path.exists()
    # Writing again starts afresh instead of failing.
    assert kp.Checkpoint(path, LAMPS).update(lambda lamps: lamps.update(x=Lamp("on"))) == {
        "x": Lamp("on")
    }


def test_two_instances_never_lose_each_others_entries(tmp_path: Path) -> None:
    old, new = (kp.Checkpoint(tmp_path / "cp.json", LAMPS) for _ in range(2))
    old.update(lambda lamps: lamps.update(a=Lamp("1")))
    new.update(lambda lamps: lamps.update(b=Lamp("2")))
    old.update(lambda lamps: lamps.pop("a"))
    assert new.load() == {"b": Lamp("2")}


def test_cdi_spec_records_and_devices_without_one(tmp_path: Path) -> None:
    specs = kp.CDISpecs(tmp_path, "lamp.example.com", "lamp")
    uid, bare = "2f1c0a4e-9b7d-4e3a-8c61-0d5f7a9b1e23", "7c2d9e10-4b6a-4f8e-a1d3-9e8f7a6b5c42"
    specs.write(
        uid,
        [
            kp.CDIDevice(
                "one",
                {"LAMP": "on"},
                [kp.Mount("/host/one", "/lamp", ("rw", "bind"))],
                {"colour": "red"},
            )
        ],
    )
    specs.write(bare, [kp.CDIDevice("two", {"LAMP": "off"})])
    assert specs.qualified_name("one") == "lamp.example.com/lamp=one"
    spec = json.loads(specs.spec_path(uid).read_text())
    assert spec["kind"] == "lamp.example.com/lamp"
    [device] = spec["devices"]
    assert device["containerEdits"] == {
        "env": ["LAMP=on"],
        "mounts": [{"hostPath": "/host/one", "containerPath": "/lamp", "options": ["rw", "bind"]}],
    }
    assert "annotations" not in json.loads(specs.spec_path(bare).read_text())["devices"][0]
    assert specs.recorded_devices() == {uid: [{"colour": "red"}]}
    specs.remove(uid)
    specs.remove(uid)
    assert not specs.exists(uid) and specs.exists(bare)

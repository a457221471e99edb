"""One local cluster per machine (localcluster/owner.py): another state dir's up/down refuse."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import owner, processes


@pytest.fixture
def owner_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "owner.json"
    monkeypatch.setattr(owner, "OWNER_FILE", path)
    return path


@pytest.fixture
def live_state(tmp_path: Path) -> Iterator[Path]:
    """A state dir whose pid file names a live process (as a running cluster's would)."""
    state = tmp_path / "running" / ".cluster"
    (state / "pids").mkdir(parents=True)
    proc = subprocess.Popen(["/bin/sleep", "60"])
    try:
        for _ in range(100):
            start = processes._proc_start_time(proc.pid)
            if start is not None and processes._proc_argv0(proc.pid) == "/bin/sleep":
                break
            time.sleep(0.01)
        record = {"pid": proc.pid, "exe": "/bin/sleep", "start_time": start}
        (state / "pids" / "etcd.json").write_text(json.dumps(record))
        yield state
    finally:
        proc.kill()
        proc.wait()


def test_a_second_state_dir_is_refused_while_the_owner_runs(
    owner_file: Path, live_state: Path, tmp_path: Path
) -> None:
    owner.claim(live_state)
    other = tmp_path / "other" / ".cluster"
    with pytest.raises(owner.ClusterBusy, match=f"SPACE_DRA_CLUSTER_STATE={live_state}"):
        owner.claim(other)
    with pytest.raises(owner.ClusterBusy, match="cannot clean up"):
        owner.check(other, "clean up")
    owner.claim(live_state)  # the owner itself may run up again
    owner.release(other)  # not the owner: nothing happens
    assert owner.owner() == live_state.resolve()


def test_a_stopped_owner_does_not_block(owner_file: Path, tmp_path: Path) -> None:
    stopped = tmp_path / "stopped" / ".cluster"
    (stopped / "pids").mkdir(parents=True)
    owner.claim(stopped)
    other = tmp_path / "other" / ".cluster"
    owner.claim(other)
    assert owner.owner() == other.resolve()
    owner.release(other)
    assert not owner_file.exists()

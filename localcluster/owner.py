"""One local cluster per machine: which state dir owns the machine-wide pieces right now.

Every cluster uses the same node IPs, ports, ``/var/lib/kubelet``, ``/space-dra`` cgroups and
``sdra-*`` network names, so a second checkout's ``up`` (or its ``down``, which cleans those
machine-wide pieces) would break a running cluster. ``up`` records its state dir in
:data:`OWNER_FILE` (on ``/run``: gone after a reboot, with everything it protects); ``up`` and
``down`` of another state dir refuse while a process of the owner still runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from localcluster.processes import is_alive, read_record

OWNER_FILE = Path("/run/space-dra-local-cluster.json")


class ClusterBusy(RuntimeError):
    """Another state dir's cluster runs on this machine."""


def owner() -> Path | None:
    try:
        data = json.loads(OWNER_FILE.read_text())
        return Path(data["state"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running(state: Path) -> bool:
    """Whether any component recorded under ``state`` still runs."""
    pids = state / "pids"
    records = (read_record(p) for p in pids.glob("*.json")) if pids.is_dir() else ()
    return any(rec is not None and is_alive(rec) for rec in records)


def check(state: Path, action: str) -> None:
    """Raise ClusterBusy if a cluster of another state dir runs on this machine."""
    other = owner()
    if other is None or other.resolve() == state.resolve() or not running(other):
        return
    raise ClusterBusy(
        f"cannot {action}: the local cluster of {other} runs on this machine (one at a time: "
        f"same node IPs, ports and /var/lib/kubelet). Stop it first: "
        f"SPACE_DRA_CLUSTER_STATE={other} python -m localcluster down"
    )


def claim(state: Path) -> None:
    check(state, "start a cluster")
    OWNER_FILE.write_text(json.dumps({"state": str(state.resolve())}) + "\n")


def release(state: Path) -> None:
    other = owner()
    if other is not None and other.resolve() == state.resolve():
        OWNER_FILE.unlink(missing_ok=True)

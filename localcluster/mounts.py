"""Find and undo the mounts the cluster left behind (pod volumes, rootfs overlays, netns, shm)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(prefixes: list[Path]) -> list[str]:
    """Mount points at or below any of ``prefixes``, deepest first."""
    roots = [str(p.resolve()) if p.exists() else str(p) for p in prefixes]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = _unescape(line.split()[4])
        if any(target == r or target.startswith(r.rstrip("/") + "/") for r in roots):
            found.append(target)
    return sorted(set(found), key=lambda t: (-t.count("/"), t))


def unmount_all(prefixes: list[Path]) -> list[str]:
    """Unmount everything below ``prefixes`` (lazily if busy). Returns what was unmounted."""
    done: list[str] = []
    for _ in range(5):  # stacked mounts need several passes
        targets = mounts_under(prefixes)
        if not targets:
            break
        for t in targets:
            res = subprocess.run(["umount", t], capture_output=True, check=False)
            if res.returncode != 0:
                res = subprocess.run(["umount", "-l", t], capture_output=True, check=False)
            if res.returncode == 0:
                done.append(t)
    return done


def remove_empty_dirs(root: Path) -> None:
    """rmdir every empty directory below and including ``root`` (used for cgroup trees)."""
    if not root.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda x: -x[0].count("/")):
        with contextlib.suppress(OSError):
            Path(dirpath).rmdir()


def cgroup_v1_mounts() -> list[Path]:
    """Mount points of the cgroup v1 hierarchies (one per controller set, plus named ones)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup":
            found.append(Path(_unescape(left.split()[4])))
    return found


def ensure_cgroup(name: str) -> None:
    """Create cgroup ``name`` (and its parents) in every v1 hierarchy; cpuset needs each level's
    cpus and mems filled from its parent before a child or a task can use it."""
    parts = [p for p in name.strip("/").split("/") if p]
    for mount in cgroup_v1_mounts():
        parent = mount
        for part in parts:
            path = parent / part
            path.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                f = path / knob
                if f.exists() and not f.read_text().strip():
                    f.write_text((parent / knob).read_text())
            parent = path

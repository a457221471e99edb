"""The build cache under ``~/.cache/space-dra/driver-image/``: keys, entries, the lock.

Every cached thing (apt index, .deb files, wheels, layers, the archive) is a file or directory
named ``<kind>-<key>``, the key a short hash of its inputs, so a changed input makes a new entry
and the old one of the same kind is dropped once the new one exists. Entries are built under a
``.tmp`` name and renamed, so a killed build never leaves a half-made entry that looks finished.
A file lock serialises concurrent builds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from localcluster import driverlayout as facts


def key(*parts: object) -> str:
    """A short, stable hash of JSON-serialisable ``parts``: the ``<key>`` of a cache entry."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cache:
    root: Path

    @property
    def apt(self) -> Path:
        """The private apt state (sources, index, partial downloads) for the image's suite."""
        return self.root / f"apt-{facts.DEBIAN_SUITE}"

    @property
    def debs(self) -> Path:
        """The .deb files of the current resolution (older ones are deleted)."""
        return self.root / "debs"

    def keep_only(self, prefix: str, current: Path) -> None:
        """Delete older cache entries of one kind (``<prefix>-<key>*``) once ``current`` exists."""
        for old in self.root.glob(f"{prefix}-*"):
            if not old.name.startswith(current.name.split(".", 1)[0]):
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old)
                else:
                    old.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def cached_layer(path: Path, rebuild: bool, build: Callable[[Path], None], cache: Cache) -> Path:
    """``path`` if cached (and not ``rebuild``), else built by ``build(path)``; older entries of
    the same kind are then dropped."""
    if rebuild and path.exists():
        shutil.rmtree(path)
    if not path.exists():
        build(path)
        cache.keep_only(path.name.split("-", 1)[0], path)
    return path

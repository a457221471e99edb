"""Per-claim directories of files for containers, replaced atomically like projected volumes.

A driver that hands files to containers bind-mounts a directory ``<root>/<name>/``
read-only (a :class:`~space_dra.kubeletplugin.Mount` in its CDI spec). To change the
files while containers run (rotating a credential), the directory itself must stay
and its content must never be seen half-written. The layout follows the kubelet's
projected volumes: the files live in a hidden timestamped directory, ``..data`` is a
symlink to it, and each visible name is a symlink through ``..data``. Publishing a new
generation is one ``rename`` of a fresh ``..data`` symlink, so readers see either the
old files or the new ones, never a mix.

On the host the root is 0700 (only root may look inside); the files are 0644 so a
container running as any user can read them, like a projected ServiceAccount token.
Nothing is fsynced: the root belongs on tmpfs, and a driver re-creates its files from
its checkpoint after a reboot.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from space_dra.kubeletplugin.files import write_file

DATA_LINK = "..data"
ROOT_MODE = 0o700
DIR_MODE = 0o755
FILE_MODE = 0o644


class ArtifactError(OSError):
    pass


class ArtifactStore:
    """Owns ``root``; every path it touches is a direct child it validated."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(ROOT_MODE)

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith(".") or name != Path(name).name:
            raise ArtifactError(f"refusing artifact directory name {name!r}")
        return self.root / name

    def complete(self, name: str, files: Iterable[str]) -> bool:
        """Whether every one of ``files`` is in place (a reboot or a person may remove them)."""
        directory = self.path(name)
        return all((directory / file).is_file() for file in files)

    def publish(self, name: str, files: Mapping[str, bytes]) -> Path:
        """Write a new generation of ``files`` and switch ``..data`` to it atomically."""
        self.ensure_root()
        directory = self.path(name)
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        directory.chmod(DIR_MODE)
        generation = Path(
            tempfile.mkdtemp(prefix=f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.", dir=directory)
        )
        try:
            generation.chmod(DIR_MODE)
            for file_name, content in files.items():
                write_file(generation / file_name, content, FILE_MODE, exclusive=True)
            staging_link = directory / f"{DATA_LINK}_tmp"
            staging_link.unlink(missing_ok=True)
            staging_link.symlink_to(generation.name)
            staging_link.rename(directory / DATA_LINK)
        except BaseException:
            shutil.rmtree(generation, ignore_errors=True)
            raise
        for file_name in files:
            link = directory / file_name
            if not link.is_symlink():
                link.unlink(missing_ok=True)
                link.symlink_to(f"{DATA_LINK}/{file_name}")
        self._drop_old_generations(directory, keep=generation.name)
        return directory

    def remove(self, name: str) -> None:
        shutil.rmtree(self.path(name), ignore_errors=True)
        if self.path(name).exists():
            raise ArtifactError(f"could not remove {self.path(name)}")

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())

    @staticmethod
    def _drop_old_generations(directory: Path, keep: str) -> None:
        for entry in directory.iterdir():
            if (
                entry.name.startswith("..")
                and entry.name != keep
                and not entry.is_symlink()
                and entry.is_dir()
            ):
                shutil.rmtree(entry, ignore_errors=True)

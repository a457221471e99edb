"""Writing files that other processes read while the driver writes them.

containerd reads CDI specs as they appear, another plugin instance reads the checkpoint,
containers read their artifacts: none may ever see half a file, and each file must
have exactly the mode asked for, whatever the process umask. Nothing here is fsynced;
why that is safe is said where each kind of file is written.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_file(path: Path, content: bytes, mode: int, *, exclusive: bool = False) -> None:
    """Create (or, unless ``exclusive``, truncate) ``path`` with ``mode`` and write ``content``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    # The umask may have taken bits away.
    path.chmod(mode)


def staging_path(path: Path) -> Path:
    """Where :func:`replace_file` writes before the rename (a hidden sibling)."""
    return path.with_name(f".{path.name}.tmp")


def replace_file(path: Path, content: bytes, mode: int) -> None:
    """Replace ``path`` in one rename: readers see the old content or the new, never a mix."""
    staging = staging_path(path)
    write_file(staging, content, mode)
    staging.rename(path)

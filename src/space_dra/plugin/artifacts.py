"""Credential files for one prepared device, swapped atomically.

The directory ``<root>/<name>/`` is bind-mounted read-only into containers, so
rotating the token must change what a running container sees without replacing
the directory itself. The layout follows the kubelet's projected volumes: the
files live in a hidden timestamped directory, ``..data`` is a symlink to it, and
each visible name is a symlink through ``..data``. Publishing a new generation is
one ``rename`` of a fresh ``..data`` symlink, so readers see either the old files
or the new ones, never a mix.

On the host the root is 0700 (only root may look inside); the files are 0644 so a
container running as any user can read its own credentials, like a projected
ServiceAccount token. Nothing is fsynced: the root is on tmpfs and everything in
it is re-created from the checkpoint after a reboot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

DATA_LINK = "..data"
ROOT_MODE = 0o700
DIR_MODE = 0o755
FILE_MODE = 0o644
FILES = ("kubeconfig", "token", "ca.crt", "namespace")


class ArtifactError(OSError):
    pass


def kubeconfig(server: str, ca_pem: bytes, namespace: str, token_path: str) -> bytes:
    """A kubeconfig that works from inside the container.

    The token is referenced by its in-container path rather than embedded, so
    clients that re-read ``tokenFile`` (client-go does, every minute) keep working
    across rotations without reloading the kubeconfig. Every value is written as a
    JSON string, which YAML reads as a double-quoted scalar: nothing a value
    contains can change the document's structure, and it is cheaper than a YAML
    emitter on the prepare path.
    """
    quoted = {
        "server": json.dumps(server),
        "ca": json.dumps(base64.b64encode(ca_pem).decode()),
        "namespace": json.dumps(namespace),
        "token": json.dumps(token_path),
    }
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: space\n"
        "  cluster:\n"
        f"    server: {quoted['server']}\n"
        f"    certificate-authority-data: {quoted['ca']}\n"
        "users:\n"
        "- name: space\n"
        "  user:\n"
        f"    tokenFile: {quoted['token']}\n"
        "contexts:\n"
        "- name: space\n"
        "  context:\n"
        "    cluster: space\n"
        "    user: space\n"
        f"    namespace: {quoted['namespace']}\n"
        "current-context: space\n"
    ).encode()


def render(
    mount_path: str, server: str, ca_pem: bytes, namespace: str, token: str
) -> dict[str, bytes]:
    """The files for one device; ``mount_path`` is where the container sees them."""
    return {
        "kubeconfig": kubeconfig(server, ca_pem, namespace, f"{mount_path}/token"),
        "token": token.encode(),
        "ca.crt": ca_pem,
        "namespace": namespace.encode(),
    }


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

    def complete(self, name: str) -> bool:
        directory = self.path(name)
        return all((directory / file).is_file() for file in FILES)

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
                target = generation / file_name
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
                try:
                    os.write(fd, content)
                finally:
                    os.close(fd)
                target.chmod(FILE_MODE)
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

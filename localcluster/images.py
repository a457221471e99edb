"""Container images built on this machine as OCI archives and imported into containerd.

No registry and no pull: ``build_oci_archive`` writes an OCI image layout tarball from host files or
bytes, and ``import_archive`` loads it with ``ctr -n k8s.io images import`` under its exact name, so
pods use it with ``imagePullPolicy: IfNotPresent``/``Never``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from localcluster import versions

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class ImageFile:
    """One entry of an image layer.

    ``path`` is absolute inside the image. ``source`` is a host file, a host directory (copied
    recursively, keeping modes and symlinks), or the file's content as bytes; ``None`` makes a
    directory. ``symlink`` makes a symbolic link to that target instead. ``mode`` overrides the
    permission bits (default: the host file's, 0o644 for bytes, 0o755 for directories). Entries are
    owned by root unless ``keep_owner`` is set: then a host file or directory (and everything below
    it) keeps its host uid and gid.
    """

    path: str
    source: Path | bytes | None = None
    mode: int | None = None
    symlink: str | None = None
    keep_owner: bool = False


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of the OCI image config."""

    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Sequence[str] = ("PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin",)
    workdir: str = "/"
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        cfg: dict[str, object] = {"Env": list(self.env), "WorkingDir": self.workdir}
        if self.entrypoint:
            cfg["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            cfg["Cmd"] = list(self.cmd)
        if self.user:
            cfg["User"] = self.user
        if self.labels:
            cfg["Labels"] = dict(self.labels)
        return cfg


def _norm(path: str) -> str:
    p = PurePosixPath("/") / path
    if ".." in p.parts:
        raise ValueError(f"image path {path!r} leaves the root")
    return str(p).lstrip("/")


def _tarinfo(
    name: str,
    kind: bytes,
    mode: int,
    size: int = 0,
    link: str = "",
    owner: os.stat_result | None = None,
) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.mtime = 0
    ti.uid = owner.st_uid if owner else 0
    ti.gid = owner.st_gid if owner else 0
    ti.uname = ti.gname = ""
    return ti


def _expand(entries: Iterable[ImageFile]) -> Iterator[tuple[tarfile.TarInfo, Path | bytes | None]]:
    """Yield tar members (with their content source) for the layer entries, host dirs expanded."""
    for e in entries:
        name = _norm(e.path)
        if e.symlink is not None:
            yield _tarinfo(name, tarfile.SYMTYPE, 0o777, link=e.symlink), None
        elif e.source is None:
            yield _tarinfo(name, tarfile.DIRTYPE, e.mode or 0o755), None
        elif isinstance(e.source, bytes):
            yield _tarinfo(name, tarfile.REGTYPE, e.mode or 0o644, len(e.source)), e.source
        elif e.source.is_dir():
            top = e.source.stat() if e.keep_owner else None
            yield _tarinfo(name, tarfile.DIRTYPE, e.mode or 0o755, owner=top), None
            for root, dirs, files in os.walk(e.source):
                dirs.sort()
                rel_root = Path(root).relative_to(e.source)
                for entry in [*dirs, *sorted(files)]:
                    host = Path(root) / entry
                    member = f"{name}/{rel_root / entry}".replace("/./", "/")
                    member = _norm(member)
                    st = host.lstat()
                    owner = st if e.keep_owner else None
                    if stat.S_ISLNK(st.st_mode):
                        target = str(host.readlink())
                        yield (
                            _tarinfo(member, tarfile.SYMTYPE, 0o777, link=target, owner=owner),
                            None,
                        )
                    elif stat.S_ISDIR(st.st_mode):
                        mode = stat.S_IMODE(st.st_mode)
                        yield _tarinfo(member, tarfile.DIRTYPE, mode, owner=owner), None
                    elif stat.S_ISREG(st.st_mode):
                        mode = stat.S_IMODE(st.st_mode)
                        yield _tarinfo(member, tarfile.REGTYPE, mode, st.st_size, owner=owner), host
                    else:
                        raise ValueError(f"{host}: not a file, directory or symlink")
        else:
            st = e.source.stat()
            mode = e.mode if e.mode is not None else stat.S_IMODE(st.st_mode)
            owner = st if e.keep_owner else None
            yield _tarinfo(name, tarfile.REGTYPE, mode, st.st_size, owner=owner), e.source


def tree_entries(root: Path) -> list[ImageFile]:
    """Layer entries for everything below the host directory ``root``, at the same paths.

    Modes, owners and symlinks (also top-level ones such as a merged-/usr ``/bin -> usr/bin``)
    are kept. Device nodes, sockets and fifos are refused.
    """
    entries: list[ImageFile] = []
    for child in sorted(root.iterdir()):
        st = child.lstat()
        path = "/" + child.name
        if stat.S_ISLNK(st.st_mode):
            entries.append(ImageFile(path, symlink=str(child.readlink())))
        elif stat.S_ISDIR(st.st_mode):
            entries.append(ImageFile(path, child, mode=stat.S_IMODE(st.st_mode), keep_owner=True))
        elif stat.S_ISREG(st.st_mode):
            entries.append(ImageFile(path, child, keep_owner=True))
        else:
            raise ValueError(f"{child}: not a file, directory or symlink")
    return entries


def _write_layer(entries: Sequence[ImageFile], out: IO[bytes]) -> None:
    members: dict[str, tuple[tarfile.TarInfo, Path | bytes | None]] = {}
    for ti, src in _expand(entries):
        parts = PurePosixPath(ti.name).parts
        for i in range(1, len(parts)):  # implicit parent directories
            parent = "/".join(parts[:i])
            members.setdefault(parent, (_tarinfo(parent, tarfile.DIRTYPE, 0o755), None))
        members[ti.name] = (ti, src)
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            ti, src = members[name]
            if isinstance(src, bytes):
                tar.addfile(ti, io.BytesIO(src))
            elif isinstance(src, Path):
                with src.open("rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti)


def _sha256_file(f: IO[bytes]) -> tuple[str, int]:
    f.seek(0)
    h = hashlib.sha256()
    size = 0
    while chunk := f.read(1 << 20):
        h.update(chunk)
        size += len(chunk)
    f.seek(0)
    return "sha256:" + h.hexdigest(), size


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tarinfo(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))


def build_oci_archive(
    out: Path,
    reference: str,
    layers: Sequence[Sequence[ImageFile]],
    config: ImageConfig,
) -> str:
    """Write an OCI image layout tarball for ``reference`` and return its manifest digest.

    ``layers`` is a list of layers, bottom first, each a list of ``ImageFile`` entries (host
    paths, host directories or bytes mapped to absolute paths in the image; parent directories
    are created implicitly). ``config`` sets entrypoint, cmd, env, working dir, user and labels.
    The result is reproducible (sorted entries, zero mtimes and owners) and uncompressed, and
    carries the ``io.containerd.image.name`` annotation so ``ctr images import`` names it
    ``reference`` exactly. Import it with ``import_archive``.
    """
    if ":" not in reference.rsplit("/", 1)[-1]:
        raise ValueError(f"image reference {reference!r} needs an explicit tag")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    layer_descs: list[dict[str, object]] = []
    diff_ids: list[str] = []
    with tarfile.open(tmp_out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entries in layers:
            with tempfile.TemporaryFile(dir=out.parent) as buf:
                _write_layer(entries, buf)
                buf.flush()
                digest, size = _sha256_file(buf)
                archive.addfile(
                    _tarinfo(f"blobs/sha256/{digest[7:]}", tarfile.REGTYPE, 0o644, size), buf
                )
            diff_ids.append(digest)
            layer_descs.append({"mediaType": MEDIA_LAYER, "digest": digest, "size": size})
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "config": config.as_dict(),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "localcluster.images"} for _ in diff_ids],
        }
        cfg_bytes = json.dumps(image_config, sort_keys=True).encode()
        cfg_digest = "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
        _add_bytes(archive, f"blobs/sha256/{cfg_digest[7:]}", cfg_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": cfg_digest, "size": len(cfg_bytes)},
            "layers": layer_descs,
        }
        man_bytes = json.dumps(manifest, sort_keys=True).encode()
        man_digest = "sha256:" + hashlib.sha256(man_bytes).hexdigest()
        _add_bytes(archive, f"blobs/sha256/{man_digest[7:]}", man_bytes)
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": man_digest,
                    "size": len(man_bytes),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": reference,
                        "org.opencontainers.image.ref.name": reference.rsplit(":", 1)[1],
                    },
                }
            ],
        }
        _add_bytes(archive, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(archive, "index.json", json.dumps(index, sort_keys=True).encode())
    tmp_out.rename(out)
    return man_digest


# --- importing --------------------------------------------------------------------------------
def image_digests(ctr: Path, address: Path) -> dict[str, str]:
    """Images in containerd's k8s.io namespace: reference -> manifest digest."""
    res = subprocess.run(
        [str(ctr), "--address", str(address), "-n", "k8s.io", "images", "ls"],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, str] = {}
    for line in res.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3:
            found[cols[0]] = cols[2]
    return found


def import_archive(ctr: Path, address: Path, archive: Path) -> None:
    """``ctr -n k8s.io images import`` (unpacks for the default snapshotter)."""
    res = subprocess.run(
        [str(ctr), "--address", str(address), "-n", "k8s.io", "images", "import", str(archive)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"ctr images import {archive} failed:\n{res.stdout}\n{res.stderr}")


def import_into_nodes(
    ctr: Path, sockets: Sequence[Path], archive: Path, reference: str, digest: str
) -> bool:
    """Import ``archive`` into every node's containerd that lacks ``reference`` at ``digest``.

    Returns whether any node needed it.
    """
    if not sockets:
        raise RuntimeError("containerd is not running: run `python -m localcluster up`")
    imported = False
    for sock in sockets:
        if image_digests(ctr, sock).get(reference) == digest:
            continue
        import_archive(ctr, sock, archive)
        got = image_digests(ctr, sock).get(reference)
        if got != digest:
            raise RuntimeError(
                f"imported {archive} into {sock}; containerd has {reference} as {got}"
            )
        imported = True
    return imported


def tag_image(ctr: Path, address: Path, source: str, alias: str) -> bool:
    """Make ``alias`` name the same image as ``source`` (``ctr images tag --force``).

    Returns whether the alias had to be (re)pointed.
    """
    digests = image_digests(ctr, address)
    if source not in digests:
        raise RuntimeError(f"cannot tag {alias}: containerd has no image {source}")
    if digests.get(alias) == digests[source]:
        return False
    argv = [str(ctr), "--address", str(address), "-n", "k8s.io", "images", "tag", "--force"]
    res = subprocess.run([*argv, source, alias], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"ctr images tag {source} {alias} failed:\n{res.stdout}\n{res.stderr}")
    return True


def remove_all_containers(ctr: Path, address: Path) -> int:
    """Kill and delete every container of the k8s.io namespace (``down``). Returns how many."""
    base = [str(ctr), "--address", str(address), "-n", "k8s.io"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, check=False, timeout=60
        )

    ids = run("containers", "ls", "-q").stdout.split()
    for cid in ids:
        run("tasks", "kill", "-s", "SIGKILL", cid)
    for cid in ids:
        run("tasks", "delete", "--force", cid)
        run("containers", "delete", cid)
    return len(ids)


@dataclass(frozen=True)
class ImageSpec:
    """An image the cluster needs: how to build it, and under which exact name."""

    reference: str
    layers: Sequence[Sequence[ImageFile]]
    config: ImageConfig

    def inputs_key(self) -> str:
        """A cheap key of the inputs (host files by path, size and mtime; bytes by hash)."""
        h = hashlib.sha256(self.reference.encode())
        h.update(json.dumps(self.config.as_dict(), sort_keys=True).encode())
        for layer in self.layers:
            h.update(b"\x00layer")
            for e in layer:
                h.update(f"{e.path}|{e.mode}|{e.symlink}|{e.keep_owner}|".encode())
                if isinstance(e.source, bytes):
                    h.update(hashlib.sha256(e.source).digest())
                elif isinstance(e.source, Path):
                    for p in [e.source, *sorted(e.source.rglob("*"))]:
                        st = p.lstat()
                        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}|{st.st_mode}".encode())
        return h.hexdigest()[:32]


def ensure_image(spec: ImageSpec, cache: Path, ctr: Path, address: Path) -> str:
    """Build the archive (cached by inputs) and import it unless containerd already has it."""
    safe = spec.reference.replace("/", "_").replace(":", "_")
    archive = cache / f"{safe}-{spec.inputs_key()}.tar"
    digest_file = archive.with_suffix(".digest")
    if archive.exists() and digest_file.exists():
        digest = digest_file.read_text().strip()
    else:
        for old in cache.glob(f"{safe}-*"):
            old.unlink()
        digest = build_oci_archive(archive, spec.reference, spec.layers, spec.config)
        digest_file.write_text(digest + "\n")
    if image_digests(ctr, address).get(spec.reference) != digest:
        import_archive(ctr, address, archive)
        got = image_digests(ctr, address).get(spec.reference)
        if got != digest:
            raise RuntimeError(f"imported {archive} but containerd shows {spec.reference} as {got}")
    return digest


# --- the cluster's own images --------------------------------------------------------------------
def pause_image(pause_binary: Path) -> ImageSpec:
    return ImageSpec(
        reference=versions.PAUSE_IMAGE,
        layers=[[ImageFile("/pause", pause_binary, mode=0o755)]],
        config=ImageConfig(entrypoint=["/pause"], env=()),
    )


def busybox_applets(busybox: Path) -> list[str]:
    """Install paths of every applet of a busybox binary (``busybox --list-full``)."""
    res = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    return [line.strip() for line in res.stdout.splitlines() if line.strip()]


PRINTENV = b"""#!/bin/sh
# printenv [NAME...]: busybox sh stand-in for coreutils printenv.
[ $# -eq 0 ] && exec env
rc=0
for name in "$@"; do
    if eval "[ -n \\"\\${$name+set}\\" ]"; then
        eval "printf '%s\\n' \\"\\$$name\\""
    else
        rc=1
    fi
done
exit $rc
"""


def testbox_image(busybox: Path, kubectl: Path, reference: str) -> ImageSpec:
    """Busybox (sh, printenv, cat, wget, ...) plus a static kubectl, for the cluster tests."""
    files = [
        ImageFile("/bin/busybox", busybox, mode=0o755),
        ImageFile("/usr/local/bin/kubectl", kubectl, mode=0o755),
        ImageFile("/tmp", None, mode=0o1777),
        ImageFile("/root", None, mode=0o700),
        ImageFile(
            "/etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ImageFile("/etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
    ]
    applets = busybox_applets(busybox)
    for applet in applets:
        if applet != "bin/busybox":
            files.append(ImageFile("/" + applet, symlink="/bin/busybox"))
    if not any(a.endswith("/printenv") for a in applets):
        # Debian's busybox-static has no printenv applet.
        files.append(ImageFile("/usr/bin/printenv", PRINTENV, mode=0o755))
    return ImageSpec(
        reference=reference,
        layers=[files],
        config=ImageConfig(cmd=["sh"]),
    )

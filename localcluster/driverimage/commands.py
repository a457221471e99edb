"""How the image build runs programs: on the host, and chrooted into a layer's tree.

Every layer past the file copies is made by the image's own programs (its Python makes the venv,
compiles bytecode, runs pip), so they run chrooted into the tree being built, inside a private
mount namespace that dies with them and takes every mount along. A layer built on top of others
is the upper directory of an overlay mount; ``check_upper`` makes sure such a step wrote only
where it should and deleted nothing below it. The byte-compile command every layer runs lives
here too, so the base and the venv compile alike.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from localcluster import fetch

# Byte-compile at build time, not checking sources at import: every file in a layer has mtime 0.
# Tests are not compiled (their __pycache__ would only take space).
COMPILEALL = (
    "-m",
    "compileall",
    "-q",
    "-j",
    "0",
    "-x",
    r"/(tests?|testdata)/",
    "--invalidation-mode",
    "unchecked-hash",
)

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def say(msg: str) -> None:
    fetch.say(f"driver image: {msg}")


def run(argv: Sequence[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    return fetch._run([str(a) for a in argv], **kw)


def in_root(
    root: Path,
    commands: Sequence[Sequence[str]],
    *,
    lowers: Sequence[Path] = (),
    binds: Mapping[str, Path] | None = None,
) -> str:
    """Run ``commands`` chrooted into ``root`` in a private mount namespace; return their stdout.

    With ``lowers``, ``root`` is an overlay's upper directory: the chroot sees ``lowers`` (first
    one on top) with ``root`` over them, and every write lands in ``root``. ``/tmp`` is a tmpfs,
    ``/dev`` the host's, and each ``binds`` entry a read-only bind at ``/tmp/<name>``. The
    namespace dies with the command, and with it every mount. Commands get a clean environment.
    """
    for p in [root, *lowers]:
        if any(c in str(p) for c in ":,"):
            raise ValueError(f"{p}: overlay paths must not contain ':' or ','")
    script = ["set -eu"]
    if lowers:
        work = root.with_name(root.name + ".work")
        merged = root.with_name(root.name + ".merged")
        for d in (work, merged):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={root},workdir={work}"
        script.append(f"mount -t overlay overlay -o {shlex.quote(opts)} {shlex.quote(str(merged))}")
        target = merged
    else:
        target = root
    t = shlex.quote(str(target))
    script += [f"mount -t tmpfs -o mode=1777 tmpfs {t}/tmp", f"mount --rbind /dev {t}/dev"]
    for name, src in (binds or {}).items():
        dst = shlex.quote(f"{target}/tmp/{name}")
        script += [
            f"mkdir -p {dst}",
            f"mount --bind {shlex.quote(str(src))} {dst}",
            f"mount -o remount,bind,ro {dst}",
        ]
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in CHROOT_ENV.items())
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    for argv in commands:
        script.append(f"env -i {env} {chroot} {t} {shlex.join(argv)}")
    try:
        res = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if lowers:
            shutil.rmtree(root.with_name(root.name + ".work"), ignore_errors=True)
            shutil.rmtree(root.with_name(root.name + ".merged"), ignore_errors=True)
    if res.returncode != 0:
        raise RuntimeError(
            f"building the driver image failed in {root}:\n{res.stdout[-3000:]}\n"
            f"{res.stderr[-5000:]}"
        )
    return res.stdout


def check_upper(upper: Path, allowed: set[str]) -> None:
    """An overlay upper dir used as a layer: only the expected top-level paths, no whiteouts."""
    extra = {p.name for p in upper.iterdir()} - allowed
    if extra:
        raise RuntimeError(f"{upper}: the build step wrote outside {sorted(allowed)}: {extra}")
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in [*dirnames, *filenames]:
            if stat.S_ISCHR((Path(dirpath) / name).lstat().st_mode):
                raise RuntimeError(f"{dirpath}/{name}: the build step deleted an image file")

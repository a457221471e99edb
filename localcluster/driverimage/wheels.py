"""The wheels the venv is installed from, downloaded on the host for the image's Python.

The host's pip downloads binary wheels only, for the image's interpreter (CPython
``facts.PYTHON_VERSION``) and every manylinux tag the image's glibc can run, pinned by
``constraints.txt``; the image's own Python later installs them offline. A second, small set holds
the installer and build backend (pip, setuptools, wheel) at the versions ``driverlayout`` pins.
Both sets are cached under a key of what was asked for.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from localcluster import driverlayout as facts
from localcluster.driverimage.cache import Cache, key
from localcluster.driverimage.commands import run, say
from localcluster.driverimage.project import requirements

# glibc of bookworm is 2.36: any manylinux wheel up to that runs on it.
GLIBC = (2, 36)


def _manylinux_platforms() -> list[str]:
    # pip's --platform takes exact tags; list every glibc the image's glibc can run.
    major, top = GLIBC
    tags = [f"manylinux_{major}_{minor}_x86_64" for minor in range(top, 16, -1)]
    return [*tags, "manylinux2014_x86_64"]


def _pip_download(dest: Path, reqs: Sequence[str], constraints: Path | None) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    argv: list[str | Path] = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        facts.PYTHON_VERSION,
        "--abi",
        "cp" + facts.PYTHON_VERSION.replace(".", ""),
        "--dest",
        tmp,
    ]
    for plat in _manylinux_platforms():
        argv += ["--platform", plat]
    if constraints:
        argv += ["-c", constraints]
    run([*argv, *reqs])
    tmp.rename(dest)


def wheelhouse(cache: Cache, repo: Path, refresh: bool) -> Path:
    """Wheels of the project's dependencies for the image's Python and platform."""
    constraints = repo / "constraints.txt"
    reqs = requirements(repo)
    dest = cache.root / f"wheels-{key(reqs, constraints.read_text(), facts.PYTHON_VERSION, GLIBC)}"
    if refresh and dest.exists():
        shutil.rmtree(dest)
    if not dest.exists():
        say("downloading the dependencies' wheels")
        _pip_download(dest, reqs, constraints)
        cache.keep_only("wheels", dest)
    return dest


def tool_wheels(cache: Cache) -> Path:
    """pip (run from its wheel inside the chroot) and the project's build backend."""
    pins = [
        f"pip=={facts.PIP_VERSION}",
        f"setuptools=={facts.SETUPTOOLS_VERSION}",
        f"wheel=={facts.WHEEL_VERSION}",
    ]
    dest = cache.root / f"tools-{key(pins)}"
    if not dest.exists():
        say("downloading pip, setuptools and wheel")
        _pip_download(dest, pins, None)
        cache.keep_only("tools", dest)
    return dest

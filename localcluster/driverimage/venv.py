"""Layers 2 and 3, the venv: the dependencies, then the project, installed by the image's Python.

Each layer is the upper directory of an overlay over the layers below it, written by pip run from
its wheel (so no pip stays in the image) with the venv's own interpreter, offline from the
wheels mounted read-only into the chroot. Bytecode is compiled afterwards (see
``commands.COMPILEALL``); ``pip check`` and, for the app, importing every module and running
``space-dra version`` prove the result works before it is kept.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from localcluster import driverlayout as facts
from localcluster.driverimage.commands import COMPILEALL, check_upper, in_root, say
from localcluster.driverimage.libraries import check_shared_libraries
from localcluster.driverimage.project import build_project_wheel, requirements

# Offline, from the mounted wheels; bytecode is compiled afterwards (see COMPILEALL).
PIP_INSTALL = (
    "--quiet",
    "--root-user-action=ignore",
    "--no-index",
    "--no-compile",
    "--no-cache-dir",
)

# Imports every module of the package (not __main__, which would run the CLI).
IMPORT_ALL = (
    "import importlib, pkgutil, space_dra\n"
    "names = [m.name for m in pkgutil.walk_packages(space_dra.__path__, 'space_dra.')]\n"
    "for name in names:\n"
    "    if not name.endswith('.__main__'):\n"
    "        importlib.import_module(name)\n"
    "print('imported', len(names), 'modules')\n"
)


def _pip(tools: Path) -> list[str]:
    wheel = f"pip-{facts.PIP_VERSION}-py3-none-any.whl"
    if not (tools / wheel).exists():
        raise RuntimeError(f"{tools / wheel} is missing")
    # pip runs from its wheel with the venv's interpreter and installs into that venv.
    return [
        f"{facts.VENV}/bin/python",
        f"/tmp/tools/{wheel}/pip",
        "--disable-pip-version-check",
    ]


def _site_packages() -> str:
    return f"{facts.VENV}/lib/python{facts.PYTHON_VERSION}/site-packages"


def _compile(*paths: str) -> list[str]:
    return [f"{facts.VENV}/bin/python", *COMPILEALL, *paths]


def build_deps(base: Path, wheels: Path, tools: Path, repo: Path, out: Path) -> None:
    """Layer 2 at ``out``: the venv with the project's dependencies, over ``base``."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ctx = Path(tempfile.mkdtemp(prefix="space-dra-deps-"))
    try:
        tmp.mkdir(parents=True)
        shutil.copy(repo / "constraints.txt", ctx / "constraints.txt")
        (ctx / "requirements.txt").write_text("\n".join(requirements(repo)) + "\n")
        pip = _pip(tools)
        say("installing the dependencies into the venv")
        in_root(
            tmp,
            [
                [
                    f"/usr/bin/python{facts.PYTHON_VERSION}",
                    "-m",
                    "venv",
                    "--without-pip",
                    facts.VENV,
                ],
                [
                    *pip,
                    "install",
                    *PIP_INSTALL,
                    "--find-links=/tmp/wheels",
                    "--constraint=/tmp/ctx/constraints.txt",
                    "--requirement=/tmp/ctx/requirements.txt",
                ],
                [*pip, "check"],
                _compile(_site_packages()),
            ],
            lowers=[base],
            binds={"wheels": wheels, "tools": tools, "ctx": ctx},
        )
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    check_upper(tmp, {facts.VENV.strip("/").split("/")[0]})
    check_shared_libraries([tmp, base], facts.VENV)
    tmp.rename(out)


def build_app(
    lowers: Sequence[Path], wheels: Path, tools: Path, repo: Path, out: Path, version: str
) -> None:
    """Layer 3 at ``out``: the project's wheel installed into the venv of ``lowers``."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ctx = Path(tempfile.mkdtemp(prefix="space-dra-app-"))
    try:
        tmp.mkdir(parents=True)
        say("building the project's wheel")
        build_project_wheel(repo, tools, ctx / "app")
        shutil.copy(repo / "constraints.txt", ctx / "constraints.txt")
        pip = _pip(tools)
        say("installing the project into the venv")
        stdout = in_root(
            tmp,
            [
                [
                    *pip,
                    "install",
                    *PIP_INSTALL,
                    "--find-links=/tmp/ctx/app",
                    "--find-links=/tmp/wheels",
                    "--constraint=/tmp/ctx/constraints.txt",
                    f"space-dra=={version}",
                ],
                [*pip, "check"],
                _compile(f"{_site_packages()}/space_dra"),
                [f"{facts.VENV}/bin/space-dra", "version"],
                # Every module of the project imports (grpc, protobuf, lightkube with it).
                [f"{facts.VENV}/bin/python", "-c", IMPORT_ALL],
            ],
            lowers=lowers,
            binds={"wheels": wheels, "tools": tools, "ctx": ctx},
        )
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    if f"space-dra {version}" not in stdout:
        raise RuntimeError(f"space-dra version in the new image printed {stdout!r}")
    check_upper(tmp, {facts.VENV.strip("/").split("/")[0]})
    tmp.rename(out)

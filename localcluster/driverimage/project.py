"""What the image takes from this repository: version, dependencies, sources, the project's wheel.

``pyproject.toml`` names the image's tag (the project version) and the dependencies the deps
layer installs; ``src/`` with ``pyproject.toml`` and ``README.md`` is what the project's wheel is
built from, and their hash (with ``constraints.txt``) is the app layer's cache key. The wheel is
built on the host from a copy, so the checkout is never written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

from localcluster import driverlayout as facts
from localcluster.driverimage.commands import run
from localcluster.layout import REPO_ROOT


def _pyproject(repo: Path = REPO_ROOT) -> dict[str, object]:
    with (repo / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    if not isinstance(project, dict):
        raise TypeError("pyproject.toml: [project] is not a table")
    return project


def project_version(repo: Path = REPO_ROOT) -> str:
    """``version`` from pyproject.toml: the image's tag."""
    return str(_pyproject(repo)["version"])


def image_reference(repo: Path = REPO_ROOT) -> str:
    """``localhost/space-dra/driver:<version>``, what the Helm chart's default values pull."""
    return f"{facts.IMAGE_REPOSITORY}:{project_version(repo)}"


def requirements(repo: Path = REPO_ROOT) -> list[str]:
    """The project's runtime dependencies, as pyproject.toml states them."""
    deps = _pyproject(repo).get("dependencies", [])
    if not isinstance(deps, list):
        raise TypeError("pyproject.toml: [project] dependencies is not a list")
    return [str(d) for d in deps]


def project_files(repo: Path = REPO_ROOT) -> list[Path]:
    """What the project's wheel is built from, relative to the repository (the Dockerfile copies
    the same, plus constraints.txt)."""
    files = [Path("pyproject.toml"), Path("README.md")]
    for path in sorted((repo / "src").rglob("*")):
        rel = path.relative_to(repo)
        generated = any(p == "__pycache__" or p.endswith(".egg-info") for p in rel.parts)
        if path.is_file() and not generated and path.suffix not in (".pyc", ".pyo"):
            files.append(rel)
    return files


def source_key(repo: Path = REPO_ROOT) -> str:
    """A hash of everything the app layer is built from (src/, pyproject, constraints, README)."""
    h = hashlib.sha256()
    for rel in [*project_files(repo), Path("constraints.txt")]:
        h.update(str(rel).encode() + b"\0")
        h.update(hashlib.sha256((repo / rel).read_bytes()).digest())
    return h.hexdigest()[:16]


def build_project_wheel(repo: Path, tools: Path, dest: Path) -> Path:
    """The project's wheel, built from a copy of its sources (the checkout is not written)."""
    with tempfile.TemporaryDirectory(prefix="space-dra-src-") as src:
        for rel in project_files(repo):
            (Path(src) / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, Path(src) / rel)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-index",
                "--no-cache-dir",
                f"--find-links={tools}",
                f"--wheel-dir={dest}",
                src,
            ],
            env=env,
        )
    wheels = sorted(dest.glob("space_dra-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one project wheel in {dest}, found {wheels}")
    return wheels[0]

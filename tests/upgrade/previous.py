"""The previous version of the driver: its chart and image, from an earlier git revision.

An upgrade test starts from what users ran before. ``SPACE_DRA_UPGRADE_FROM`` names it (any
git revision: a tag, a commit, ``HEAD~3``). By default it is the newest tag before HEAD, else
the newest revision on HEAD's first-parent line (main's own history, merges included) whose
``deployments/`` or ``src/`` differ from HEAD's: the version before the last change to the chart
or the driver. A revision with the same chart and driver would make the upgrade a no-op, so a
candidate equal to HEAD there is passed over.

The revision is checked out with ``git worktree`` into a temporary directory; its image is
built from that checkout by this checkout's builder, tagged ``<version>-git-<commit>`` so it
sits in containerd beside the current one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster.driverimage import build_driver_image, import_driver_image, project_version
from localcluster.layout import REPO_ROOT

UPGRADE_FROM_ENV = "SPACE_DRA_UPGRADE_FROM"
# What makes a version of the driver: its chart and its code.
VERSIONED_PATHS = ("deployments", "src")
CHART_PATH = Path("deployments/helm/space-dra-driver")


def _git_result(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )


def _git(repo: Path, *args: str) -> str:
    result = _git_result(repo, *args)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _differs_from_head(repo: Path, revision: str) -> bool:
    diff = _git_result(repo, "diff", "--quiet", revision, "HEAD", "--", *VERSIONED_PATHS)
    return diff.returncode == 1


def previous_revision(repo: Path = REPO_ROOT, chosen: str | None = None) -> str:
    """The commit to upgrade from (see the module docstring), as a full hash; ``chosen``
    defaults to ``$SPACE_DRA_UPGRADE_FROM``."""
    chosen = (os.environ.get(UPGRADE_FROM_ENV, "") if chosen is None else chosen).strip()
    if chosen:
        return _git(repo, "rev-parse", "--verify", f"{chosen}^{{commit}}")
    tag = _git_result(repo, "describe", "--tags", "--abbrev=0", "HEAD^").stdout.strip()
    if tag and _differs_from_head(repo, tag):
        return _git(repo, "rev-parse", f"{tag}^{{commit}}")
    for commit in _git(repo, "rev-list", "--first-parent", "HEAD").split()[1:]:
        if _differs_from_head(repo, commit):
            return commit
    shallow = _git(repo, "rev-parse", "--is-shallow-repository") == "true"
    raise RuntimeError(
        f"no earlier revision of {', '.join(VERSIONED_PATHS)} in this clone"
        + (" (a shallow clone: `git fetch --unshallow`)" if shallow else "")
        + f"; set {UPGRADE_FROM_ENV} to a revision to upgrade from"
    )


@dataclass(frozen=True)
class PreviousVersion:
    """An earlier revision's checkout and its driver image, imported into the cluster."""

    commit: str
    checkout: Path
    image: str
    image_digest: str

    @property
    def short(self) -> str:
        return self.commit[:10]

    @property
    def chart(self) -> Path:
        return self.checkout / CHART_PATH

    def chart_values(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load((self.chart / "values.yaml").read_text())
        return loaded

    def supported(self, values: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """``values`` split into those the previous chart has and the names it lacks (its schema
        refuses unknown values)."""
        known, missing = {}, []
        defaults = self.chart_values()
        for name, value in values.items():
            node: Any = defaults
            for part in name.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            # A map's own keys (podAnnotations.x) are free-form: the map must exist.
            parent: Any = defaults
            for part in name.split(".")[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            free_form = isinstance(parent, dict) and not parent
            if node is not None or free_form:
                known[name] = value
            else:
                missing.append(name)
        return known, missing


@contextlib.contextmanager
def checked_out(commit: str) -> Iterator[Path]:
    """A detached ``git worktree`` of ``commit`` in a temporary directory, removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="space-dra-previous-"))
    checkout = parent / commit[:10]
    _git(REPO_ROOT, "worktree", "add", "--detach", str(checkout), commit)
    try:
        yield checkout
    finally:
        _git_result(REPO_ROOT, "worktree", "remove", "--force", str(checkout))
        shutil.rmtree(parent, ignore_errors=True)
        _git(REPO_ROOT, "worktree", "prune")


@contextlib.contextmanager
def previous_version() -> Iterator[PreviousVersion]:
    """The previous revision checked out, its image built and in every node's containerd."""
    commit = previous_revision()
    with checked_out(commit) as checkout:
        tag = f"{project_version(checkout)}-git-{commit[:10]}"
        image = build_driver_image(repo=checkout, tag=tag)
        import_driver_image(image)
        yield PreviousVersion(commit, checkout, image.reference, image.digest)

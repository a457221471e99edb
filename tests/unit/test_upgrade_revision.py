"""Which earlier revision the upgrade suite starts from, and which of its values the old chart has
(tests/upgrade/previous.py), on a throwaway git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.upgrade.previous import PreviousVersion, previous_revision


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _commit(repo: Path, path: str, text: str) -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", path)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def test_the_revision_before_the_last_change_to_the_chart_or_the_code(repo: Path) -> None:
    _commit(repo, "src/a.py", "1")
    before = _commit(repo, "deployments/values.yaml", "1")
    _commit(repo, "src/a.py", "2")  # the last change to the driver
    _commit(repo, "docs/x.md", "docs only")
    _commit(repo, "tests/t.py", "tests only")
    assert previous_revision(repo, chosen="") == before


def test_a_merge_counts_as_one_change_of_main(repo: Path) -> None:
    base = _commit(repo, "src/a.py", "1")
    _git(repo, "checkout", "-qb", "side")
    _commit(repo, "src/a.py", "2")
    _commit(repo, "src/b.py", "3")
    _git(repo, "checkout", "-q", "main")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "merge", "-q", "--no-ff", "side")
    assert previous_revision(repo, chosen="") == base


def test_the_newest_tag_when_it_differs(repo: Path) -> None:
    tagged = _commit(repo, "src/a.py", "1")
    _git(repo, "tag", "v0.1.0")
    _commit(repo, "src/a.py", "2")
    _commit(repo, "src/a.py", "3")
    assert previous_revision(repo, chosen="") == tagged


def test_a_tag_with_the_same_code_is_passed_over(repo: Path) -> None:
    before = _commit(repo, "src/a.py", "1")
    _commit(repo, "src/a.py", "2")
    _git(repo, "tag", "v0.2.0")
    _commit(repo, "docs/x.md", "docs only")
    assert previous_revision(repo, chosen="") == before


def test_a_chosen_revision_wins(repo: Path) -> None:
    first = _commit(repo, "src/a.py", "1")
    _commit(repo, "src/a.py", "2")
    _commit(repo, "src/a.py", "3")
    assert previous_revision(repo, chosen="HEAD~2") == first
    with pytest.raises(RuntimeError, match="rev-parse"):
        previous_revision(repo, chosen="no-such-revision")


def test_no_earlier_version_says_what_to_do(repo: Path) -> None:
    _commit(repo, "src/a.py", "1")
    _commit(repo, "docs/x.md", "docs only")
    with pytest.raises(RuntimeError, match="SPACE_DRA_UPGRADE_FROM"):
        previous_revision(repo, chosen="")


def test_values_the_previous_chart_lacks_are_named(tmp_path: Path) -> None:
    chart = tmp_path / "deployments/helm/space-dra-driver"
    chart.mkdir(parents=True)
    defaults = {"pool": {"size": 32}, "podAnnotations": {}, "kubeletPlugin": {"waitTimeout": 20}}
    (chart / "values.yaml").write_text(yaml.safe_dump(defaults))
    old = PreviousVersion("0" * 40, tmp_path, "img:old", "sha256:x")
    known, missing = old.supported(
        {
            "pool.size": "12",
            "podAnnotations.space-dra/rollout": "x",  # a free-form map's own key
            "kubeletPlugin.health.credentialCheckInterval": "5",
            "pool.warm": "2",
        }
    )
    assert known == {"pool.size": "12", "podAnnotations.space-dra/rollout": "x"}
    assert missing == ["kubeletPlugin.health.credentialCheckInterval", "pool.warm"]

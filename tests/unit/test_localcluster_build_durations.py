"""A long build says how long the last build of the same thing took (issue: the first run's
silence): durations are kept in the cache root, by build and by kind of build."""

from __future__ import annotations

from pathlib import Path

from localcluster.fetch import GoBuild


def build(cache: Path, name: str, version_dir: str) -> GoBuild:
    return GoBuild(name=name, module_dir=cache, packages=("x",), out=cache / version_dir / "bin")


def test_a_build_expects_what_the_last_build_of_its_kind_took(tmp_path: Path) -> None:
    first = build(tmp_path, "Kubernetes v1.36.3", "k8s-v1.36.3")
    assert first._last_duration() is None
    first._record_duration(912.4)
    assert first._last_duration() == 912
    # Another release of the same component: the kind's last time is the best guess.
    other = build(tmp_path, "Kubernetes v1.37.2", "k8s-v1.37.2")
    assert other._last_duration() == 912
    other._record_duration(700)
    assert other._last_duration() == 700
    assert first._last_duration() == 912  # its own time first
    assert build(tmp_path, "CoreDNS v1.15.0", "coredns-v1.15.0")._last_duration() is None


def test_an_unreadable_record_means_no_expectation(tmp_path: Path) -> None:
    (tmp_path / "build-durations.json").write_text("{not json")
    kubernetes = build(tmp_path, "Kubernetes v1.37.2", "k8s-v1.37.2")
    assert kubernetes._last_duration() is None
    kubernetes._record_duration(5)
    assert kubernetes._last_duration() == 5

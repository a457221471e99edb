"""localcluster/versions.py and releases.py are the one place for versions: the Go modules (one per
supported Kubernetes release) must agree with them, and a release is chosen one way everywhere."""

from __future__ import annotations

import re

import pytest

from localcluster import pin, releases, versions
from localcluster.layout import REPO_ROOT


def test_go_modules_follow_versions_py() -> None:
    assert pin.mismatches() == []


def test_mismatch_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(releases, "SUPPORTED", (*releases.SUPPORTED[:-1], "1.37.99"))
    monkeypatch.setattr(releases, "DEFAULT", "1.37.99")
    problems = pin.mismatches()
    assert any("draplugin" in p and "v0.37.99" in p for p in problems)
    assert any("k8s.io/kubernetes" in p and "v1.37.99" in p for p in problems)
    assert any("replace k8s.io/client-go" in p and "v0.37.99" in p for p in problems)


def test_a_module_without_a_supported_release_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(releases, "SUPPORTED", releases.SUPPORTED[1:])
    problems = pin.mismatches()
    assert any("localcluster/k8sbuild/1.34 pins no supported release" in p for p in problems)


def test_one_supported_patch_per_minor_and_the_default_is_newest() -> None:
    minors = [releases.Release(v).minor for v in releases.SUPPORTED]
    assert minors == sorted(set(minors)) == [34, 35, 36, 37]
    assert releases.DEFAULT == releases.SUPPORTED[-1] == "1.37.2"


@pytest.mark.parametrize(
    ("spec", "version"),
    [
        (None, "1.37.2"),
        ("", "1.37.2"),
        ("1.37", "1.37.2"),
        ("v1.37", "1.37.2"),
        ("1.34", "1.34.4"),
        ("1.35.4", "1.35.4"),
        ("v1.36.3", "1.36.3"),
    ],
)
def test_resolve_accepts_a_minor_or_the_exact_patch(spec: str | None, version: str) -> None:
    assert releases.resolve(spec).version == version


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("1.33", "1.33 is not supported"),
        ("1.37.1", "the supported 1.37 patch is 1.37.2"),
        ("2.0", "not a Kubernetes version"),
        ("latest", "not a Kubernetes version"),
        ("1.37.2.1", "not a Kubernetes version"),
    ],
)
def test_resolve_refuses_what_is_not_supported(spec: str, words: str) -> None:
    with pytest.raises(releases.UnsupportedRelease, match=re.escape(words)) as info:
        releases.resolve(spec)
    assert "1.34.4, 1.35.4, 1.36.3, 1.37.2" in str(info.value)


def test_staging_modules_follow_the_release() -> None:
    older, newer = releases.Release("1.35.4"), releases.Release("1.36.3")
    assert len(older.staging_modules) == len(set(older.staging_modules)) == 31
    assert len(newer.staging_modules) == len(set(newer.staging_modules)) == 33
    assert set(newer.staging_modules) - set(older.staging_modules) == {"cri-streaming", "streaming"}
    assert "dynamic-resource-allocation" in older.staging_modules


def test_derived_versions() -> None:
    release = releases.Release("1.36.3")
    assert release.staging_version == "0.36.3"
    assert releases.Release("1.37.2").staging_version == "0.37.2"
    assert release.module_dir == "localcluster/k8sbuild/1.36"
    flags = release.ldflags()
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.36.3" in flags
        assert f"-X {pkg}.gitMinor=36" in flags
    assert releases.Release("1.34.4").godebug_default == "go1.24"


def test_features_by_release() -> None:
    by_minor = {r.minor: r for r in releases.all_releases()}
    assert [m for m, r in by_minor.items() if r.binding_conditions_default] == [36, 37]
    assert [m for m, r in by_minor.items() if r.granular_status_authorization] == [36, 37]
    assert by_minor[37].health_services[0] == "v1"
    assert all("v1alpha1" in r.health_services for r in by_minor.values())
    assert all(r.kubelet_config()["failCgroupV1"] is False for r in by_minor.values())


@pytest.mark.parametrize("module", sorted(versions.go_module_requirements()))
def test_go_directive_and_sums(module: str) -> None:
    gomod = (REPO_ROOT / module / "go.mod").read_text()
    assert re.search(rf"^go {re.escape(versions.GO_DIRECTIVE)}$", gomod, re.M)
    assert f"godebug default={versions.godebug_default(module)}" in gomod
    gosum = (REPO_ROOT / module / "go.sum").read_text()
    for mod, version in versions.go_module_requirements()[module].items():
        if not mod.startswith("replace:"):
            assert f"{mod} {version} " in gosum, f"{module}/go.sum lacks {mod} {version}"


@pytest.mark.parametrize("release", releases.SUPPORTED)
def test_k8sbuild_tools_cover_the_built_commands(release: str) -> None:
    module_dir = REPO_ROOT / releases.Release(release).module_dir
    imported = set(
        re.findall(r'"k8s\.io/kubernetes/cmd/([^"]+)"', (module_dir / "tools.go").read_text())
    )
    assert imported == set(versions.KUBE_COMMANDS)


def test_images_have_explicit_tags() -> None:
    for ref in (versions.PAUSE_IMAGE, versions.testbox_image(releases.Release(releases.DEFAULT))):
        name, _, tag = ref.rpartition(":")
        assert name.startswith("localhost/") and tag and tag != "latest"
    assert versions.testbox_image(releases.Release("1.34.4")).endswith("-k1.34.4")


def test_debian_upstream_versions() -> None:
    assert versions.CONTAINERD.upstream == "1.7.24"
    assert versions.BUSYBOX.upstream == "1.37.0"
    assert versions.CNI_PLUGINS.upstream == "1.1.1"

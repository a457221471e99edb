"""localcluster/versions.py is the one place for versions: the Go modules must agree with it."""

from __future__ import annotations

import re

import pytest

from localcluster import pin, versions
from localcluster.layout import REPO_ROOT


def test_go_modules_follow_versions_py() -> None:
    assert pin.mismatches() == []


def test_mismatch_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "KUBERNETES", "1.36.99")
    problems = pin.mismatches()
    assert any("k8s.io/kubernetes" in p and "v1.36.99" in p for p in problems)
    assert any("replace k8s.io/client-go" in p and "v0.36.99" in p for p in problems)


def test_staging_modules_are_complete_and_unique() -> None:
    assert len(versions.STAGING_MODULES) == len(set(versions.STAGING_MODULES)) == 33
    assert {"client-go", "dynamic-resource-allocation", "cri-streaming", "streaming"} <= set(
        versions.STAGING_MODULES
    )


def test_derived_versions() -> None:
    assert versions.staging_version("1.36.3") == "0.36.3"
    assert versions.staging_version("1.37.2") == "0.37.2"
    flags = versions.kube_ldflags("1.36.3")
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.36.3" in flags
        assert f"-X {pkg}.gitMinor=36" in flags


@pytest.mark.parametrize("module", sorted(versions.go_module_requirements()))
def test_go_directive_and_sums(module: str) -> None:
    gomod = (REPO_ROOT / module / "go.mod").read_text()
    assert re.search(rf"^go {re.escape(versions.GO_DIRECTIVE)}$", gomod, re.M)
    assert f"godebug default={versions.GODEBUG_DEFAULT}" in gomod
    gosum = (REPO_ROOT / module / "go.sum").read_text()
    for mod, version in versions.go_module_requirements()[module].items():
        if not mod.startswith("replace:"):
            assert f"{mod} {version} " in gosum, f"{module}/go.sum lacks {mod} {version}"


def test_k8sbuild_tools_cover_the_built_commands() -> None:
    tools = (REPO_ROOT / "localcluster" / "k8sbuild" / "tools.go").read_text()
    imported = set(re.findall(r'"k8s\.io/kubernetes/cmd/([^"]+)"', tools))
    assert imported == set(versions.KUBE_COMMANDS)


def test_images_have_explicit_tags() -> None:
    for ref in (versions.PAUSE_IMAGE, versions.TESTBOX_IMAGE):
        name, _, tag = ref.rpartition(":")
        assert name.startswith("localhost/") and tag and tag != "latest"


def test_debian_upstream_versions() -> None:
    assert versions.CONTAINERD.upstream == "1.7.24"
    assert versions.BUSYBOX.upstream == "1.37.0"
    assert versions.CNI_PLUGINS.upstream == "1.1.1"

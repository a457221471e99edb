"""The Kubernetes releases the local cluster can run, and everything that differs between them.

One place for it all: which patch of each minor release is supported, how its Go module is pinned
(staging modules, GODEBUG defaults), which kubelet settings it needs, and which DRA features it
has on by default (``docs/compatibility.md`` and the tests read the latter). Code elsewhere asks a
:class:`Release` instead of comparing version numbers itself.

A release is chosen by ``python -m localcluster up --kubernetes-version`` or
``$SPACE_DRA_K8S_VERSION``: ``1.37`` means the newest supported patch of 1.37, ``1.37.2`` exactly
that patch (it must be the supported one: each minor release has one pinned Go module).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# The newest patch of each minor release that the Go module proxy serves
# (`go list -m -versions k8s.io/kubernetes`). One committed Go module per entry:
# localcluster/k8sbuild/1.<minor>/.
SUPPORTED = ("1.34.4", "1.35.4", "1.36.3", "1.37.2")
DEFAULT = "1.37.2"

VERSION_ENV = "SPACE_DRA_K8S_VERSION"

# Staging modules published as k8s.io/<name> v0.<minor>.<patch>. k8s.io/kubernetes requires them at
# v0.0.0 and maps them to ./staging in its own go.mod, which a consumer does not inherit, so the
# consuming module must replace every one of them (kubernetes/kubernetes#79384). The list is the
# replace block of k8s.io/kubernetes's own go.mod at each tag.
_STAGING_1_34: tuple[str, ...] = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)
# 1.36 split the streaming code out of kubelet/apiserver into two new staging modules.
_STAGING_1_36: tuple[str, ...] = tuple(sorted((*_STAGING_1_34, "cri-streaming", "streaming")))


class UnsupportedRelease(ValueError):
    """A requested Kubernetes version the local cluster has no pinned module for."""


@dataclass(frozen=True)
class Release:
    """One supported Kubernetes release (``version`` is ``1.<minor>.<patch>``)."""

    version: str

    def __post_init__(self) -> None:
        if self.version not in SUPPORTED:
            raise UnsupportedRelease(
                f"Kubernetes {self.version} is not supported; choose one of {', '.join(SUPPORTED)}"
            )

    # --- identity -------------------------------------------------------------------------------
    @property
    def minor(self) -> int:
        return int(self.version.split(".")[1])

    @property
    def series(self) -> str:
        """``1.37``: the name of the module directory and of the cache entries."""
        return f"1.{self.minor}"

    @property
    def staging_version(self) -> str:
        """k8s.io/kubernetes v1.X.Y ships its staging modules as v0.X.Y."""
        _major, minor, patch = self.version.split(".")
        return f"0.{minor}.{patch}"

    # --- building ---------------------------------------------------------------------------------
    @property
    def module_dir(self) -> str:
        """The Go module that pins this release, relative to the repository root."""
        return f"localcluster/k8sbuild/{self.series}"

    @property
    def staging_modules(self) -> tuple[str, ...]:
        return _STAGING_1_36 if self.minor >= 36 else _STAGING_1_34

    @property
    def godebug_default(self) -> str:
        """Upstream's ``godebug default=`` for this release (main-module only, so we repeat it)."""
        return {34: "go1.24", 35: "go1.25"}.get(self.minor, "go1.26")

    def ldflags(self) -> str:
        """Version stamping as upstream's build does it (``kubectl version``, the node show it)."""
        flags = ["-s", "-w"]
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [
                f"-X {pkg}.gitVersion=v{self.version}",
                f"-X {pkg}.gitMajor=1",
                f"-X {pkg}.gitMinor={self.minor}",
                f"-X {pkg}.gitTreeState=clean",
            ]
        return " ".join(flags)

    # --- running: what differs per release (the one place that decides it) -----------------------
    def kubelet_config(self) -> dict[str, Any]:
        """KubeletConfiguration fields this release needs on this machine."""
        return {
            # This machine has cgroup v1. 1.35+ refuse it unless told otherwise (KEP-5573); 1.34
            # already knows the field (default false), so setting it everywhere is harmless.
            "failCgroupV1": False,
        }

    def apiserver_flags(self) -> list[str]:
        """kube-apiserver flags that differ per release (none yet: DRA v1 is GA since 1.34)."""
        return []

    # --- what the driver finds there (documented in docs/compatibility.md) ------------------------
    @property
    def binding_conditions_default(self) -> bool:
        """``DRADeviceBindingConditions``: alpha and off in 1.34/1.35, beta and on from 1.36."""
        return self.minor >= 36

    @property
    def resource_health_default(self) -> bool:
        """``ResourceHealthStatus`` (kubelet watches DRA device health): beta and on from 1.36."""
        return self.minor >= 36

    @property
    def health_services(self) -> tuple[str, ...]:
        """The DRAResourceHealth gRPC versions the kubelet can use, newest first."""
        return ("v1", "v1alpha1") if self.minor >= 37 else ("v1alpha1",)

    @property
    def granular_status_authorization(self) -> bool:
        """``DRAResourceClaimGranularStatusAuthorization``: status.devices writes need the
        ``resourceclaims/driver`` permission (beta and on from 1.36; absent before)."""
        return self.minor >= 36


def resolve(spec: str | None) -> Release:
    """``1.37``, ``v1.37``, ``1.37.2`` or ``v1.37.2`` to a supported release.

    ``None`` or ``""`` means the default release.
    """
    if not spec:
        return Release(DEFAULT)
    wanted = spec.strip().removeprefix("v")
    parts = wanted.split(".")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts) or parts[0] != "1":
        raise UnsupportedRelease(
            f"{spec!r} is not a Kubernetes version like 1.37 or 1.37.2; "
            f"supported: {', '.join(SUPPORTED)}"
        )
    if len(parts) == 2:
        for version in SUPPORTED:
            if version.split(".")[:2] == parts:
                return Release(version)
        raise UnsupportedRelease(
            f"Kubernetes {wanted} is not supported; choose one of {', '.join(SUPPORTED)}"
        )
    if wanted not in SUPPORTED:
        same_minor = [v for v in SUPPORTED if v.split(".")[:2] == parts[:2]]
        hint = (
            f" (the supported {parts[0]}.{parts[1]} patch is {same_minor[0]})" if same_minor else ""
        )
        raise UnsupportedRelease(
            f"Kubernetes {wanted} is not supported{hint}; choose one of {', '.join(SUPPORTED)}"
        )
    return Release(wanted)


def requested() -> str | None:
    """The version asked for in the environment (``$SPACE_DRA_K8S_VERSION``), if any."""
    return os.environ.get(VERSION_ENV) or None


def all_releases() -> list[Release]:
    return [Release(v) for v in SUPPORTED]

"""The build itself: the three layers in order, each reused or rebuilt by its key, then the archive.

This is where the layers' cache keys are made, and so where "rebuilt only when its inputs
change" is decided: base by the resolved packages, deps by base and the wheels, app by deps and a
hash of the sources. Everything below a key (how a layer is made) lives in its own module.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from localcluster import driverlayout as facts
from localcluster import fetch
from localcluster.driverimage.apt import resolution
from localcluster.driverimage.archive import image_config, layer_sizes, write_archive
from localcluster.driverimage.base import build_base
from localcluster.driverimage.cache import Cache, cached_layer, key
from localcluster.driverimage.project import project_version, requirements, source_key
from localcluster.driverimage.venv import build_app, build_deps
from localcluster.driverimage.wheels import tool_wheels, wheelhouse
from localcluster.layout import REPO_ROOT, Layout

# Bump when the build steps change: every layer is rebuilt.
RECIPE = 2


@dataclass(frozen=True)
class DriverImage:
    """A built driver image: its name, manifest digest, OCI archive and layer sizes (bytes)."""

    reference: str
    digest: str
    archive: Path
    layers: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Uncompressed size of all layers."""
        return sum(self.layers.values())


def build_driver_image(
    layout: Layout | None = None,
    *,
    repo: Path = REPO_ROOT,
    rebuild: bool = False,
    refresh: bool = False,
    tag: str | None = None,
) -> DriverImage:
    """Build (or reuse) the driver image's OCI archive; needs no running cluster.

    ``rebuild`` discards the cached layers and archive (not the downloads); ``refresh`` also
    updates the Debian index and the dependency wheels (picking up security updates and newer
    unpinned transitive dependencies). ``tag`` replaces the project version as the image's tag,
    so an image of another revision (``repo`` a checkout of it) can sit in containerd beside
    this one's; its app layer and archive are cached apart (one such build at a time), so the
    two builds do not evict each other's.
    """
    if os.geteuid() != 0:
        raise RuntimeError("building the driver image needs root (chroot, mounts)")
    layout = layout or Layout.default()
    fetch.ensure_host_packages()
    cache = Cache(layout.cache / "driver-image")
    own = cache if tag is None else Cache(cache.root / "tagged")
    version = project_version(repo)
    reference = f"{facts.IMAGE_REPOSITORY}:{tag or version}"
    timings: dict[str, float] = {}
    with cache.locked():
        t = time.monotonic()
        pkgs = resolution(cache, refresh)
        base = cached_layer(
            cache.root / f"base-{key(RECIPE, pkgs, facts.passwd_line())}",
            rebuild,
            lambda out: build_base(cache, pkgs, out),
            cache,
        )
        timings["base"] = time.monotonic() - t

        t = time.monotonic()
        wheels = wheelhouse(cache, repo, refresh)
        tools = tool_wheels(cache)
        deps_key = key(
            base.name,
            sorted(p.name for p in wheels.iterdir()),
            facts.PIP_VERSION,
            requirements(repo),
            (repo / "constraints.txt").read_text(),
        )
        deps = cached_layer(
            cache.root / f"deps-{deps_key}",
            rebuild,
            lambda out: build_deps(base, wheels, tools, repo, out),
            cache,
        )
        timings["deps"] = time.monotonic() - t

        t = time.monotonic()
        own.root.mkdir(exist_ok=True)
        app = cached_layer(
            own.root / f"app-{key(deps.name, source_key(repo), facts.SETUPTOOLS_VERSION)}",
            rebuild,
            lambda out: build_app([deps, base], wheels, tools, repo, out, version),
            own,
        )
        timings["app"] = time.monotonic() - t

        t = time.monotonic()
        archive, digest = write_archive(
            own, reference, [base, deps, app], image_config(version), rebuild
        )
        timings["archive"] = time.monotonic() - t
    sizes = dict(zip(("base", "deps", "app"), layer_sizes(archive), strict=True))
    return DriverImage(reference, digest, archive, sizes, timings)

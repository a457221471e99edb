"""Which Debian packages the base layer holds, and their .deb files: apt on a private index.

apt resolves the closure of ``ROOT_PACKAGES`` for an empty system from its own index of the
image's suite (the host's configured archive, never the host's package state), as if the tools
only maintainer scripts use were installed: no maintainer script runs in this build, so neither
those tools nor their dependencies belong in the image. The resolution (``name=version`` pairs)
is cached and is the base layer's key; ``--refresh`` resolves again (security updates).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from localcluster import driverlayout as facts
from localcluster import fetch
from localcluster.driverimage.cache import Cache, key
from localcluster.driverimage.commands import run, say

# Resolved together with facts.DEBIAN_PACKAGES: /bin/sh (handy for `kubectl exec`) and
# /etc/os-release; debian:bookworm-slim has both.
EXTRA_PACKAGES: tuple[str, ...] = ("dash", "base-files")
# What apt is asked to install; it adds their dependencies.
ROOT_PACKAGES: tuple[str, ...] = (*facts.DEBIAN_PACKAGES, *EXTRA_PACKAGES)

# Packages apt treats as already installed when resolving the closure, so that neither they nor
# their dependencies land in the image: only maintainer scripts (which never run here) use them.
# python3-minimal and readline-common depend on dpkg, ca-certificates on debconf, dash on
# debianutils, base-files on mawk.
NOT_INSTALLED: tuple[str, ...] = ("dpkg", "debconf", "debianutils", "mawk")


def _apt_update(cache: Cache) -> None:
    uri, keyring = fetch.host_debian_mirror()
    security = fetch.host_debian_security()
    suite = facts.DEBIAN_SUITE
    lines = [
        f"deb [signed-by={keyring}] {uri} {suite} main",
        f"deb [signed-by={keyring}] {uri} {suite}-updates main",
    ]
    if security:
        lines.append(f"deb [signed-by={keyring}] {security} {suite}-security main")
    else:
        say(f"warning: no Debian security archive configured; {suite}-security is not used")
    for d in ("etc", "lists/partial", "archives/partial"):
        (cache.apt / d).mkdir(parents=True, exist_ok=True)
    (cache.apt / "etc" / "sources.list").write_text("\n".join(lines) + "\n")
    say(f"updating the private apt index for Debian {suite}")
    run(["apt-get", *fetch.apt_options(cache.apt), "update"])


def _resolve(cache: Cache) -> list[tuple[str, str]]:
    """The packages (name, version) to unpack, as apt resolves them for an empty system."""
    status = cache.apt / "status-not-installed"
    stanzas = []
    for name in NOT_INSTALLED:
        shown = run(
            ["apt-cache", *fetch.apt_options(cache.apt), "show", "--no-all-versions", name]
        ).stdout
        keep = [
            line
            for line in shown.splitlines()
            if line.split(":", 1)[0] in ("Package", "Version", "Architecture", "Multi-Arch")
        ]
        stanzas.append("\n".join([*keep, "Status: install ok installed"]))
    status.write_text("\n\n".join(stanzas) + "\n")
    roots = list(ROOT_PACKAGES)
    out = run(
        [
            "apt-get",
            *fetch.apt_options(cache.apt, status=status),
            "install",
            "--simulate",
            "--no-install-recommends",
            *roots,
        ]
    ).stdout
    pkgs = sorted(
        (m.group(1), m.group(2))
        for m in re.finditer(r"^Inst (\S+) \((\S+) ", out, flags=re.MULTILINE)
    )
    names = {n for n, _ in pkgs}
    if not set(roots) <= names or names & set(NOT_INSTALLED):
        raise RuntimeError(f"unexpected apt resolution for {roots}:\n{out[-3000:]}")
    return pkgs


def resolution(cache: Cache, refresh: bool) -> list[tuple[str, str]]:
    """The base layer's packages (name, version): the cached resolution, or apt's new one."""
    path = cache.root / f"resolution-{key(facts.DEBIAN_SUITE, ROOT_PACKAGES, NOT_INSTALLED)}.json"
    if path.exists() and not refresh:
        return [(n, v) for n, v in json.loads(path.read_text())["packages"]]
    _apt_update(cache)
    pkgs = _resolve(cache)
    path.write_text(json.dumps({"suite": facts.DEBIAN_SUITE, "packages": pkgs}, indent=1) + "\n")
    say(f"{len(pkgs)} Debian packages: " + " ".join(f"{n}={v}" for n, v in pkgs))
    return pkgs


def _deb_path(cache: Cache, name: str, version: str) -> Path | None:
    found = sorted(cache.debs.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))
    return found[0] if found else None


def download_debs(cache: Cache, pkgs: Sequence[tuple[str, str]]) -> list[Path]:
    """The .deb file of each package, downloaded if missing; .debs of no package are deleted."""
    cache.debs.mkdir(parents=True, exist_ok=True)
    missing = [f"{n}={v}" for n, v in pkgs if _deb_path(cache, n, v) is None]
    if missing:
        if not (cache.apt / "lists").is_dir():
            _apt_update(cache)
        say(f"downloading {len(missing)} Debian packages")
        try:
            run(["apt-get", *fetch.apt_options(cache.apt), "download", *missing], cwd=cache.debs)
        except RuntimeError as exc:
            raise RuntimeError(
                f"{exc}\nA package version may have left the archive: run "
                "`python -m localcluster driver-image --refresh` to resolve them again."
            ) from exc
    paths = []
    for n, v in pkgs:
        deb = _deb_path(cache, n, v)
        if deb is None:
            raise RuntimeError(f"apt-get download {n}={v} left no .deb in {cache.debs}")
        paths.append(deb)
    wanted = {p.name for p in paths}
    for old in cache.debs.glob("*.deb"):
        if old.name not in wanted:
            old.unlink()
    return paths

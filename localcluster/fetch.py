"""Get every binary the cluster runs into the version-keyed cache.

* host packages (runc, iptables, conntrack, ...) with the host's own ``apt-get install``;
* Debian trixie packages (containerd, etcd, CNI plugins, busybox) with a private apt state dir,
  ``apt-get download`` and ``dpkg -x`` (nothing is installed on the host);
* Go programs (Kubernetes, CoreDNS, Helm, test helpers) with ``go build`` in their pinning module.

Each cache entry is only (re)built when its stamp, which records the build inputs, differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localcluster import versions
from localcluster.layout import REPO_ROOT, Layout
from localcluster.releases import DEFAULT, Release


def say(msg: str) -> None:
    print(f"localcluster: {msg}", file=sys.stderr, flush=True)


def _run(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise RuntimeError(
            f"command failed ({res.returncode}): {' '.join(argv)}\n{res.stdout[-3000:]}\n"
            f"{res.stderr[-3000:]}"
        )
    return res  # type: ignore[no-any-return]


# --- host packages -------------------------------------------------------------------------------
def ensure_host_packages() -> None:
    """Install missing host tools with the host's apt (they are ordinary Debian packages)."""
    missing = sorted(
        {pkg for binary, pkg in versions.HOST_PACKAGES.items() if shutil.which(binary) is None}
    )
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"missing host packages {missing}; run as root to install them")
    say(f"installing host packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    res = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *missing],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if res.returncode != 0:
        _run(["apt-get", "update"], env=env)
        _run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)


# --- Debian trixie packages ----------------------------------------------------------------------
def host_debian_mirror() -> tuple[str, str]:
    """The host's configured Debian archive URI and its keyring (we reuse the host's mirror)."""
    sources_d = Path("/etc/apt/sources.list.d")
    for f in sorted(sources_d.glob("*.sources")):
        for stanza in f.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
            suites = fields.get("suites", "").split()
            uris = fields.get("uris", "").split()
            if (
                uris
                and any(s and "security" not in s for s in suites)
                and "main" in fields.get("components", "")
            ):
                keyring = fields.get("signed-by", "/usr/share/keyrings/debian-archive-keyring.gpg")
                return uris[0], keyring
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+.*\bmain\b", line)
            if m and "security" not in m.group(2):
                return m.group(1), "/usr/share/keyrings/debian-archive-keyring.gpg"
    raise RuntimeError("no Debian archive configured in /etc/apt; cannot fetch Debian packages")


def host_debian_security() -> str | None:
    """The host's configured Debian security archive URI, if it has one."""
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in f.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if not line.startswith("#") and ":" in line:
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            uris = fields.get("uris", "").split()
            if uris and any(s.endswith("-security") for s in fields.get("suites", "").split()):
                return uris[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+-security)\s", line)
            if m:
                return m.group(1)
    return None


def _apt_opts(layout: Layout) -> list[str]:
    return apt_options(layout.apt)


def apt_options(apt: Path, status: Path | None = None) -> list[str]:
    """apt-get/apt-cache options for a private apt state under ``apt`` (nothing of the host's
    own state is read or written). ``status`` is the dpkg status file apt sees (none: empty)."""
    return [
        "-o",
        f"Dir::State={apt}",
        "-o",
        f"Dir::State::Lists={apt / 'lists'}",
        "-o",
        f"Dir::State::status={status or '/dev/null'}",
        "-o",
        f"Dir::Cache={apt}",
        "-o",
        f"Dir::Cache::Archives={apt / 'archives'}",
        "-o",
        f"Dir::Etc::SourceList={apt / 'etc' / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/nonexistent",
        "-o",
        "APT::Architecture=amd64",
    ]


def _deb_file(layout: Layout, pkg: versions.DebPackage) -> Path | None:
    ver = pkg.version.replace(":", "%3a")
    exact = layout.debs / f"{pkg.name}_{ver}_amd64.deb"
    return exact if exact.exists() else None


def _apt_versions(layout: Layout, name: str) -> list[str]:
    res = _run(["apt-cache", *_apt_opts(layout), "madison", name])
    return [line.split("|")[1].strip() for line in res.stdout.splitlines() if "|" in line]


def ensure_trixie_debs(layout: Layout) -> dict[str, Path]:
    """Download (once) and unpack the pinned trixie packages; return their unpacked roots."""
    roots: dict[str, Path] = {}
    updated = False
    for pkg in versions.TRIXIE_DEBS:
        root = layout.deb_root(pkg)
        roots[pkg.name] = root
        if (root / ".complete").exists():
            continue
        deb = _deb_file(layout, pkg)
        if deb is None:
            if not updated:
                _apt_update(layout)
                updated = True
            deb = _download_deb(layout, pkg)
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(root)])
        (root / ".complete").write_text(deb.name + "\n")
    return roots


def _apt_update(layout: Layout) -> None:
    uri, keyring = host_debian_mirror()
    for d in ("etc", "lists/partial", "archives/partial"):
        (layout.apt / d).mkdir(parents=True, exist_ok=True)
    (layout.apt / "etc" / "sources.list").write_text(
        f"deb [signed-by={keyring}] {uri} {versions.CONTAINERD.suite} main\n"
    )
    say(f"updating the private apt index for Debian {versions.CONTAINERD.suite}")
    _run(["apt-get", *_apt_opts(layout), "update"])


def _download_deb(layout: Layout, pkg: versions.DebPackage) -> Path:
    available = _apt_versions(layout, pkg.name)
    if pkg.version in available:
        chosen = pkg.version
    else:
        same = [v for v in available if versions.DebPackage(pkg.name, v).upstream == pkg.upstream]
        if not same:
            raise RuntimeError(
                f"{pkg.name} {pkg.version} is not in Debian {pkg.suite} any more "
                f"(available: {available}); update localcluster/versions.py"
            )
        chosen = same[0]
        say(f"warning: {pkg.name} {pkg.version} gone from the archive, using {chosen}")
    layout.debs.mkdir(parents=True, exist_ok=True)
    say(f"downloading {pkg.name} {chosen}")
    _run(["apt-get", *_apt_opts(layout), "download", f"{pkg.name}={chosen}"], cwd=layout.debs)
    found = sorted(layout.debs.glob(f"{pkg.name}_*.deb"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"apt-get download {pkg.name} produced no file")
    wanted = layout.debs / f"{pkg.name}_{pkg.version.replace(':', '%3a')}_amd64.deb"
    if found[-1] != wanted:
        found[-1].rename(wanted)  # keep the pinned name so the cache key stays stable
    return wanted


# --- Go builds ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GoBuild:
    """``go build`` of some packages of a pinning module into a cache directory."""

    name: str
    module_dir: Path
    packages: tuple[str, ...]
    out: Path
    ldflags: str = "-s -w"
    cgo: bool = False

    def binaries(self) -> list[Path]:
        names = [
            self.module_dir.name if p == "." else p.rstrip("/").rsplit("/", 1)[-1]
            for p in self.packages
        ]
        return [self.out / n for n in names]

    def stamp(self) -> str:
        h = hashlib.sha256()
        for f in sorted(self.module_dir.glob("*")):
            if f.is_file() and (f.suffix in (".go", ".mod", ".sum")):
                h.update(f.name.encode() + b"\0" + f.read_bytes())
        return json.dumps(
            {
                "sources": h.hexdigest(),
                "packages": self.packages,
                "ldflags": self.ldflags,
                "cgo": self.cgo,
                "go": _go_version(),
            },
            sort_keys=True,
        )

    @property
    def stamp_file(self) -> Path:
        return self.out.parent / f"{self.out.name}.stamp"

    def fresh(self) -> bool:
        return (
            self.stamp_file.exists()
            and self.stamp_file.read_text() == self.stamp()
            and all(b.exists() for b in self.binaries())
        )

    def ensure(self, step: str = "") -> list[Path]:
        """Build unless the cache is fresh. ``step`` (``"3/5"``) prefixes the progress lines."""
        if self.fresh():
            return self.binaries()
        tmp = self.out.parent / f"{self.out.name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        env = {
            **os.environ,
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-mod=mod",
            "CGO_ENABLED": "1" if self.cgo else "0",
        }
        label = f"[{step}] " if step else ""
        last = self._last_duration()
        expected = f"; the last such build took {_elapsed(last)}" if last else ""
        say(f"{label}building {self.name} (go build, cached in {self.out}{expected})")
        t0 = time.monotonic()
        total = self._package_count(env)
        argv = [
            "go",
            "build",
            "-v",
            "-p",
            str(os.cpu_count() or 2),
            "-trimpath",
            "-ldflags",
            self.ldflags,
            "-o",
            str(tmp) + "/",
            *self.packages,
        ]
        returncode, output = _run_with_progress(
            argv, self.module_dir, env, f"{label}{self.name}", total, t0, last
        )
        if returncode != 0:
            raise RuntimeError(f"building {self.name} failed:\n{output[-5000:]}")
        if self.out.exists():
            shutil.rmtree(self.out)
        tmp.rename(self.out)
        self.stamp_file.write_text(self.stamp())
        took = time.monotonic() - t0
        self._record_duration(took)
        say(f"{label}built {self.name} in {_elapsed(took)}")
        return self.binaries()

    # Build times, kept beside the builds: the next build of the same thing (another
    # release of it, too) says how long to expect.
    def _durations_file(self) -> Path:
        return self.out.parent.parent / "build-durations.json"  # the cache root

    def _last_duration(self) -> float | None:
        try:
            durations = json.loads(self._durations_file().read_text())
        except (OSError, ValueError):
            return None
        found = durations.get(self.name) or durations.get(self.name.split()[0])
        return float(found) if isinstance(found, int | float) else None

    def _record_duration(self, seconds: float) -> None:
        try:
            durations = json.loads(self._durations_file().read_text())
        except (OSError, ValueError):
            durations = {}
        durations[self.name] = durations[self.name.split()[0]] = round(seconds)
        self._durations_file().write_text(json.dumps(durations, indent=1, sort_keys=True))

    def _package_count(self, env: dict[str, str]) -> int:
        """How many packages the build needs at most (``go list -deps``); 0 if unknown."""
        res = subprocess.run(
            ["go", "list", "-deps", *self.packages],
            cwd=self.module_dir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return len(res.stdout.split()) if res.returncode == 0 else 0


# How often a long build reports where it is.
PROGRESS_EVERY = 30.0


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _run_with_progress(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    what: str,
    total: int,
    t0: float,
    expected: float | None = None,
) -> tuple[int, str]:
    """Run ``go build -v``, printing every PROGRESS_EVERY seconds how many packages it compiled
    (of at most ``total``; cached packages are not listed), which one it is on, and the
    time elapsed against ``expected`` (the last such build's), when known."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    compiled = 0
    last = time.monotonic()
    for line in proc.stdout:
        lines.append(line)
        name = line.strip()
        # -v names each package as it is compiled; errors have spaces, colons or a '#'.
        if name and not name.startswith("#") and " " not in name and ":" not in name:
            compiled += 1
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY:
            last = now
            of = f"/{total}" if total else ""
            against = f" of about {_elapsed(expected)}" if expected else ""
            say(
                f"{what}: {compiled}{of} packages compiled, {_elapsed(now - t0)}{against}, "
                f"at {line.strip()[:80]}"
            )
    return proc.wait(), "".join(lines[-200:])


def _go_version() -> str:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            f"the Go toolchain (>= {versions.GO_DIRECTIVE}) is needed to build the cluster binaries"
        )
    return _run([go, "env", "GOVERSION"]).stdout.strip()


def kubernetes_build(layout: Layout, release: Release) -> GoBuild:
    return GoBuild(
        name=f"Kubernetes v{release.version}",
        module_dir=REPO_ROOT / release.module_dir,
        packages=tuple(f"k8s.io/kubernetes/cmd/{c}" for c in versions.KUBE_COMMANDS),
        out=layout.k8s_bin(release),
        ldflags=release.ldflags(),
    )


def coredns_build(layout: Layout) -> GoBuild:
    return GoBuild(
        name=f"CoreDNS v{versions.COREDNS}",
        module_dir=REPO_ROOT / "localcluster" / "corednsbuild",
        packages=("github.com/coredns/coredns",),
        out=layout.coredns_bin,
    )


def helm_build(layout: Layout) -> GoBuild:
    return GoBuild(
        name=f"Helm v{versions.HELM}",
        module_dir=REPO_ROOT / "localcluster" / "helmbuild",
        packages=("helm.sh/helm/v3/cmd/helm",),
        out=layout.helm_bin,
        ldflags=f"-s -w -X helm.sh/helm/v3/internal/version.version=v{versions.HELM}",
    )


def pause_binary(layout: Layout) -> Path:
    """The pause program (localcluster/pause.c), statically linked with gcc."""
    src = Path(__file__).with_name("pause.c")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = layout.cache / f"pause-{digest}" / "pause"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    _run(["gcc", "-static", "-Os", "-Wall", "-Werror", "-o", str(tmp), str(src)])
    _run(["strip", str(tmp)])
    tmp.rename(out)
    return out


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of everything the cluster runs."""

    k8s: Path
    coredns: Path
    helm: Path
    etcd: Path
    containerd_bin: Path  # dir with containerd, containerd-shim-runc-v2, ctr
    cni_bin: Path
    busybox: Path

    def kube(self, cmd: str) -> Path:
        return self.k8s / cmd

    @property
    def kubectl(self) -> Path:
        return self.k8s / "kubectl"

    @property
    def ctr(self) -> Path:
        return self.containerd_bin / "ctr"


def ensure_all(layout: Layout, release: Release | None = None) -> Binaries:
    """Everything ``up`` needs, fetched or built as required (quick when the cache is warm).

    The steps are numbered in the progress lines (``[3/5] building Kubernetes ...``).
    """
    release = release or Release(DEFAULT)
    ensure_host_packages()
    roots = ensure_trixie_debs(layout)
    builds = (kubernetes_build(layout, release), coredns_build(layout), helm_build(layout))
    for n, build in enumerate(builds, start=3):
        build.ensure(step=f"{n}/{2 + len(builds)}")
    return binaries(layout, release, roots)


def binaries(
    layout: Layout, release: Release | None = None, roots: dict[str, Path] | None = None
) -> Binaries:
    """Where everything is (built or not); ``release`` picks the Kubernetes binaries."""
    if roots is None:
        roots = {p.name: layout.deb_root(p) for p in versions.TRIXIE_DEBS}
    return Binaries(
        k8s=layout.k8s_bin(release or Release(DEFAULT)),
        coredns=layout.coredns_bin / "coredns",
        helm=layout.helm_bin / "helm",
        etcd=roots[versions.ETCD.name] / "usr" / "bin" / "etcd",
        containerd_bin=roots[versions.CONTAINERD.name] / "usr" / "bin",
        cni_bin=roots[versions.CNI_PLUGINS.name] / "usr" / "lib" / "cni",
        busybox=roots[versions.BUSYBOX.name] / "usr" / "bin" / "busybox",
    )

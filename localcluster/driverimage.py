"""The driver's container image, built on this machine without Docker.

``ensure_driver_image()`` (``python -m localcluster driver-image``) builds
``localhost/space-dra/driver:<project version>`` as an OCI archive and imports it into the local
cluster's containerd. The image has three layers, each cached under
``~/.cache/space-dra/driver-image/`` and rebuilt only when its inputs change:

1. **base**: Debian bookworm's ``python3`` (3.11) and ``ca-certificates`` with their dependency
   closure as apt resolves it, plus ``dash`` (``/bin/sh``) and ``base-files`` (``/etc/os-release``),
   each unpacked with ``dpkg-deb`` into a merged-/usr tree. No dpkg, apt or maintainer script runs
   or ships: apt resolves as if the tools those scripts use (dpkg, debconf, debianutils, mawk) were
   installed, and the builder does what the scripts would have done for the runtime (the CA bundle,
   ``ld.so.cache``, ``/etc/nsswitch.conf``, byte-compiling the standard library). Docs and man pages
   go as in ``debian:*-slim``; ``/var/lib/dpkg/status.d/`` lists the packages for scanners.
   Key: the resolved ``name=version`` list.
2. **deps**: the virtualenv ``/opt/space-dra`` with the project's dependencies, installed from
   wheels (downloaded on the host with ``-c constraints.txt``) by ``pip install --no-index`` run by
   the image's own Python in a chroot; pip itself is not left behind. Key: base + wheel files.
3. **app**: the project's wheel (built on the host from ``src/``) installed into that venv.
   Key: deps + a hash of ``src/``, ``pyproject.toml``, ``constraints.txt`` and ``README.md``.

Layers 2 and 3 are the upper directories of overlay mounts (a private mount namespace made with
``unshare``, so no mount outlives the build), which makes each layer exactly what its step wrote.
All bytecode is compiled at build time with unchecked-hash invalidation (the layers carry mtime
0, so timestamp-based .pyc files would be stale) and the image sets ``PYTHONDONTWRITEBYTECODE``:
it runs with a read-only root filesystem. Needs root (chroot, mounts), like the cluster itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localcluster import driverlayout as facts
from localcluster import fetch, images
from localcluster.layout import REPO_ROOT, Layout

# Bump when the build steps change: every layer is rebuilt.
RECIPE = 2

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

# What debian:*-slim images keep out of their packages; removed here too. Copyright files stay.
SLIM_EXCLUDES: tuple[str, ...] = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/groff",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/linda",
    "usr/share/locale",
)

# glibc of bookworm is 2.36: any manylinux wheel up to that runs on it.
GLIBC = (2, 36)
# Byte-compile at build time, not checking sources at import: every file in a layer has mtime 0.
# Tests are not compiled (their __pycache__ would only take space).
COMPILEALL = (
    "-m",
    "compileall",
    "-q",
    "-j",
    "0",
    "-x",
    r"/(tests?|testdata)/",
    "--invalidation-mode",
    "unchecked-hash",
)

NSSWITCH = b"""\
# /etc/nsswitch.conf: Debian's default (libc-bin, which the image does not ship, installs it).
passwd:         files
group:          files
shadow:         files
gshadow:        files

hosts:          files dns
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files

netgroup:       nis
"""

# Imports every module of the package (not __main__, which would run the CLI).
IMPORT_ALL = (
    "import importlib, pkgutil, space_dra\n"
    "names = [m.name for m in pkgutil.walk_packages(space_dra.__path__, 'space_dra.')]\n"
    "for name in names:\n"
    "    if not name.endswith('.__main__'):\n"
    "        importlib.import_module(name)\n"
    "print('imported', len(names), 'modules')\n"
)

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def say(msg: str) -> None:
    fetch.say(f"driver image: {msg}")


# --- inputs -------------------------------------------------------------------------------------
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


def _requirements(repo: Path = REPO_ROOT) -> list[str]:
    deps = _pyproject(repo).get("dependencies", [])
    if not isinstance(deps, list):
        raise TypeError("pyproject.toml: [project] dependencies is not a list")
    return [str(d) for d in deps]


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


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


def _manylinux_platforms() -> list[str]:
    # pip's --platform takes exact tags; list every glibc the image's glibc can run.
    major, top = GLIBC
    tags = [f"manylinux_{major}_{minor}_x86_64" for minor in range(top, 16, -1)]
    return [*tags, "manylinux2014_x86_64"]


# --- the result ---------------------------------------------------------------------------------
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


# --- the cache ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cache:
    root: Path

    @property
    def apt(self) -> Path:
        return self.root / f"apt-{facts.DEBIAN_SUITE}"

    @property
    def debs(self) -> Path:
        return self.root / "debs"

    def resolution(self) -> Path:
        key = _key(facts.DEBIAN_SUITE, ROOT_PACKAGES, NOT_INSTALLED)
        return self.root / f"resolution-{key}.json"

    def keep_only(self, prefix: str, current: Path) -> None:
        """Delete older cache entries of one kind (``<prefix>-<key>*``) once ``current`` exists."""
        for old in self.root.glob(f"{prefix}-*"):
            if not old.name.startswith(current.name.split(".", 1)[0]):
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old)
                else:
                    old.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


# --- running things ------------------------------------------------------------------------------
def _run(argv: Sequence[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    return fetch._run([str(a) for a in argv], **kw)


def _in_root(
    root: Path,
    commands: Sequence[Sequence[str]],
    *,
    lowers: Sequence[Path] = (),
    binds: Mapping[str, Path] | None = None,
) -> str:
    """Run ``commands`` chrooted into ``root`` in a private mount namespace; return their stdout.

    With ``lowers``, ``root`` is an overlay's upper directory: the chroot sees ``lowers`` (first
    one on top) with ``root`` over them, and every write lands in ``root``. ``/tmp`` is a tmpfs,
    ``/dev`` the host's, and each ``binds`` entry a read-only bind at ``/tmp/<name>``. The
    namespace dies with the command, and with it every mount. Commands get a clean environment.
    """
    for p in [root, *lowers]:
        if any(c in str(p) for c in ":,"):
            raise ValueError(f"{p}: overlay paths must not contain ':' or ','")
    script = ["set -eu"]
    if lowers:
        work = root.with_name(root.name + ".work")
        merged = root.with_name(root.name + ".merged")
        for d in (work, merged):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={root},workdir={work}"
        script.append(f"mount -t overlay overlay -o {shlex.quote(opts)} {shlex.quote(str(merged))}")
        target = merged
    else:
        target = root
    t = shlex.quote(str(target))
    script += [f"mount -t tmpfs -o mode=1777 tmpfs {t}/tmp", f"mount --rbind /dev {t}/dev"]
    for name, src in (binds or {}).items():
        dst = shlex.quote(f"{target}/tmp/{name}")
        script += [
            f"mkdir -p {dst}",
            f"mount --bind {shlex.quote(str(src))} {dst}",
            f"mount -o remount,bind,ro {dst}",
        ]
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in CHROOT_ENV.items())
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    for argv in commands:
        script.append(f"env -i {env} {chroot} {t} {shlex.join(argv)}")
    try:
        res = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if lowers:
            shutil.rmtree(root.with_name(root.name + ".work"), ignore_errors=True)
            shutil.rmtree(root.with_name(root.name + ".merged"), ignore_errors=True)
    if res.returncode != 0:
        raise RuntimeError(
            f"building the driver image failed in {root}:\n{res.stdout[-3000:]}\n"
            f"{res.stderr[-5000:]}"
        )
    return res.stdout


def _check_upper(upper: Path, allowed: set[str]) -> None:
    """An overlay upper dir used as a layer: only the expected top-level paths, no whiteouts."""
    extra = {p.name for p in upper.iterdir()} - allowed
    if extra:
        raise RuntimeError(f"{upper}: the build step wrote outside {sorted(allowed)}: {extra}")
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in [*dirnames, *filenames]:
            if stat.S_ISCHR((Path(dirpath) / name).lstat().st_mode):
                raise RuntimeError(f"{dirpath}/{name}: the build step deleted an image file")


# Where the dynamic loader looks in a Debian amd64 image (merged /usr: /lib is usr/lib).
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib", "usr/lib64")


def _check_shared_libraries(trees: Sequence[Path], under: str) -> None:
    """Every ELF file below ``under`` finds each library it needs in the image made of ``trees``
    (top first): in its RUNPATH/RPATH (``$ORIGIN`` expanded) or the system library dirs.

    manylinux wheels may expect some libraries from the system (libstdc++, for grpcio); a missing
    one only shows when the extension is imported, so the build checks them all."""
    readelf = shutil.which("readelf")
    if readelf is None:
        raise RuntimeError("readelf (binutils) is needed to check the image's shared libraries")

    def present(image_path: str) -> bool:
        return any(os.path.lexists(t / image_path.lstrip("/")) for t in trees)

    missing: list[str] = []
    for tree in trees:
        top = tree / under.lstrip("/")
        if not top.is_dir():
            continue
        for f in sorted(top.rglob("*")):
            if f.is_symlink() or not f.is_file():
                continue
            with f.open("rb") as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
            out = _run([readelf, "-d", "-W", f]).stdout
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)
            paths = re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.+?)\]", out)
            origin = "/" + str(f.parent.relative_to(tree))
            dirs = [
                os.path.normpath(d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
                for entry in paths
                for d in entry.split(":")
            ] + ["/" + d for d in LIBRARY_DIRS]
            for lib in needed:
                if not any(present(f"{d}/{lib}") for d in dirs):
                    missing.append(f"/{f.relative_to(tree)} needs {lib}")
    if missing:
        raise RuntimeError("libraries missing from the image:\n" + "\n".join(missing))


# --- layer 1: Debian base -----------------------------------------------------------------------
def _apt_update(cache: _Cache) -> None:
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
    _run(["apt-get", *fetch.apt_options(cache.apt), "update"])


def _resolve(cache: _Cache) -> list[tuple[str, str]]:
    """The packages (name, version) to unpack, as apt resolves them for an empty system."""
    status = cache.apt / "status-not-installed"
    stanzas = []
    for name in NOT_INSTALLED:
        shown = _run(
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
    out = _run(
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


def _resolution(cache: _Cache, refresh: bool) -> list[tuple[str, str]]:
    path = cache.resolution()
    if path.exists() and not refresh:
        return [(n, v) for n, v in json.loads(path.read_text())["packages"]]
    _apt_update(cache)
    pkgs = _resolve(cache)
    path.write_text(json.dumps({"suite": facts.DEBIAN_SUITE, "packages": pkgs}, indent=1) + "\n")
    say(f"{len(pkgs)} Debian packages: " + " ".join(f"{n}={v}" for n, v in pkgs))
    return pkgs


def _deb_path(cache: _Cache, name: str, version: str) -> Path | None:
    found = sorted(cache.debs.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))
    return found[0] if found else None


def _download_debs(cache: _Cache, pkgs: Sequence[tuple[str, str]]) -> list[Path]:
    cache.debs.mkdir(parents=True, exist_ok=True)
    missing = [f"{n}={v}" for n, v in pkgs if _deb_path(cache, n, v) is None]
    if missing:
        if not (cache.apt / "lists").is_dir():
            _apt_update(cache)
        say(f"downloading {len(missing)} Debian packages")
        try:
            _run(["apt-get", *fetch.apt_options(cache.apt), "download", *missing], cwd=cache.debs)
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


def _unpack(deb: Path, root: Path) -> None:
    """``dpkg-deb --fsys-tarfile | tar -x``, keeping the merged-/usr symlinks (/bin -> usr/bin)."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as dpkg:
        tar = subprocess.run(
            ["tar", "-x", "--keep-directory-symlink", "-C", str(root)],
            stdin=dpkg.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
    if dpkg.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"unpacking {deb} failed: {tar.stderr}")


def _slim(root: Path) -> None:
    for rel in SLIM_EXCLUDES:
        base = root / rel
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*"), reverse=True):
            keep = rel == "usr/share/doc" and path.name == "copyright"
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.rmdir()  # only empty ones: a kept copyright file keeps its directory
            elif not keep:
                path.unlink()


def _write_users(root: Path) -> None:
    etc = root / "etc"
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"{facts.passwd_line()}\n"
    )
    (etc / "group").write_text(f"root:x:0:\nnogroup:x:65534:\n{facts.group_line()}\n")
    home = root / facts.USER_HOME.lstrip("/")
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, facts.USER_ID, facts.USER_ID)
    home.chmod(0o755)


def _ca_certificates(root: Path) -> None:
    """What ca-certificates' postinst (update-ca-certificates) does, minus debconf."""
    share = root / "usr/share/ca-certificates"
    certs = sorted(p.relative_to(share) for p in share.rglob("*.crt"))
    if not certs:
        raise RuntimeError("ca-certificates shipped no certificates")
    (root / "etc/ca-certificates.conf").write_text(
        "# All certificates ca-certificates ships are trusted (its debconf default).\n"
        + "".join(f"{c}\n" for c in certs)
    )
    ssl_certs = root / "etc/ssl/certs"
    ssl_certs.mkdir(parents=True, exist_ok=True)
    bundle = []
    for c in certs:
        link = ssl_certs / (c.name.removesuffix(".crt") + ".pem")
        link.unlink(missing_ok=True)
        link.symlink_to(f"/usr/share/ca-certificates/{c}")
        pem = (share / c).read_text()
        bundle.append(pem if pem.endswith("\n") else pem + "\n")
    (ssl_certs / "ca-certificates.crt").write_text("".join(bundle))


def _status_d(root: Path, debs: Sequence[Path]) -> None:
    """Package records for image scanners, as distroless images have them."""
    status_d = root / "var/lib/dpkg/status.d"
    status_d.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        control = _run(["dpkg-deb", "-f", str(deb)]).stdout
        name = control.split("\n", 1)[0].removeprefix("Package:").strip()
        (status_d / name).write_text(control)


def _build_base(cache: _Cache, pkgs: Sequence[tuple[str, str]], out: Path) -> None:
    debs = _download_debs(cache, pkgs)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for d in ("bin", "sbin", "lib", "lib64"):
        (tmp / "usr" / d).mkdir(parents=True)
        (tmp / d).symlink_to(f"usr/{d}")
    say(f"unpacking {len(debs)} Debian packages")
    for deb in debs:
        _unpack(deb, tmp)
    _slim(tmp)
    _write_users(tmp)
    (tmp / "etc/nsswitch.conf").write_bytes(NSSWITCH)
    (tmp / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    _ca_certificates(tmp)
    _status_d(tmp, debs)
    _run([shutil.which("ldconfig") or "/sbin/ldconfig", "-r", str(tmp)])
    # ldconfig's own cache of inode numbers and mtimes: useless without ldconfig, not reproducible.
    (tmp / "var/cache/ldconfig/aux-cache").unlink(missing_ok=True)
    _check_shared_libraries([tmp], "/usr")
    py = f"/usr/bin/python{facts.PYTHON_VERSION}"
    stdlib = f"/usr/lib/python{facts.PYTHON_VERSION}"
    say("byte-compiling the standard library")
    _in_root(
        tmp,
        [
            ["openssl", "rehash", "/etc/ssl/certs"],
            [py, *COMPILEALL, stdlib, "/usr/lib/python3/dist-packages"],
            # The runtime works: TLS with the system CAs (truststore, used by the API client,
            # reads them through OpenSSL's default paths), sqlite, /bin/sh.
            [
                py,
                "-c",
                "import ssl, sqlite3, json, asyncio; "
                "n = ssl.create_default_context().cert_store_stats()['x509_ca']; "
                "assert n > 100, n",
            ],
            ["/bin/sh", "-c", "true"],
        ],
    )
    tmp.rename(out)


# --- layer 2: the venv with the dependencies -----------------------------------------------------
def _pip_download(dest: Path, requirements: Sequence[str], constraints: Path | None) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    argv: list[str | Path] = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        facts.PYTHON_VERSION,
        "--abi",
        "cp" + facts.PYTHON_VERSION.replace(".", ""),
        "--dest",
        tmp,
    ]
    for plat in _manylinux_platforms():
        argv += ["--platform", plat]
    if constraints:
        argv += ["-c", constraints]
    _run([*argv, *requirements])
    tmp.rename(dest)


def _wheelhouse(cache: _Cache, repo: Path, refresh: bool) -> Path:
    """Wheels of the project's dependencies for the image's Python and platform."""
    constraints = repo / "constraints.txt"
    reqs = _requirements(repo)
    key = _key(reqs, constraints.read_text(), facts.PYTHON_VERSION, GLIBC)
    dest = cache.root / f"wheels-{key}"
    if refresh and dest.exists():
        shutil.rmtree(dest)
    if not dest.exists():
        say("downloading the dependencies' wheels")
        _pip_download(dest, reqs, constraints)
        cache.keep_only("wheels", dest)
    return dest


def _tools(cache: _Cache) -> Path:
    """pip (run from its wheel inside the chroot) and the project's build backend."""
    pins = [
        f"pip=={facts.PIP_VERSION}",
        f"setuptools=={facts.SETUPTOOLS_VERSION}",
        f"wheel=={facts.WHEEL_VERSION}",
    ]
    dest = cache.root / f"tools-{_key(pins)}"
    if not dest.exists():
        say("downloading pip, setuptools and wheel")
        _pip_download(dest, pins, None)
        cache.keep_only("tools", dest)
    return dest


def _pip(tools: Path) -> list[str]:
    wheel = f"pip-{facts.PIP_VERSION}-py3-none-any.whl"
    if not (tools / wheel).exists():
        raise RuntimeError(f"{tools / wheel} is missing")
    # pip runs from its wheel with the venv's interpreter and installs into that venv.
    return [
        f"{facts.VENV}/bin/python",
        f"/tmp/tools/{wheel}/pip",
        "--disable-pip-version-check",
    ]


# Offline, from the mounted wheels; bytecode is compiled afterwards (see COMPILEALL).
PIP_INSTALL = (
    "--quiet",
    "--root-user-action=ignore",
    "--no-index",
    "--no-compile",
    "--no-cache-dir",
)


def _site_packages() -> str:
    return f"{facts.VENV}/lib/python{facts.PYTHON_VERSION}/site-packages"


def _compile(*paths: str) -> list[str]:
    return [f"{facts.VENV}/bin/python", *COMPILEALL, *paths]


def _build_deps(base: Path, wheels: Path, tools: Path, repo: Path, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ctx = Path(tempfile.mkdtemp(prefix="space-dra-deps-"))
    try:
        tmp.mkdir(parents=True)
        shutil.copy(repo / "constraints.txt", ctx / "constraints.txt")
        (ctx / "requirements.txt").write_text("\n".join(_requirements(repo)) + "\n")
        pip = _pip(tools)
        say("installing the dependencies into the venv")
        _in_root(
            tmp,
            [
                [
                    f"/usr/bin/python{facts.PYTHON_VERSION}",
                    "-m",
                    "venv",
                    "--without-pip",
                    facts.VENV,
                ],
                [
                    *pip,
                    "install",
                    *PIP_INSTALL,
                    "--find-links=/tmp/wheels",
                    "--constraint=/tmp/ctx/constraints.txt",
                    "--requirement=/tmp/ctx/requirements.txt",
                ],
                [*pip, "check"],
                _compile(_site_packages()),
            ],
            lowers=[base],
            binds={"wheels": wheels, "tools": tools, "ctx": ctx},
        )
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    _check_upper(tmp, {facts.VENV.strip("/").split("/")[0]})
    _check_shared_libraries([tmp, base], facts.VENV)
    tmp.rename(out)


# --- layer 3: the project -----------------------------------------------------------------------
def _build_wheel(repo: Path, tools: Path, dest: Path) -> Path:
    """The project's wheel, built from a copy of its sources (the checkout is not written)."""
    with tempfile.TemporaryDirectory(prefix="space-dra-src-") as src:
        for rel in project_files(repo):
            (Path(src) / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, Path(src) / rel)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        _run(
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


def _build_app(
    lowers: Sequence[Path], wheels: Path, tools: Path, repo: Path, out: Path, version: str
) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ctx = Path(tempfile.mkdtemp(prefix="space-dra-app-"))
    try:
        tmp.mkdir(parents=True)
        say("building the project's wheel")
        _build_wheel(repo, tools, ctx / "app")
        shutil.copy(repo / "constraints.txt", ctx / "constraints.txt")
        pip = _pip(tools)
        say("installing the project into the venv")
        stdout = _in_root(
            tmp,
            [
                [
                    *pip,
                    "install",
                    *PIP_INSTALL,
                    "--find-links=/tmp/ctx/app",
                    "--find-links=/tmp/wheels",
                    "--constraint=/tmp/ctx/constraints.txt",
                    f"space-dra=={version}",
                ],
                [*pip, "check"],
                _compile(f"{_site_packages()}/space_dra"),
                [f"{facts.VENV}/bin/space-dra", "version"],
                # Every module of the project imports (grpc, protobuf, lightkube with it).
                [f"{facts.VENV}/bin/python", "-c", IMPORT_ALL],
            ],
            lowers=lowers,
            binds={"wheels": wheels, "tools": tools, "ctx": ctx},
        )
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    if f"space-dra {version}" not in stdout:
        raise RuntimeError(f"space-dra version in the new image printed {stdout!r}")
    _check_upper(tmp, {facts.VENV.strip("/").split("/")[0]})
    tmp.rename(out)


# --- the image ----------------------------------------------------------------------------------
def image_config(version: str) -> images.ImageConfig:
    return images.ImageConfig(
        cmd=list(facts.CMD),
        env=[f"{k}={v}" for k, v in facts.ENV.items()],
        workdir="/",
        labels={
            "org.opencontainers.image.title": "space-dra-driver",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.licenses": "Apache-2.0",
        },
    )


def _layer_sizes(archive: Path) -> list[int]:
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> dict[str, object]:
            f = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert f is not None
            loaded: dict[str, object] = json.load(f)
            return loaded

        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = blob(index["manifests"][0]["digest"])
        layers = manifest["layers"]
        assert isinstance(layers, list)
        return [int(layer["size"]) for layer in layers]


def _cached_layer(path: Path, rebuild: bool, build: Callable[[Path], None], cache: _Cache) -> Path:
    """``path`` if cached (and not ``rebuild``), else built by ``build(path)``; older entries of
    the same kind are then dropped."""
    if rebuild and path.exists():
        shutil.rmtree(path)
    if not path.exists():
        build(path)
        cache.keep_only(path.name.split("-", 1)[0], path)
    return path


def build_driver_image(
    layout: Layout | None = None,
    *,
    repo: Path = REPO_ROOT,
    rebuild: bool = False,
    refresh: bool = False,
) -> DriverImage:
    """Build (or reuse) the driver image's OCI archive; needs no running cluster.

    ``rebuild`` discards the cached layers and archive (not the downloads); ``refresh`` also
    updates the Debian index and the dependency wheels (picking up security updates and newer
    unpinned transitive dependencies).
    """
    if os.geteuid() != 0:
        raise RuntimeError("building the driver image needs root (chroot, mounts)")
    layout = layout or Layout.default()
    fetch.ensure_host_packages()
    cache = _Cache(layout.cache / "driver-image")
    version = project_version(repo)
    reference = f"{facts.IMAGE_REPOSITORY}:{version}"
    timings: dict[str, float] = {}
    with cache.locked():
        t = time.monotonic()
        pkgs = _resolution(cache, refresh)
        base = _cached_layer(
            cache.root / f"base-{_key(RECIPE, pkgs, facts.passwd_line())}",
            rebuild,
            lambda out: _build_base(cache, pkgs, out),
            cache,
        )
        timings["base"] = time.monotonic() - t

        t = time.monotonic()
        wheels = _wheelhouse(cache, repo, refresh)
        tools = _tools(cache)
        deps_key = _key(
            base.name,
            sorted(p.name for p in wheels.iterdir()),
            facts.PIP_VERSION,
            _requirements(repo),
            (repo / "constraints.txt").read_text(),
        )
        deps = _cached_layer(
            cache.root / f"deps-{deps_key}",
            rebuild,
            lambda out: _build_deps(base, wheels, tools, repo, out),
            cache,
        )
        timings["deps"] = time.monotonic() - t

        t = time.monotonic()
        app = _cached_layer(
            cache.root / f"app-{_key(deps.name, source_key(repo), facts.SETUPTOOLS_VERSION)}",
            rebuild,
            lambda out: _build_app([deps, base], wheels, tools, repo, out, version),
            cache,
        )
        timings["app"] = time.monotonic() - t

        t = time.monotonic()
        archive, digest = _archive(
            cache, reference, [base, deps, app], image_config(version), rebuild
        )
        timings["archive"] = time.monotonic() - t
    sizes = dict(zip(("base", "deps", "app"), _layer_sizes(archive), strict=True))
    return DriverImage(reference, digest, archive, sizes, timings)


def _archive(
    cache: _Cache,
    reference: str,
    layers: Sequence[Path],
    config: images.ImageConfig,
    rebuild: bool,
) -> tuple[Path, str]:
    """The OCI archive of ``layers`` (cached by their keys, reference and config), its digest."""
    key = _key([p.name for p in layers], reference, config.as_dict())
    archive = cache.root / f"archive-{key}.tar"
    digest_file = archive.with_suffix(".digest")
    if rebuild or not (archive.exists() and digest_file.exists()):
        say(f"writing {archive.name}")
        entries = [images.tree_entries(d) for d in layers]
        digest_file.write_text(images.build_oci_archive(archive, reference, entries, config) + "\n")
        cache.keep_only("archive", archive)
    return archive, digest_file.read_text().strip()


def import_driver_image(image: DriverImage, layout: Layout | None = None) -> bool:
    """Import the archive into every node's containerd that lacks that digest.

    Returns whether it imported. The cluster must be up (``python -m localcluster up``).
    """
    layout = layout or Layout.default()
    ctr = fetch.binaries(layout).ctr
    return images.import_into_nodes(
        ctr, layout.containerd_sockets(), image.archive, image.reference, image.digest
    )


def ensure_driver_image(
    layout: Layout | None = None, *, rebuild: bool = False, refresh: bool = False
) -> str:
    """Build the driver image if its inputs changed and import it into the running local cluster.

    Returns the image reference (``localhost/space-dra/driver:<version>``), which pods use with
    ``imagePullPolicy: IfNotPresent`` or ``Never``. A few hundred milliseconds when nothing
    changed. The tag is re-pointed when the sources change; running pods keep the image they
    started with.
    """
    image = build_driver_image(layout, rebuild=rebuild, refresh=refresh)
    import_driver_image(image, layout)
    return image.reference

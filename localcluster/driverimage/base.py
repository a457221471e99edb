"""Layer 1, the Debian base: the resolved .deb files unpacked, and what their scripts would do.

Each package is unpacked with ``dpkg-deb`` into a merged-/usr tree; no dpkg, apt or maintainer
script runs or ships. Instead the builder does what those scripts would have done for the
runtime: the users, ``/etc/nsswitch.conf``, the CA bundle, ``ld.so.cache`` and byte-compiling
the standard library. Docs and man pages go as in ``debian:*-slim``; ``/var/lib/dpkg/status.d/``
lists the packages for image scanners.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from localcluster import driverlayout as facts
from localcluster.driverimage.apt import download_debs
from localcluster.driverimage.cache import Cache
from localcluster.driverimage.commands import COMPILEALL, in_root, run, say
from localcluster.driverimage.libraries import check_shared_libraries

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
        control = run(["dpkg-deb", "-f", str(deb)]).stdout
        name = control.split("\n", 1)[0].removeprefix("Package:").strip()
        (status_d / name).write_text(control)


def build_base(cache: Cache, pkgs: Sequence[tuple[str, str]], out: Path) -> None:
    """Layer 1 at ``out``: ``pkgs`` unpacked, configured for the runtime, and checked."""
    debs = download_debs(cache, pkgs)
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
    run([shutil.which("ldconfig") or "/sbin/ldconfig", "-r", str(tmp)])
    # ldconfig's own cache of inode numbers and mtimes: useless without ldconfig, not reproducible.
    (tmp / "var/cache/ldconfig/aux-cache").unlink(missing_ok=True)
    check_shared_libraries([tmp], "/usr")
    py = f"/usr/bin/python{facts.PYTHON_VERSION}"
    stdlib = f"/usr/lib/python{facts.PYTHON_VERSION}"
    say("byte-compiling the standard library")
    in_root(
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

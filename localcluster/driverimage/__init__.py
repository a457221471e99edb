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

One module per concern; this package's namespace is its public API:

- ``build``: the layers in order and their cache keys; ``build_driver_image``, ``DriverImage``.
- ``containerd``: ``import_driver_image`` and ``ensure_driver_image`` (build, then import).
- ``project``: what the repository contributes (version, dependencies, sources, its wheel).
- ``apt``: the base's packages, resolved on a private apt index, and their .deb files.
- ``base``: layer 1, the .deb files unpacked and configured without maintainer scripts.
- ``wheels``: the dependency and installer wheels, downloaded on the host.
- ``venv``: layers 2 and 3, installed into the venv by the image's own Python.
- ``archive``: the image config and the cached OCI archive.
- ``commands``: running programs on the host and chrooted into a layer (overlay, namespace).
- ``libraries``: the check that every ELF file finds its shared libraries.
- ``cache``: cache keys, entries and the lock.

The facts both this build and ``deployments/container/Dockerfile`` share (suite, Python, venv,
user, environment, pinned pip) are ``localcluster.driverlayout``.
"""

from __future__ import annotations

from localcluster.driverimage.apt import ROOT_PACKAGES
from localcluster.driverimage.archive import image_config
from localcluster.driverimage.build import DriverImage, build_driver_image
from localcluster.driverimage.commands import COMPILEALL
from localcluster.driverimage.containerd import ensure_driver_image, import_driver_image
from localcluster.driverimage.project import (
    image_reference,
    project_files,
    project_version,
    source_key,
)

__all__ = [
    "COMPILEALL",
    "ROOT_PACKAGES",
    "DriverImage",
    "build_driver_image",
    "ensure_driver_image",
    "image_config",
    "image_reference",
    "import_driver_image",
    "project_files",
    "project_version",
    "source_key",
]

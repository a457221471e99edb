"""What the driver image looks like: the facts both of its builds share.

The image is built two ways: without Docker by ``localcluster.driverimage`` (``python -m
localcluster driver-image``), and with Docker from ``deployments/container/Dockerfile``. Both take
these values; the Dockerfile repeats them as ``ARG`` defaults and ``ENV`` lines, and
``tests/cluster/test_dockerfile.py`` (no marker, runs in a second) fails when the two disagree.
"""

from __future__ import annotations

# Debian release whose python3 the image runs, and that python's version (bookworm ships 3.11).
DEBIAN_SUITE = "bookworm"
PYTHON_VERSION = "3.11"

# The virtualenv holding the project and its dependencies; its bin/ comes first on PATH, so the
# chart's ``command: [space-dra, ...]`` resolves to the console script in it.
VENV = "/opt/space-dra"

# The non-root user the controller runs as (the chart sets runAsUser/runAsGroup 65532). The image
# itself does not switch user: the kubelet plugin runs as root.
USER_ID = 65532
USER_NAME = "nonroot"
USER_HOME = "/home/nonroot"
USER_SHELL = "/usr/sbin/nologin"

PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The image's environment. Nothing may write into the image at run time (the controller runs with
# readOnlyRootFilesystem): all bytecode is compiled at build time and Python must not try to write
# any more of it.
ENV: dict[str, str] = {
    "PATH": PATH,
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}

# No entrypoint; the chart sets ``command``. A bare ``docker run`` prints the usage.
CMD: tuple[str, ...] = ("space-dra", "--help")

# Debian packages both builds install (with their dependencies). manylinux wheels (grpcio) expect
# the system's libstdc++; debian:*-slim has it anyway (apt needs it), the local build does not.
DEBIAN_PACKAGES: tuple[str, ...] = (
    "python3",
    f"python{PYTHON_VERSION}",
    "ca-certificates",
    "libstdc++6",
)

# The pip that installs the wheels into the venv (it is not left in the image), and the build
# backend versions used for the project's own wheel.
PIP_VERSION = "26.3"
SETUPTOOLS_VERSION = "84.2.1"
WHEEL_VERSION = "0.48.0"

IMAGE_REPOSITORY = "localhost/space-dra/driver"


def passwd_line() -> str:
    return f"{USER_NAME}:x:{USER_ID}:{USER_ID}:{USER_NAME}:{USER_HOME}:{USER_SHELL}"


def group_line() -> str:
    return f"{USER_NAME}:x:{USER_ID}:"

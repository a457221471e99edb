"""Space DRA driver: a Kubernetes DRA driver whose device is a fresh namespace.

The version is defined once, in pyproject.toml; the installed package's metadata
carries it here, and the chart (Chart.yaml version and appVersion) and the driver
image tag follow it (tests/unit/test_packaging.py).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("space-dra")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

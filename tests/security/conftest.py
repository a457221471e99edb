"""The driver running from this checkout as host processes, under the chart's RBAC."""

from tests.support.fixtures import host_driver, workspace  # noqa: F401

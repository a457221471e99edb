"""The DRAResourceHealth stream, v1 and v1alpha1: the kubelet's view of prepared devices' health.

The kubelet copies it into each pod's ``status.containerStatuses[].allocatedResourcesStatus``.
A device it hears nothing about for ``health_check_timeout_seconds`` becomes Unknown, so
the stream repeats the full list at half that interval, and sends it at once whenever the
driver signals a change. Only drivers implementing
:class:`~space_dra.kubeletplugin.api.HealthReporter` offer it.

Both versions are served and advertised at registration, newest first, as the Go helper
does: a 1.37 kubelet picks the newest health service the plugin advertises (v1), a 1.36
kubelet opens v1alpha1 without looking at the list (``docs/health.md`` has the citations).
The two versions have the same messages in different proto packages, so one servicer
body builds either version's response.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from types import ModuleType
from typing import Any

from space_dra.kubeletplugin.api import DeviceHealth, HealthReporter, HealthStatus, clip
from space_dra.proto.dra_health.v1 import api_pb2 as health_v1
from space_dra.proto.dra_health.v1 import api_pb2_grpc as health_v1_grpc
from space_dra.proto.dra_health.v1alpha1 import api_pb2 as health_v1alpha1
from space_dra.proto.dra_health.v1alpha1 import api_pb2_grpc as health_v1alpha1_grpc

# What GetInfo advertises: "<proto package>.<service>", newest first.
HEALTH_VERSIONS = (
    health_v1.DESCRIPTOR.services_by_name["DRAResourceHealth"].full_name,
    health_v1alpha1.DESCRIPTOR.services_by_name["DRAResourceHealth"].full_name,
)
HEALTH_TIMEOUT_SECONDS = 120
# The kubelet keeps at most this much of a message.
MESSAGE_LIMIT = 1024

# Worst first: a device named twice (two claims sharing it) is reported once, as its worst.
_SEVERITY = {HealthStatus.UNHEALTHY: 2, HealthStatus.UNKNOWN: 1, HealthStatus.HEALTHY: 0}


def merged(report: Iterable[DeviceHealth]) -> list[DeviceHealth]:
    """One entry per (pool, device), the worst one where a device appears more than once:
    the kubelet keys health by device, so a second entry would silently replace the first."""
    by_device: dict[tuple[str, str], DeviceHealth] = {}
    for item in report:
        key = (item.pool, item.device)
        known = by_device.get(key)
        if known is None or _SEVERITY[item.status] > _SEVERITY[known.status]:
            by_device[key] = item
    return list(by_device.values())


class _HealthStream:
    """NodeWatchResources for one protocol version: ``api`` is that version's module."""

    def __init__(self, reporter: HealthReporter, api: ModuleType) -> None:
        self.reporter = reporter
        self.api = api
        self.wire_status = {
            HealthStatus.HEALTHY: api.HEALTHY,
            HealthStatus.UNHEALTHY: api.UNHEALTHY,
            HealthStatus.UNKNOWN: api.UNKNOWN,
        }

    def snapshot(self) -> Any:
        now = int(time.time())
        return self.api.NodeWatchResourcesResponse(
            devices=[
                self.api.DeviceHealth(
                    device=self.api.DeviceIdentifier(pool_name=item.pool, device_name=item.device),
                    health=self.wire_status[item.status],
                    last_updated_time=now,
                    health_check_timeout_seconds=HEALTH_TIMEOUT_SECONDS,
                    message=clip(item.message, MESSAGE_LIMIT - 3),
                )
                for item in merged(self.reporter.device_health())
            ]
        )

    async def NodeWatchResources(  # noqa: N802 - gRPC method name
        self, request: Any, context: Any
    ) -> AsyncIterator[Any]:
        changes = self.reporter.health_changes
        while True:
            seen = changes.version
            yield self.snapshot()
            await changes.wait(HEALTH_TIMEOUT_SECONDS / 2, since=seen)


class DeviceHealthServiceV1(_HealthStream, health_v1_grpc.DRAResourceHealthServicer):
    def __init__(self, reporter: HealthReporter) -> None:
        super().__init__(reporter, health_v1)


class DeviceHealthServiceV1Alpha1(_HealthStream, health_v1alpha1_grpc.DRAResourceHealthServicer):
    def __init__(self, reporter: HealthReporter) -> None:
        super().__init__(reporter, health_v1alpha1)


def add_health_services(reporter: HealthReporter, server: Any) -> None:
    """Serve both versions of the stream for ``reporter`` on ``server``."""
    health_v1_grpc.add_DRAResourceHealthServicer_to_server(DeviceHealthServiceV1(reporter), server)
    health_v1alpha1_grpc.add_DRAResourceHealthServicer_to_server(
        DeviceHealthServiceV1Alpha1(reporter), server
    )

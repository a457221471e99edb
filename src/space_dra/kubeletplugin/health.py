"""The DRAResourceHealth stream: the kubelet's view of prepared devices' health.

The kubelet copies it into each pod's ``status.containerStatuses[].allocatedResourcesStatus``.
A device it hears nothing about for ``health_check_timeout_seconds`` becomes Unknown, so
the stream repeats the full list at half that interval, and sooner whenever the driver
signals a change. Only drivers implementing
:class:`~space_dra.kubeletplugin.api.HealthReporter` offer it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from space_dra.kubeletplugin.api import HealthReporter
from space_dra.proto.dra_health.v1alpha1 import api_pb2 as health_v1alpha1
from space_dra.proto.dra_health.v1alpha1 import api_pb2_grpc as health_v1alpha1_grpc

# What GetInfo advertises for this service.
HEALTH_VERSION = "v1alpha1.DRAResourceHealth"
HEALTH_TIMEOUT_SECONDS = 120


class DeviceHealthService(health_v1alpha1_grpc.DRAResourceHealthServicer):
    def __init__(self, reporter: HealthReporter) -> None:
        self.reporter = reporter

    def snapshot(self) -> health_v1alpha1.NodeWatchResourcesResponse:
        now = int(time.time())
        return health_v1alpha1.NodeWatchResourcesResponse(
            devices=[
                health_v1alpha1.DeviceHealth(
                    device=health_v1alpha1.DeviceIdentifier(
                        pool_name=item.pool, device_name=item.device
                    ),
                    health=health_v1alpha1.HEALTHY if item.healthy else health_v1alpha1.UNHEALTHY,
                    last_updated_time=now,
                    health_check_timeout_seconds=HEALTH_TIMEOUT_SECONDS,
                    message=item.message,
                )
                for item in self.reporter.device_health()
            ]
        )

    async def NodeWatchResources(  # noqa: N802 - gRPC method name
        self, request: health_v1alpha1.NodeWatchResourcesRequest, context: Any
    ) -> AsyncIterator[health_v1alpha1.NodeWatchResourcesResponse]:
        while True:
            yield self.snapshot()
            await self.reporter.health_changes.wait(HEALTH_TIMEOUT_SECONDS / 2)

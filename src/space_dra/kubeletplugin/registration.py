"""The Registration service the kubelet's plugin watcher calls, and what it remembers.

The kubelet finds the plugin by its registration socket, asks ``GetInfo`` for the
driver name, the DRA endpoint and the versions served, then reports its verdict with
``NotifyRegistrationStatus``. A rejection (a kubelet too old for every version offered,
an endpoint another instance already holds) is otherwise silent, so it is logged,
passed to the driver's hook, reflected in the standard gRPC health service, and kept
for :meth:`Registration.problem`.

Until the kubelet has said yes, the plugin is alive but not ready
(:meth:`Registration.not_ready`): a DaemonSet rolling update with ``maxSurge`` deletes
the old pod only once the new one is ready, so a node is never left with a plugin the
kubelet does not use yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from space_dra.logs import log_event
from space_dra.proto.pluginregistration import api_pb2 as reg
from space_dra.proto.pluginregistration import api_pb2_grpc as reg_grpc

log = logging.getLogger(__name__)

DRA_PLUGIN_TYPE = "DRAPlugin"
# Order matters: the kubelet takes the first DRAPlugin entry it supports.
DRA_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin")

RegistrationHook = Callable[[bool, str], None]
"""Called with (registered, error) each time the kubelet reports its verdict."""


class Registration(reg_grpc.RegistrationServicer):
    def __init__(
        self,
        driver_name: str,
        endpoint: str,
        supported_versions: Sequence[str],
        grpc_health: HealthServicer,
        grpc_health_services: Sequence[str],
        on_status: RegistrationHook | None = None,
    ) -> None:
        self.driver_name = driver_name
        self.endpoint = endpoint
        self.supported_versions = list(supported_versions)
        self.grpc_health = grpc_health
        self.grpc_health_services = grpc_health_services
        self.on_status = on_status
        self.registered: bool | None = None
        self.error = ""

    async def GetInfo(self, request: reg.InfoRequest, context: Any) -> reg.PluginInfo:  # noqa: N802
        return reg.PluginInfo(
            type=DRA_PLUGIN_TYPE,
            name=self.driver_name,
            endpoint=self.endpoint,
            supported_versions=self.supported_versions,
        )

    async def NotifyRegistrationStatus(  # noqa: N802
        self, request: reg.RegistrationStatus, context: Any
    ) -> reg.RegistrationStatusResponse:
        self.registered = request.plugin_registered
        self.error = request.error
        if self.on_status is not None:
            self.on_status(request.plugin_registered, request.error)
        status = health_pb2.HealthCheckResponse.SERVING
        if request.plugin_registered:
            log_event(log, logging.INFO, "kubelet_registration_accepted", driver=self.driver_name)
        else:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
            log_event(
                log,
                logging.ERROR,
                "kubelet_registration_rejected",
                driver=self.driver_name,
                error=request.error,
            )
        for service in self.grpc_health_services:
            await self.grpc_health.set(service, status)
        return reg.RegistrationStatusResponse()

    def problem(self) -> str | None:
        """Why the plugin is broken (for liveness): the kubelet rejected it."""
        if self.registered is False:
            return f"the kubelet rejected the registration: {self.error}"
        return None

    def not_ready(self) -> str | None:
        """Why the kubelet does not use the plugin yet (for readiness), or None."""
        if self.registered is None:
            return "waiting for the kubelet to register the plugin (NotifyRegistrationStatus)"
        return self.problem()

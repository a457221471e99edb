"""Start and stop a driver's kubelet plugin: the sockets, the services, in the right order.

The kubelet discovers the plugin by the registration socket appearing in its
plugins_registry directory and immediately dials the endpoint GetInfo names. So
the DRA socket must be serving before the registration socket exists, and on the
way out the registration socket goes first, so the kubelet deregisters before
the DRA service disappears.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from space_dra.kubeletplugin.api import DRAPlugin, HealthReporter, Serialization
from space_dra.kubeletplugin.dispatch import Dispatcher
from space_dra.kubeletplugin.health import HEALTH_VERSIONS, add_health_services
from space_dra.kubeletplugin.registration import DRA_VERSIONS, Registration
from space_dra.kubeletplugin.services import SERVICE_NAMES, DRAPluginV1, DRAPluginV1Beta1
from space_dra.kubeletplugin.sockets import (
    KUBELET_PLUGINS_DIR,
    KUBELET_REGISTRY_DIR,
    PLUGIN_DIR_MODE,
    SOCKET_MODE,
    remove_dead_sockets,
    remove_stale_socket,
    socket_paths,
)
from space_dra.kubeletplugin.sync import ClaimLocks
from space_dra.logs import log_event
from space_dra.proto.dra.v1 import api_pb2_grpc as v1_grpc
from space_dra.proto.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc
from space_dra.proto.pluginregistration import api_pb2_grpc as reg_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """How to run the plugin; only the driver name has no default."""

    driver_name: str
    # The DRA socket goes in <plugins_dir>/<driver_name>/.
    plugins_dir: Path = KUBELET_PLUGINS_DIR
    registrar_dir: Path = KUBELET_REGISTRY_DIR
    # The plugin pod's UID: both socket names then include it, so the old and the new
    # pod of a DaemonSet rolling update (maxSurge) can serve side by side.
    rolling_update_uid: str | None = None
    serialization: Serialization = Serialization.PER_CLAIM
    # The locks PER_CLAIM serialisation takes; pass your own to take them in
    # background work too. A fresh set when None.
    claim_locks: ClaimLocks | None = None
    # Told (registered, error) each time the kubelet reports its verdict.
    on_registration: Callable[[bool, str], None] | None = None
    # How long in-flight calls may finish after stop() begins.
    grace_seconds: float = 5.0


class KubeletPlugin:
    """A driver served to the kubelet. Construct, ``await start()``, ``await stop()``."""

    def __init__(self, plugin: DRAPlugin, options: Options) -> None:
        self.plugin = plugin
        self.options = options
        self.paths = socket_paths(
            options.driver_name,
            options.plugins_dir,
            options.registrar_dir,
            options.rolling_update_uid,
        )
        self.claim_locks = options.claim_locks if options.claim_locks is not None else ClaimLocks()
        self.dispatcher = Dispatcher(plugin, options.serialization, self.claim_locks)
        self.grpc_health = HealthServicer()
        self._grpc_health_services = ("", *SERVICE_NAMES)
        versions = list(DRA_VERSIONS)
        if isinstance(plugin, HealthReporter):
            versions.extend(HEALTH_VERSIONS)
        self.registration = Registration(
            options.driver_name,
            str(self.paths.dra),
            versions,
            self.grpc_health,
            self._grpc_health_services,
            options.on_registration,
        )
        self._dra_server: grpc.aio.Server | None = None
        self._reg_server: grpc.aio.Server | None = None

    def problem(self) -> str | None:
        """Why the kubelet cannot use this plugin right now, or None (for liveness probes)."""
        problem = self.registration.problem()
        if problem is None and not self.paths.registration.exists():
            problem = f"registration socket {self.paths.registration} is missing"
        return problem

    def not_ready(self) -> str | None:
        """Why the kubelet is not using this plugin yet, or None (for readiness probes)."""
        return self.problem() or self.registration.not_ready()

    async def start(self) -> None:
        """Serve the DRA services, then announce them through the registration socket.

        Call it once the driver can answer: the kubelet may call right away.
        """
        self.paths.dra.parent.mkdir(parents=True, exist_ok=True)
        self.paths.dra.parent.chmod(PLUGIN_DIR_MODE)
        self.paths.registration.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.paths.registration, self.paths.dra):
            remove_stale_socket(path)
        driver = self.options.driver_name
        remove_dead_sockets(
            [
                *self.options.registrar_dir.glob(f"{driver}-*reg.sock"),
                *self.paths.dra.parent.glob("dra*.sock"),
            ]
        )

        self._dra_server = grpc.aio.server()
        self._add_dra_services(self._dra_server)
        self._dra_server.add_insecure_port(f"unix://{self.paths.dra}")
        await self._dra_server.start()
        self.paths.dra.chmod(SOCKET_MODE)
        for service in self._grpc_health_services:
            await self.grpc_health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log_event(log, logging.INFO, "dra_service_listening", socket=str(self.paths.dra))

        self._reg_server = grpc.aio.server()
        reg_grpc.add_RegistrationServicer_to_server(self.registration, self._reg_server)
        self._reg_server.add_insecure_port(f"unix://{self.paths.registration}")
        await self._reg_server.start()
        self.paths.registration.chmod(SOCKET_MODE)
        log_event(log, logging.INFO, "registration_listening", socket=str(self.paths.registration))

    def _add_dra_services(self, server: grpc.aio.Server) -> None:
        v1_grpc.add_DRAPluginServicer_to_server(DRAPluginV1(self.dispatcher), server)
        v1beta1_grpc.add_DRAPluginServicer_to_server(DRAPluginV1Beta1(self.dispatcher), server)
        if isinstance(self.plugin, HealthReporter):
            add_health_services(self.plugin, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.grpc_health, server)

    async def stop(self) -> None:
        """Deregister first, then let in-flight calls finish; safe after a failed start."""
        if self._reg_server is not None:
            self.paths.registration.unlink(missing_ok=True)
            await self._reg_server.stop(grace=None)
        if self._dra_server is not None:
            await self.grpc_health.enter_graceful_shutdown()
            await self._dra_server.stop(grace=self.options.grace_seconds)
            self.paths.dra.unlink(missing_ok=True)


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_signalled(service: Service) -> None:
    """Start ``service``, wait for SIGTERM or SIGINT, stop it (also when start fails)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await service.start()
        await stop.wait()
    finally:
        await service.stop()

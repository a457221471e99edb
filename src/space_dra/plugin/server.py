"""Run the kubelet plugin: sockets in the right order, background refresh, clean exit.

The kubelet discovers the plugin by the registration socket appearing in its
plugins_registry directory and immediately dials the endpoint GetInfo names. So
the DRA socket must be serving before the registration socket exists, and on the
way out the registration socket goes first, so the kubelet deregisters before
the DRA service disappears.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import socket
import stat
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from space_dra.httpserver import HealthServer
from space_dra.kube import KubeAPI
from space_dra.logs import log_event
from space_dra.plugin.driver import DriverOptions, NamespaceDriver
from space_dra.plugin.service import HEALTH_SERVICES, Registration, add_dra_services
from space_dra.proto.pluginregistration import api_pb2_grpc as reg_grpc

log = logging.getLogger(__name__)

SOCKET_MODE = 0o600
PLUGIN_DIR_MODE = 0o750
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL, but gRPC
# core refuses paths longer than 105 (measured with grpcio 1.85: 106 fails).
MAX_SOCKET_PATH = 105


@dataclass(frozen=True)
class SocketPaths:
    dra: Path
    registration: Path


def socket_paths(
    driver_name: str, plugins_dir: Path, registrar_dir: Path, rolling_update_uid: str | None
) -> SocketPaths:
    """Where the two sockets go; with a pod UID both names are unique per pod.

    Long pod UIDs are shortened to a hash so paths stay within the unix socket limit.
    """
    data_dir = plugins_dir / driver_name
    if not rolling_update_uid:
        return SocketPaths(data_dir / "dra.sock", registrar_dir / f"{driver_name}-reg.sock")
    uid = rolling_update_uid
    paths = SocketPaths(
        data_dir / f"dra-{uid}.sock", registrar_dir / f"{driver_name}-{uid}-reg.sock"
    )
    if max(len(str(paths.dra)), len(str(paths.registration))) > MAX_SOCKET_PATH:
        short = urlsafe_b64encode(hashlib.sha256(uid.encode()).digest()[:12]).decode()
        paths = SocketPaths(
            data_dir / f"dra-{short}.sock", registrar_dir / f"{driver_name}-{short}-reg.sock"
        )
    for path in (paths.dra, paths.registration):
        if len(str(path)) > MAX_SOCKET_PATH:
            raise ValueError(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes")
    return paths


def remove_stale_socket(path: Path) -> None:
    """Remove a leftover socket; refuse to delete anything that is not a socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
    path.unlink()
    log_event(log, logging.INFO, "stale_socket_removed", path=str(path))


def remove_dead_sockets(candidates: list[Path]) -> None:
    """Remove sockets of our driver that nobody listens on any more.

    In rolling-update mode every pod has its own socket names, so a plugin pod that
    was killed leaves sockets that no restart will reuse; the kubelet would keep
    trying them. A socket that refuses connections has no server: it is safe to
    remove, while a live one (the other instance during an update) is kept.
    """
    for path in candidates:
        try:
            if not stat.S_ISSOCK(path.lstat().st_mode):
                continue
        except FileNotFoundError:
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1)
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
            log_event(log, logging.INFO, "dead_socket_removed", path=str(path))
        except OSError:
            pass
        finally:
            probe.close()


@dataclass(frozen=True)
class PluginOptions:
    driver: DriverOptions
    plugins_dir: Path
    registrar_dir: Path
    rolling_update_uid: str | None = None
    http_host: str = "0.0.0.0"  # noqa: S104 - metrics and probes are meant to be scraped
    http_port: int = 8080
    grace_seconds: float = 5.0


class PluginServer:
    """Owns the two gRPC servers, the refresh task and the HTTP endpoint."""

    def __init__(self, kube: KubeAPI, options: PluginOptions) -> None:
        self.options = options
        self.driver = NamespaceDriver(kube, options.driver)
        self.paths = socket_paths(
            options.driver.driver_name,
            options.plugins_dir,
            options.registrar_dir,
            options.rolling_update_uid,
        )
        self.health = HealthServicer()
        self.registration = Registration(
            options.driver.driver_name, str(self.paths.dra), self.health
        )
        self.http = HealthServer(options.http_host, options.http_port, self._healthz, self._healthz)
        self._dra_server: grpc.aio.Server | None = None
        self._reg_server: grpc.aio.Server | None = None
        self._refresh: asyncio.Task[None] | None = None

    def _healthz(self) -> str | None:
        problem = self.registration.problem()
        if problem is None and not self.paths.registration.exists():
            problem = f"registration socket {self.paths.registration} is missing"
        return problem

    async def start(self) -> None:
        self.paths.dra.parent.mkdir(parents=True, exist_ok=True)
        self.paths.dra.parent.chmod(PLUGIN_DIR_MODE)
        self.paths.registration.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.paths.registration, self.paths.dra):
            remove_stale_socket(path)
        driver = self.options.driver.driver_name
        remove_dead_sockets(
            [
                *self.options.registrar_dir.glob(f"{driver}-*reg.sock"),
                *self.paths.dra.parent.glob("dra*.sock"),
            ]
        )
        self.driver.recover()

        self._dra_server = grpc.aio.server()
        add_dra_services(self._dra_server, self.driver, self.health)
        self._dra_server.add_insecure_port(f"unix://{self.paths.dra}")
        await self._dra_server.start()
        self.paths.dra.chmod(SOCKET_MODE)
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log_event(log, logging.INFO, "dra_service_listening", socket=str(self.paths.dra))

        self._reg_server = grpc.aio.server()
        reg_grpc.add_RegistrationServicer_to_server(self.registration, self._reg_server)
        self._reg_server.add_insecure_port(f"unix://{self.paths.registration}")
        await self._reg_server.start()
        self.paths.registration.chmod(SOCKET_MODE)
        log_event(log, logging.INFO, "registration_listening", socket=str(self.paths.registration))

        self._refresh = asyncio.create_task(self._refresh_loop(), name="refresh")
        await self.http.start()

    async def _refresh_loop(self) -> None:
        # Wake at least every 30 s so files lost behind our back are re-created soon.
        # An unexpected error must not end the loop for good: every token on the node
        # would then expire unrefreshed.
        while True:
            try:
                next_due = await self.driver.refresh_due()
            except Exception:
                log.exception("refresh_loop_failed")
                next_due = 5.0
            await asyncio.sleep(min(max(next_due, 1.0), 30.0))

    async def stop(self) -> None:
        log_event(log, logging.INFO, "plugin_stopping")
        if self._reg_server is not None:
            self.paths.registration.unlink(missing_ok=True)
            await self._reg_server.stop(grace=None)
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        if self._dra_server is not None:
            await self.health.enter_graceful_shutdown()
            await self._dra_server.stop(grace=self.options.grace_seconds)
            self.paths.dra.unlink(missing_ok=True)
        await self.http.stop()
        log_event(log, logging.INFO, "plugin_stopped")


async def run_until_signalled(server: PluginServer) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        await stop.wait()
    finally:
        await server.stop()

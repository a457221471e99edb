"""A real plugin server on real unix sockets, with the in-memory Kubernetes adapter."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from space_dra.contract import DEFAULT_DRIVER_NAME
from space_dra.kube_memory import MemoryKube
from space_dra.plugin.options import DriverOptions
from space_dra.plugin.server import PluginOptions, PluginServer
from space_dra.proto.dra.v1 import api_pb2 as v1
from space_dra.proto.dra_health.v1 import api_pb2 as health_v1
from space_dra.proto.dra_health.v1alpha1 import api_pb2 as health_v1alpha1

CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"
V1_PREPARE = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources"
V1_UNPREPARE = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodeUnprepareResources"
V1BETA1_PREPARE = "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodePrepareResources"
V1BETA1_UNPREPARE = "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodeUnprepareResources"
# The health stream's method path per version, as the kubelet dials it (upstream names).
HEALTH_WATCH = {
    health_v1: "/v1.DRAResourceHealth/NodeWatchResources",
    health_v1alpha1: "/v1alpha1.DRAResourceHealth/NodeWatchResources",
}


@dataclass
class Dirs:
    root: Path
    plugins: Path = field(init=False)
    registry: Path = field(init=False)
    cdi: Path = field(init=False)
    artifacts: Path = field(init=False)

    def __post_init__(self) -> None:
        self.plugins = self.root / "plugins"
        self.registry = self.root / "registry"
        self.cdi = self.root / "cdi"
        self.artifacts = self.root / "artifacts"

    def options(self, **driver_overrides: Any) -> PluginOptions:
        driver = DriverOptions(
            driver_name=DEFAULT_DRIVER_NAME,
            cdi_dir=self.cdi,
            artifact_dir=self.artifacts,
            checkpoint_path=self.plugins / DEFAULT_DRIVER_NAME / "checkpoint.json",
            ca_pem=CA_PEM,
            wait_timeout=1.0,
        )
        return PluginOptions(
            driver=replace(driver, **driver_overrides),
            plugins_dir=self.plugins,
            registrar_dir=self.registry,
            http_host="127.0.0.1",
            http_port=0,
            grace_seconds=0.5,
        )


class Kubelet:
    """Calls the plugin the way the kubelet does: full method paths on a unix socket."""

    def __init__(self, socket: Path) -> None:
        self.channel = grpc.aio.insecure_channel(f"unix://{socket}")

    async def call(self, method: str, request: Any, response_type: Any) -> Any:
        stub = self.channel.unary_unary(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return await stub(request, timeout=10)

    async def prepare(self, *claims: tuple[str, str, str], api: Any = v1) -> Any:
        request = api.NodePrepareResourcesRequest(
            claims=[api.Claim(namespace=ns, name=name, uid=uid) for ns, name, uid in claims]
        )
        method = V1_PREPARE if api is v1 else V1BETA1_PREPARE
        return await self.call(method, request, api.NodePrepareResourcesResponse)

    async def unprepare(self, *claims: tuple[str, str, str], api: Any = v1) -> Any:
        request = api.NodeUnprepareResourcesRequest(
            claims=[api.Claim(namespace=ns, name=name, uid=uid) for ns, name, uid in claims]
        )
        method = V1_UNPREPARE if api is v1 else V1BETA1_UNPREPARE
        return await self.call(method, request, api.NodeUnprepareResourcesResponse)

    def watch_health(self, api: Any) -> Any:
        """Open the DRAResourceHealth stream of version ``api`` (a generated module)."""
        return self.channel.unary_stream(
            HEALTH_WATCH[api],
            request_serializer=api.NodeWatchResourcesRequest.SerializeToString,
            response_deserializer=api.NodeWatchResourcesResponse.FromString,
        )(api.NodeWatchResourcesRequest())

    async def close(self) -> None:
        await self.channel.close(None)


@dataclass
class Harness:
    dirs: Dirs
    kube: MemoryKube
    server: PluginServer
    kubelet: Kubelet


@pytest.fixture
def dirs() -> Iterator[Dirs]:
    # Short paths: unix socket paths must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="sdra-", dir="/tmp"))
    yield Dirs(root)
    shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def serving(dirs: Dirs, kube: Any = None, **driver_overrides: Any) -> AsyncIterator[Harness]:
    """A started plugin with ``driver_overrides`` on its DriverOptions."""
    kube = kube if kube is not None else MemoryKube()
    server = PluginServer(kube, dirs.options(**driver_overrides))
    await server.start()
    harness = Harness(dirs, kube, server, Kubelet(server.paths.dra))
    try:
        yield harness
    finally:
        # Tests may restart the plugin and swap these out.
        await harness.kubelet.close()
        await harness.server.stop()


@pytest.fixture
async def harness(dirs: Dirs) -> AsyncIterator[Harness]:
    async with serving(dirs) as started:
        yield started

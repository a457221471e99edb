"""The adapter's connections: kept open while idle, as Go's client keeps them, so a plugin
that sees one pod every few seconds does not pay a new TLS connection per prepare."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from lightkube import KubeConfig

from space_dra.kube import LightkubeAPI
from space_dra.kube_config import IDLE_CONNECTION_SECONDS, ClientConfigError, current_context

CLAIM = json.dumps(
    {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "n", "uid": "u"},
    }
).encode()


class CountingServer:
    """Plain HTTP/1.1 with keep-alive; counts the connections clients open."""

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.all_closed = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.all_closed.clear()
        try:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")  # GETs carry no body
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed the connection
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(CLAIM)}\r\n\r\n".encode()
                    + CLAIM
                )
                await writer.drain()
        finally:
            writer.close()
            self.open -= 1
            if self.open == 0:
                self.all_closed.set()


def config(port: int) -> KubeConfig:
    return KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


async def test_an_idle_connection_is_reused_long_after_httpx_would_drop_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = CountingServer()
    server = await asyncio.start_server(counting.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    api = LightkubeAPI(config(port), "test")
    try:
        await api.get_claim("n", "c")
        real = time.monotonic
        idle = IDLE_CONNECTION_SECONDS / 2  # httpx's own default keeps 5 s
        monkeypatch.setattr(time, "monotonic", lambda: real() + idle)
        claim = await api.get_claim("n", "c")
        assert claim.metadata is not None and claim.metadata.uid == "u"
        assert counting.connections == 1, "the idle connection was dropped and a new one opened"
        monkeypatch.setattr(time, "monotonic", lambda: real() + IDLE_CONNECTION_SECONDS + idle)
        await api.get_claim("n", "c")
        assert counting.connections == 2, "a connection idle past the limit is not reused"
    finally:
        await api.close()
        await asyncio.wait_for(counting.all_closed.wait(), 5)
        server.close()
        await server.wait_closed()


def test_a_configuration_without_a_current_context_is_refused() -> None:
    empty = KubeConfig.from_dict({"clusters": [], "users": [], "contexts": []})
    with pytest.raises(ClientConfigError, match="context"):
        current_context(empty)

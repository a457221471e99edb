"""A minimal asyncio HTTP endpoint for /metrics, /healthz and /readyz.

Both components need only these three GET routes, so a few lines over
``asyncio.start_server`` keep them in the component's event loop without an HTTP
framework or a metrics thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from space_dra.logs import log_event
from space_dra.metrics import exposition

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
"""Returns None when healthy, else the reason it is not."""


class HealthServer:
    def __init__(self, host: str, port: int, healthz: Check, readyz: Check) -> None:
        self.host = host
        self.port = port
        self._routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, "text/plain; version=0.0.4; charset=utf-8", exposition()),
            "/healthz": lambda: self._check(healthz),
            "/readyz": lambda: self._check(readyz),
        }
        self._server: asyncio.Server | None = None

    @staticmethod
    def _check(check: Check) -> tuple[int, str, bytes]:
        problem = check()
        if problem is None:
            return 200, "text/plain", b"ok\n"
        return 503, "text/plain", f"{problem}\n".encode()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log_event(log, logging.INFO, "http_listening", address=f"{self.host}:{self.port}")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            route = self._routes.get(path) if parts and parts[0] == "GET" else None
            status, content_type, body = route() if route else (404, "text/plain", b"not found\n")
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

"""The kubelet plugin process: the namespace driver on the kubelet protocol layer.

Adds what only this driver needs around :class:`~space_dra.kubeletplugin.KubeletPlugin`:
recovering its state before the kubelet can call, the background refresh of tokens
and files, the periodic re-read of prepared claims for their health, and the HTTP
endpoint for metrics and probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from space_dra.httpserver import HealthServer
from space_dra.kube import WatchAPI
from space_dra.kubeletplugin import KubeletPlugin, Options, Serialization
from space_dra.logs import log_event
from space_dra.metrics import REGISTERED
from space_dra.plugin.driver import NamespaceDriver
from space_dra.plugin.options import DriverOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginOptions:
    driver: DriverOptions
    plugins_dir: Path
    registrar_dir: Path
    rolling_update_uid: str | None = None
    http_host: str = "0.0.0.0"  # noqa: S104 - metrics and probes are meant to be scraped
    http_port: int = 8080
    grace_seconds: float = 5.0


def _record_registration(registered: bool, _error: str) -> None:
    REGISTERED.set(1 if registered else 0)


class PluginServer:
    """Owns the driver, the kubelet-facing servers, the refresh task and the HTTP endpoint."""

    def __init__(self, kube: WatchAPI, options: PluginOptions) -> None:
        self.options = options
        self.driver = NamespaceDriver(kube, options.driver)
        self.kubelet = KubeletPlugin(
            self.driver,
            Options(
                driver_name=options.driver.driver_name,
                plugins_dir=options.plugins_dir,
                registrar_dir=options.registrar_dir,
                rolling_update_uid=options.rolling_update_uid,
                serialization=Serialization.PER_CLAIM,
                claim_locks=self.driver.claim_locks,
                on_registration=_record_registration,
                grace_seconds=options.grace_seconds,
            ),
        )
        self.paths = self.kubelet.paths
        # Ready once the kubelet registered this instance: a rolling update waits for it.
        self.http = HealthServer(
            options.http_host, options.http_port, self.kubelet.problem, self.kubelet.not_ready
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.driver.recover()
        await self.kubelet.start()
        self._tasks = [
            asyncio.create_task(self._refresh_loop(), name="refresh"),
            asyncio.create_task(self.driver.monitor.run(), name="claim-monitor"),
        ]
        if self.options.driver.mint_ahead:
            self._tasks.append(asyncio.create_task(self.driver.ahead.run(), name="mint-ahead"))
        await self.http.start()

    async def _refresh_loop(self) -> None:
        # Wake at least every 30 s so files lost behind our back are re-created soon.
        # An unexpected error must not end the loop for good: every token on the node
        # would then expire unrefreshed.
        while True:
            seen = self.driver.health_changes.version
            try:
                next_due = await self.driver.refresh_due()
            except Exception:
                log.exception("refresh_loop_failed")
                next_due = 5.0
            # New claims wake it (their checks are scheduled from then on). The floor only
            # guards against a hot loop: failed requests back off.
            await self.driver.health_changes.wait(min(max(next_due, 0.05), 30.0), since=seen)

    async def stop(self) -> None:
        log_event(log, logging.INFO, "plugin_stopping")
        await self.kubelet.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.driver.ahead.stop()
        await self.http.stop()
        log_event(log, logging.INFO, "plugin_stopped")

"""Turn parsed command-line arguments into a running controller."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from typing import Any

from space_dra.contract import CONTROLLER_NAME
from space_dra.controller.leader import LeaderElector, LeaseOptions
from space_dra.controller.options import ControllerOptions, OptionsError
from space_dra.controller.ownership import Signer, load_signer
from space_dra.controller.provision import ProvisionerOptions
from space_dra.controller.reconciler import Reconciler, ReconcilerOptions
from space_dra.controller.slices import PoolSpec, SlicePublisher, SlotTaints
from space_dra.controller.warm import WarmOptions
from space_dra.httpserver import HealthServer
from space_dra.kube import ControllerAPI, KubeError, connect
from space_dra.logs import log_event

log = logging.getLogger(__name__)

FIELD_MANAGER = CONTROLLER_NAME


def default_pod_api_server(kube: ControllerAPI) -> str:
    """The URL pods use in-cluster; outside a cluster, the one this client uses."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if host:
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return kube.server


class Controller:
    """The controller process: health endpoint, leader election, one term after another."""

    def __init__(self, kube: ControllerAPI, options: ControllerOptions) -> None:
        self.kube = kube
        self.options = options
        self.server = options.pod_api_server or default_pod_api_server(kube)
        self.elector = LeaderElector(
            kube,
            LeaseOptions(
                namespace=options.namespace, name=options.lease_name, identity=options.identity
            ),
        )
        self.reconciler: Reconciler | None = None
        self.publisher: SlicePublisher | None = None
        self.http = HealthServer(options.http_address, options.http_port, lambda: None, self.readyz)

    def readyz(self) -> str | None:
        # A standby replica is ready; the leader once its caches are synced and the
        # pool is published (before that, no claim can be allocated a device of ours).
        if self.options.leader_elect and not self.elector.leading:
            return None
        if self.reconciler is None or not self.reconciler.synced:
            return "caches not synced yet"
        if self.publisher is None or not self.publisher.published:
            return "pool not published yet"
        return None

    async def signer_when_reachable(self) -> Signer:
        delay = 1.0
        while True:
            try:
                return await load_signer(
                    self.kube, self.options.namespace, self.options.ownership_secret
                )
            except KubeError as exc:
                log_event(
                    log,
                    logging.WARNING,
                    "ownership_key_unavailable",
                    error=str(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def components(self, signer: Signer) -> tuple[Reconciler, SlicePublisher]:
        options = self.options
        provisioning = ProvisionerOptions(
            driver=options.driver,
            plugin_service_account=options.plugin_service_account,
            token_minter_cluster_role=options.token_minter_cluster_role,
            pod_api_server=self.server,
            policy=options.policy,
            dns=options.dns,
        )
        # The reconciler decides which slots are tainted (expired namespaces); the
        # publisher puts the taints on them and finds out whether the cluster keeps them.
        taints = SlotTaints()
        reconciler = Reconciler(
            self.kube,
            signer,
            ReconcilerOptions(
                provisioning=provisioning,
                protected_namespaces=options.protected,
                resync_seconds=options.resync_seconds,
                warm=WarmOptions(
                    size=options.warm_pool_size if options.owner_device_class else 0,
                    pool_size=options.pool_size,
                    device_class=options.owner_device_class,
                    policy=options.policy,
                ),
                workers=options.workers,
            ),
            taints,
        )
        publisher = SlicePublisher(
            self.kube,
            PoolSpec(
                options.driver,
                options.pool_size,
                options.device_attributes,
                options.binding_conditions,
                options.owner_device_class,
            ),
            taints,
        )
        return reconciler, publisher

    async def term(self) -> None:
        """One leadership term: returns when leadership is lost, raises if a part fails."""
        work: list[asyncio.Task[None]] = []
        if self.options.leader_elect:
            await self.elector.acquire()
            work.append(asyncio.create_task(self.elector.keep_leading(), name="lease"))
        # The key is read after winning (a standby's copy could be stale) while the
        # Lease is already being renewed, however long the read takes.
        loading = asyncio.create_task(self.signer_when_reachable(), name="ownership-key")
        done: set[asyncio.Task[Any]] = set()
        try:
            done, _ = await asyncio.wait([loading, *work], return_when=asyncio.FIRST_COMPLETED)
            if loading not in done:
                return  # the Lease was lost before the key could be read
            self.reconciler, self.publisher = self.components(loading.result())
            log_event(
                log,
                logging.INFO,
                "controller_leading",
                driver=self.options.driver,
                pool_size=self.options.pool_size,
                pod_api_server=self.server,
            )
            work += [
                asyncio.create_task(self.reconciler.run(), name="reconciler"),
                asyncio.create_task(self.publisher.run(), name="slices"),
            ]
            done, _ = await asyncio.wait(work, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [loading, *work]:
                task.cancel()
            await asyncio.gather(loading, *work, return_exceptions=True)
            self.reconciler = None
            self.publisher = None
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def lead(self) -> None:
        # Losing the lease (say, while the API server restarts) ends the term's work
        # and the replica stands for election again; caches start fresh, so nothing
        # from the lost term is trusted.
        while True:
            await self.term()
            log_event(log, logging.WARNING, "leadership_term_ended", action="re-entering election")

    async def run(self) -> int:
        await self.http.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        leading = asyncio.create_task(self.lead())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([leading, stopping], return_when=asyncio.FIRST_COMPLETED)
        exit_code = 0
        if leading.done() and not leading.cancelled():
            # A part failed: exit non-zero so the Deployment restarts us clean.
            exit_code = 1
            try:
                leading.result()
            except Exception:
                log.exception("controller_failed")
        leading.cancel()
        stopping.cancel()
        await asyncio.gather(leading, stopping, return_exceptions=True)
        await self.elector.release()
        await self.http.stop()
        log_event(log, logging.INFO, "controller_stopped", exit_code=exit_code)
        return exit_code


async def run(args: argparse.Namespace) -> int:
    try:
        options = ControllerOptions.from_args(args, socket.gethostname())
    except OptionsError as exc:
        raise SystemExit(f"space-dra controller: {exc}") from None
    async with connect(options.kubeconfig, FIELD_MANAGER) as kube:
        return await Controller(kube, options).run()

"""Turn parsed command-line arguments into a running controller."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import socket

from space_dra.controller.leader import LeaderElector, LeaseOptions
from space_dra.controller.ownership import load_signer
from space_dra.controller.provision import Provisioner, ProvisionerOptions
from space_dra.controller.reconciler import Reconciler, ReconcilerOptions
from space_dra.controller.slices import PoolSpec, SlicePublisher
from space_dra.httpserver import HealthServer
from space_dra.kube import LightkubeAPI, connect
from space_dra.logs import log_event

log = logging.getLogger(__name__)

FIELD_MANAGER = "space-dra-controller"
_ATTRIBUTE_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z_][A-Za-z0-9_]{0,31}$")


def parse_attributes(text: str) -> dict[str, str | int | bool]:
    """``profile=standard,tier=2,fast=true`` -> typed device attributes."""
    attributes: dict[str, str | int | bool] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, raw = item.partition("=")
        if not sep or not _ATTRIBUTE_NAME.match(name) or name == "index":
            raise ValueError(
                f"device attribute {item!r}: expected name=value with a C-identifier name "
                "(up to 32 characters, optionally domain-qualified, not 'index')"
            )
        value: str | int | bool = raw
        if raw in ("true", "false"):
            value = raw == "true"
        elif re.fullmatch(r"-?\d{1,18}", raw):
            value = int(raw)
        attributes[name] = value
    return attributes


def default_pod_api_server(kube: LightkubeAPI) -> str:
    """The URL pods use in-cluster; outside a cluster, the one this client uses."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if host:
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return str(kube.config.cluster.server)


async def run(args: argparse.Namespace) -> int:
    if "/" not in args.plugin_service_account:
        raise SystemExit("--plugin-service-account must be <namespace>/<name>")
    attributes = parse_attributes(args.device_attributes)
    async with connect(args.kubeconfig or None, FIELD_MANAGER) as kube:
        server = args.pod_api_server_url or default_pod_api_server(kube)
        protected = frozenset(
            {
                args.namespace,
                *filter(None, (n.strip() for n in args.protected_namespaces.split(","))),
            }
        )
        elector = LeaderElector(
            kube,
            LeaseOptions(
                namespace=args.namespace,
                name=args.lease_name,
                identity=args.identity or socket.gethostname(),
            ),
        )
        reconciler: Reconciler | None = None

        def healthz() -> str | None:
            return None

        def readyz() -> str | None:
            # A standby replica is ready; the leader once its caches are synced.
            leads = not args.leader_elect or elector.leading
            if leads and (reconciler is None or not reconciler.synced):
                return "caches not synced yet"
            return None

        http = HealthServer(args.http_address, args.http_port, healthz, readyz)
        await http.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        async def lead() -> None:
            nonlocal reconciler
            if args.leader_elect:
                await elector.acquire()
            signer = await load_signer(kube, args.namespace, args.ownership_secret)
            provisioner = Provisioner(
                kube,
                ProvisionerOptions(
                    args.driver_name, args.plugin_service_account, args.token_minter_cluster_role
                ),
                signer,
            )
            reconciler = Reconciler(
                kube,
                provisioner,
                ReconcilerOptions(
                    driver=args.driver_name,
                    pod_api_server=server,
                    protected_namespaces=protected,
                    resync_seconds=args.resync_period,
                    workers=args.workers,
                ),
            )
            publisher = SlicePublisher(
                kube,
                PoolSpec(
                    args.driver_name,
                    args.pool_size,
                    attributes,
                    args.binding_conditions,
                    args.owner_device_class,
                ),
            )
            log_event(
                log,
                logging.INFO,
                "controller_leading",
                driver=args.driver_name,
                pool_size=args.pool_size,
                pod_api_server=server,
            )
            work = [asyncio.create_task(reconciler.run()), asyncio.create_task(publisher.run())]
            if args.leader_elect:
                work.append(asyncio.create_task(elector.keep_leading()))
            done, _ = await asyncio.wait(work, return_when=asyncio.FIRST_COMPLETED)
            for task in work:
                task.cancel()
            await asyncio.gather(*work, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]

        leading = asyncio.create_task(lead())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([leading, stopping], return_when=asyncio.FIRST_COMPLETED)
        exit_code = 0
        if leading.done() and not leading.cancelled():
            # Leadership lost or a component failed: exit non-zero so we restart clean.
            exit_code = 1
            with contextlib.suppress(Exception):
                leading.result()
        leading.cancel()
        stopping.cancel()
        await asyncio.gather(leading, stopping, return_exceptions=True)
        await elector.release()
        await http.stop()
        log_event(log, logging.INFO, "controller_stopped", exit_code=exit_code)
        return exit_code

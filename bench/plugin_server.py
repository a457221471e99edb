"""A kubelet plugin process for benchmarks: the real server, the in-memory adapter.

Started by ``bench/plugin_roundtrip.py`` so the plugin runs in its own process
(its RSS and CPU are its own), with N ready claims whose UIDs are derived from
their index: ``uid(i)``. ``--driver twin`` runs the twin driver
(``bench/twin_driver_core.py``) instead of the namespace driver, on the same claims.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from bench.twin_driver import TwinPlugin
from bench.twin_driver_core import DEFAULT_DRIVER_NAME as TWIN_DRIVER_NAME
from bench.twin_driver_core import TwinOptions
from space_dra import kubeletplugin, logs
from space_dra.contract import DEFAULT_DRIVER_NAME, WORKLOAD_SERVICE_ACCOUNT
from space_dra.kube_memory import MemoryKube
from space_dra.plugin.options import DriverOptions
from space_dra.plugin.server import PluginOptions, PluginServer
from tests.support.claims import make_claim, ready_device


def uid(index: int) -> str:
    return f"{index:08x}-0000-4000-8000-000000000000"


DRIVERS = {"space": DEFAULT_DRIVER_NAME, "twin": TWIN_DRIVER_NAME}


def populated(claims: int, driver_name: str = DEFAULT_DRIVER_NAME) -> MemoryKube:
    kube = MemoryKube()
    for index in range(claims):
        namespace = f"ephemeral-ns-{index:05d}"
        kube.service_accounts.add((namespace, WORKLOAD_SERVICE_ACCOUNT))
        kube.put_claim(
            make_claim(
                uid(index),
                name=f"claim-{index}",
                driver=driver_name,
                status_devices=[ready_device("slot-0", namespace)],
            )
        )
    return kube


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True, help="tmpfs, like /var/run")
    parser.add_argument("--state", type=Path, required=True, help="disk, like /var/lib/kubelet")
    parser.add_argument("--claims", type=int, default=100)
    parser.add_argument("--driver", choices=sorted(DRIVERS), default="space")
    args = parser.parse_args()
    logs.configure("text", "warning")
    logging.getLogger("space_dra").setLevel(logging.WARNING)
    root: Path = args.root
    kube = populated(args.claims, DRIVERS[args.driver])
    if args.driver == "twin":
        twin = TwinOptions(
            driver_name=TWIN_DRIVER_NAME,
            cdi_dir=root / "cdi",
            artifact_dir=root / "artifacts",
            checkpoint_path=args.state / "checkpoint.json",
        )
        layer = kubeletplugin.Options(
            driver_name=TWIN_DRIVER_NAME,
            plugins_dir=root / "plugins",
            registrar_dir=root / "registry",
        )
        asyncio.run(kubeletplugin.run_until_signalled(TwinPlugin(kube, twin, layer)))
        return
    options = PluginOptions(
        driver=DriverOptions(
            driver_name=DEFAULT_DRIVER_NAME,
            cdi_dir=root / "cdi",
            artifact_dir=root / "artifacts",
            checkpoint_path=args.state / "checkpoint.json",
            ca_pem=b"-----BEGIN CERTIFICATE-----\nMIIBbench\n-----END CERTIFICATE-----\n",
        ),
        plugins_dir=root / "plugins",
        registrar_dir=root / "registry",
        http_host="127.0.0.1",
        http_port=0,
    )
    asyncio.run(kubeletplugin.run_until_signalled(PluginServer(kube, options)))


if __name__ == "__main__":
    main()

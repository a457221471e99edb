"""Run the twin driver (``bench/twin_driver_core.py``) as a kubelet plugin on a node.

    python -m bench.twin_driver --node-name "$NODE_NAME"      # every flag: --help

Like the Go baseline (``bench/gobaseline``), it publishes its node's pool itself (one
ResourceSlice, ``--devices`` devices ``slot-<i>``, pool named after the node), so a
DeviceClass selecting ``twin.bench.space.example.com`` gives claims to it; the kubelet
protocol layer does not publish. Its ServiceAccount needs ``get`` on resourceclaims and
``create``/``patch`` on resourceslices, and the pod the kubelet's ``plugins`` and
``plugins_registry`` directories, ``/var/run/cdi`` and the artifact directory.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.resource_v1 import Device, ResourcePool, ResourceSliceSpec
from lightkube.resources.resource_v1 import ResourceSlice

from bench.twin_driver_core import DEFAULT_DRIVER_NAME, TwinDriver, TwinOptions
from space_dra import kubeletplugin as kp
from space_dra import logs
from space_dra.kube import KubeAPI, connect

log = logging.getLogger("bench.twin_driver")

# The most devices one ResourceSlice may list (resource.k8s.io/v1).
MAX_DEVICES = 128


def node_pool(driver_name: str, node: str, devices: int) -> ResourceSlice:
    """This node's pool, as the Go baseline publishes it: ``slot-0`` ... ``slot-<n-1>``."""
    return ResourceSlice(
        metadata=ObjectMeta(name=f"{node}-{driver_name}"),
        spec=ResourceSliceSpec(
            driver=driver_name,
            nodeName=node,
            pool=ResourcePool(name=node, generation=1, resourceSliceCount=1),
            devices=[Device(name=f"slot-{index}") for index in range(devices)],
        ),
    )


class TwinPlugin:
    """The twin driver served to the kubelet: recover, serve, then publish the node's pool.

    The layer does not publish ResourceSlices, so ``publish`` (if given) does, once the
    kubelet can reach the driver, as the Go helper's ``PublishResources`` after ``Start``.
    """

    def __init__(
        self,
        kube: KubeAPI,
        options: TwinOptions,
        plugin_options: kp.Options,
        publish: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.driver = TwinDriver(kube, options)
        self.kubelet = kp.KubeletPlugin(self.driver, plugin_options)
        self.publish = publish

    async def start(self) -> None:
        self.driver.recover()
        await self.kubelet.start()
        if self.publish is not None:
            await self.publish()

    async def stop(self) -> None:
        await self.kubelet.stop()


# flag, environment variable, default, help; the same variables as space-dra's plugin.
FLAGS = (
    ("--driver-name", "DRIVER_NAME", DEFAULT_DRIVER_NAME, "DRA driver name"),
    ("--node-name", "NODE_NAME", "", "this node's name: its pool and slice are named after it"),
    ("--devices", "TWIN_DEVICES", "64", f"devices in the node's pool (0 to {MAX_DEVICES})"),
    ("--kubeconfig", "KUBECONFIG", "", "kubeconfig file; empty means in-cluster"),
    ("--plugins-dir", "SPACE_DRA_PLUGINS_DIR", str(kp.KUBELET_PLUGINS_DIR),
     "kubelet plugins directory; the DRA socket goes in <dir>/<driver>/"),
    ("--registrar-dir", "SPACE_DRA_REGISTRAR_DIR", str(kp.KUBELET_REGISTRY_DIR),
     "kubelet plugin registration directory"),
    ("--cdi-dir", "SPACE_DRA_CDI_DIR", "/var/run/cdi", "CDI spec directory"),
    ("--artifact-dir", "SPACE_DRA_ARTIFACT_DIR", "/var/run/twin-artifacts",
     "host directory for the per-claim files"),
    ("--checkpoint", "SPACE_DRA_CHECKPOINT", "",
     "checkpoint file (empty: <plugins-dir>/<driver>/checkpoint.json)"),
    ("--server", "TWIN_SERVER", "https://kubernetes.default.svc",
     "URL written into <P>_CLUSTER and the kubeconfig"),
    ("--rolling-update-uid", "POD_UID", "",
     "pod UID; when set, socket names include it (DaemonSet rolling updates)"),
    ("--log-format", "SPACE_DRA_LOG_FORMAT", "text", "log encoding"),
    ("--log-level", "SPACE_DRA_LOG_LEVEL", "info", "log level"),
)  # fmt: skip
CHOICES = {"--log-format": ("text", "json"), "--log-level": ("debug", "info", "warning", "error")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.twin_driver",
        description="The twin DRA kubelet plugin: the namespace driver's node-side work, "
        "without namespaces (for the comparison with a Go driver on the upstream helper).",
    )
    for flag, env, default, text in FLAGS:
        parser.add_argument(
            flag,
            default=os.environ.get(env, default),
            choices=CHOICES.get(flag),
            help=f"{text} [env {env}; default {default or 'none'}]",
        )
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags, checked: publishing a pool needs the node's name."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.devices = int(args.devices)
    except ValueError:
        parser.error(f"--devices must be a whole number, got {args.devices!r}")
    if not 0 <= args.devices <= MAX_DEVICES:
        parser.error(f"--devices must be between 0 and {MAX_DEVICES}, got {args.devices}")
    if args.devices and not args.node_name:
        parser.error("--node-name (or NODE_NAME) is required to publish the node's pool")
    return args


def options_from(args: argparse.Namespace) -> tuple[TwinOptions, kp.Options]:
    plugins_dir = Path(args.plugins_dir)
    twin = TwinOptions(
        driver_name=args.driver_name,
        cdi_dir=Path(args.cdi_dir),
        artifact_dir=Path(args.artifact_dir),
        checkpoint_path=Path(args.checkpoint)
        if args.checkpoint
        else plugins_dir / args.driver_name / "checkpoint.json",
        server=args.server,
    )
    plugin = kp.Options(
        driver_name=args.driver_name,
        plugins_dir=plugins_dir,
        registrar_dir=Path(args.registrar_dir),
        rolling_update_uid=args.rolling_update_uid or None,
    )
    return twin, plugin


async def run(args: argparse.Namespace) -> None:
    twin, plugin = options_from(args)
    async with connect(args.kubeconfig or None, "twin-driver") as kube:
        logs.log_event(
            log, logging.INFO, "twin_starting", driver=twin.driver_name, node=args.node_name
        )

        async def publish() -> None:
            if args.devices:
                await kube.apply(node_pool(twin.driver_name, args.node_name, args.devices))

        await kp.run_until_signalled(TwinPlugin(kube, twin, plugin, publish))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    logs.configure(args.log_format, args.log_level)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

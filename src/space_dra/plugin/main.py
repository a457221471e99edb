"""Turn parsed command-line arguments into a running kubelet plugin."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from space_dra.config import load_policy_file
from space_dra.kube import connect
from space_dra.kube_config import cluster_ca
from space_dra.kubeletplugin import run_until_signalled
from space_dra.logs import log_event
from space_dra.plugin.options import DriverOptions
from space_dra.plugin.server import PluginOptions, PluginServer

log = logging.getLogger(__name__)

FIELD_MANAGER = "space-dra-kubelet-plugin"


def _read_ca(path: str) -> bytes:
    return Path(path).read_bytes()


async def run(args: argparse.Namespace) -> int:
    try:
        policy = load_policy_file(args.policy_file)
    except ValueError as exc:
        raise SystemExit(f"--policy-file: {exc}") from None
    async with connect(args.kubeconfig or None, FIELD_MANAGER) as kube:
        ca_pem = _read_ca(args.ca_file) if args.ca_file else cluster_ca(kube.config)
        plugins_dir = Path(args.plugins_dir)
        options = PluginOptions(
            driver=DriverOptions(
                driver_name=args.driver_name,
                cdi_dir=Path(args.cdi_dir),
                artifact_dir=Path(args.artifact_dir),
                checkpoint_path=Path(args.checkpoint)
                if args.checkpoint
                else plugins_dir / args.driver_name / "checkpoint.json",
                ca_pem=ca_pem,
                node_name=args.node_name,
                policy=policy,
                server_override=args.api_server_url or None,
                wait_timeout=args.wait_timeout,
                default_token_seconds=args.token_lifetime,
                refresh_fraction=args.token_refresh_fraction,
                health_check_interval=args.health_check_interval,
                credential_check_interval=args.credential_check_interval,
                health_failure_threshold=args.health_failure_threshold,
                mint_ahead=args.mint_ahead,
            ),
            plugins_dir=plugins_dir,
            registrar_dir=Path(args.registrar_dir),
            rolling_update_uid=args.rolling_update_uid or None,
            http_host=args.http_address,
            http_port=args.http_port,
        )
        log_event(
            log,
            logging.INFO,
            "plugin_starting",
            driver=args.driver_name,
            node=args.node_name,
            server=str(kube.config.cluster.server),
        )
        await run_until_signalled(PluginServer(kube, options))
    return 0

"""Command line: ``space-dra {kubelet-plugin,controller,version}``.

Every flag also reads an environment variable (shown in ``--help``), which is how
the Helm chart configures the pods; both are checked alike (:mod:`space_dra.flags`).
A component that cannot start says why in one log line, in the format asked for,
and exits non-zero: 2 for a bad flag or variable, 1 for anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from space_dra import __version__, logs
from space_dra.flags import (
    Parser,
    UsageError,
    add_cleanup,
    add_common,
    add_flag,
    at_least_one,
    boolean,
    fraction,
    given_value,
    positive,
)

log = logging.getLogger("space_dra")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="space-dra",
        description=(
            "A DRA driver whose device is a freshly provisioned namespace with scoped credentials."
        ),
    )
    parser.add_argument("--version", action="version", version=f"space-dra {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plugin = commands.add_parser(
        "kubelet-plugin",
        help="run the node plugin (DaemonSet): prepares claims for the kubelet over gRPC",
        description=(
            "Serve the kubelet DRA protocol on unix sockets; write CDI specs and credentials."
        ),
    )
    add_common(plugin)
    add_flag(
        plugin,
        "--node-name",
        "NODE_NAME",
        "",
        "this node's name: minted tokens are bound to this Node (required in a cluster)",
    )
    add_flag(
        plugin,
        "--plugins-dir",
        "SPACE_DRA_PLUGINS_DIR",
        "/var/lib/kubelet/plugins",
        "kubelet plugins directory; the DRA socket goes in <dir>/<driver>/",
    )
    add_flag(
        plugin,
        "--registrar-dir",
        "SPACE_DRA_REGISTRAR_DIR",
        "/var/lib/kubelet/plugins_registry",
        "kubelet plugin registration directory",
    )
    add_flag(
        plugin,
        "--cdi-dir",
        "SPACE_DRA_CDI_DIR",
        "/var/run/cdi",
        "directory containerd reads CDI specs from",
    )
    add_flag(
        plugin,
        "--artifact-dir",
        "SPACE_DRA_ARTIFACT_DIR",
        "/var/run/claim-artifacts",
        "host directory for per-claim kubeconfig, token and CA files",
    )
    add_flag(
        plugin,
        "--checkpoint",
        "SPACE_DRA_CHECKPOINT",
        "",
        "checkpoint file",
        shown="<plugins-dir>/<driver>/checkpoint.json",
    )
    add_flag(
        plugin,
        "--api-server-url",
        "SPACE_DRA_API_SERVER_URL",
        "",
        "API server URL written into pods' kubeconfigs, replacing the one the controller recorded",
    )
    add_flag(
        plugin,
        "--ca-file",
        "SPACE_DRA_CA_FILE",
        "",
        "CA bundle written into pods' kubeconfigs",
        shown="the CA this plugin's client trusts",
    )
    add_flag(
        plugin,
        "--token-lifetime",
        "SPACE_DRA_TOKEN_LIFETIME",
        "3600",
        "token lifetime in seconds when no NamespaceConfig sets one",
        int,
    )
    add_flag(
        plugin,
        "--token-refresh-fraction",
        "SPACE_DRA_TOKEN_REFRESH_FRACTION",
        "0.8",
        "refresh a token once this fraction of its lifetime has passed (0 < f < 1)",
        fraction,
    )
    add_flag(
        plugin,
        "--wait-timeout",
        "SPACE_DRA_WAIT_TIMEOUT",
        "20",
        "seconds prepare waits for the controller to make a namespace ready (< the kubelet's 45)",
        float,
    )
    add_flag(
        plugin,
        "--health-check-interval",
        "SPACE_DRA_HEALTH_CHECK_INTERVAL",
        "10",
        "seconds between reads of each prepared claim for its device health (jittered +-20 %%)",
        positive,
    )
    add_flag(
        plugin,
        "--credential-check-interval",
        "SPACE_DRA_CREDENTIAL_CHECK_INTERVAL",
        "60",
        "re-mint each prepared device's token at least every this many seconds (jittered), "
        "which is how a deleted namespace or a revoked minting RoleBinding is noticed",
        positive,
    )
    add_flag(
        plugin,
        "--health-failure-threshold",
        "SPACE_DRA_HEALTH_FAILURE_THRESHOLD",
        "3",
        "failed token requests (or claim reads) in a row before a device is reported "
        "Unhealthy (refused) or Unknown (API server unreachable)",
        at_least_one,
    )
    add_flag(
        plugin,
        "--mint-ahead",
        "SPACE_DRA_MINT_AHEAD",
        "true",
        "mint a claim's token as soon as the controller lists this node on its namespace, "
        "before the kubelet asks (needs list and watch on namespaces; false: mint in prepare)",
        boolean,
    )
    add_flag(
        plugin,
        "--rolling-update-uid",
        "POD_UID",
        "",
        "pod UID; when set, socket names include it so two plugin pods can overlap during updates",
    )

    controller = commands.add_parser(
        "controller",
        help="run the controller (Deployment): publishes the pool, provisions and deletes "
        "namespaces",
        description=(
            "Publish the namespace pool as ResourceSlices, provision a namespace with scoped "
            "credentials for every allocated device, record it in the claim, garbage-collect."
        ),
    )
    add_common(controller)
    add_flag(
        controller,
        "--namespace",
        "POD_NAMESPACE",
        "space-dra",
        "the controller's own namespace (Lease, ownership key Secret; never deleted)",
    )
    add_flag(controller, "--identity", "POD_NAME", "", "leader-election identity", shown="hostname")
    add_flag(
        controller,
        "--pool-size",
        "SPACE_DRA_POOL_SIZE",
        "32",
        "slot devices in the pool: the most ephemeral namespaces that can exist at once",
        int,
    )
    add_flag(
        controller,
        "--warm-pool-size",
        "SPACE_DRA_WARM_POOL_SIZE",
        "0",
        "namespaces kept ready for the --owner-device-class's default settings (within "
        "--pool-size)",
        int,
    )
    add_flag(
        controller,
        "--device-attributes",
        "SPACE_DRA_DEVICE_ATTRIBUTES",
        "profile=standard",
        "attributes every slot carries for CEL selectors, as name=value,...",
    )
    add_flag(
        controller,
        "--binding-conditions",
        "SPACE_DRA_BINDING_CONDITIONS",
        "off",
        "publish bindingConditions so pods bind only once their namespace is ready (auto: where "
        "the cluster supports them; costs the scheduler's 5 s re-check per pod)",
        choices=("auto", "on", "off"),
    )
    add_flag(
        controller,
        "--owner-device-class",
        "SPACE_DRA_OWNER_DEVICE_CLASS",
        "",
        "DeviceClass made the owner of the ResourceSlices, so deleting it removes them",
    )
    add_flag(
        controller,
        "--pod-api-server-url",
        "SPACE_DRA_POD_API_SERVER_URL",
        "",
        "API server URL recorded for pods",
        shown="https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
    )
    add_flag(
        controller,
        "--plugin-service-account",
        "SPACE_DRA_PLUGIN_SERVICE_ACCOUNT",
        "space-dra/space-dra-kubelet-plugin",
        "<namespace>/<name> of the kubelet plugin's ServiceAccount, allowed to mint tokens "
        "per namespace",
    )
    add_flag(
        controller,
        "--token-minter-cluster-role",
        "SPACE_DRA_TOKEN_MINTER_ROLE",
        "space-dra-token-minter",
        "ClusterRole granting create on serviceaccounts/token for the workload ServiceAccount only",
    )
    add_flag(
        controller,
        "--ownership-secret",
        "SPACE_DRA_OWNERSHIP_SECRET",
        "space-dra-ownership",
        "Secret (in --namespace) holding the key that signs the namespaces this controller creates",
    )
    add_flag(
        controller,
        "--protected-namespaces",
        "SPACE_DRA_PROTECTED_NAMESPACES",
        "",
        "comma-separated namespaces never deleted, besides default, kube-system, kube-public, "
        "kube-node-lease and --namespace",
    )
    add_flag(
        controller,
        "--resync-period",
        "SPACE_DRA_RESYNC_PERIOD",
        "300",
        "seconds between full resyncs and garbage-collection sweeps",
        float,
    )
    add_flag(
        controller,
        "--dns-namespace-selector",
        "SPACE_DRA_DNS_NAMESPACE_SELECTOR",
        "kubernetes.io/metadata.name=kube-system",
        "labels (k=v,...) of the namespace of the cluster DNS pods, the only DNS a deny-all "
        "namespace may use",
    )
    add_flag(
        controller,
        "--dns-pod-selector",
        "SPACE_DRA_DNS_POD_SELECTOR",
        "k8s-app=kube-dns",
        "labels (k=v,...) of the cluster DNS pods",
    )
    add_flag(
        controller,
        "--dns-cidrs",
        "SPACE_DRA_DNS_CIDRS",
        "",
        "comma-separated CIDRs of DNS servers that are not pods (allowed as well)",
    )
    add_flag(
        controller, "--workers", "SPACE_DRA_WORKERS", "32", "claims reconciled concurrently", int
    )
    add_flag(
        controller,
        "--leader-elect",
        "SPACE_DRA_LEADER_ELECT",
        "true",
        "elect a leader through a Lease (needed with more than one replica)",
        boolean,
    )
    add_flag(
        controller,
        "--lease-name",
        "SPACE_DRA_LEASE_NAME",
        "space-dra-controller",
        "Lease name in --namespace",
    )

    cleanup = commands.add_parser(
        "cleanup",
        help="list (and with --delete remove) namespaces the driver left behind",
        description=(
            "After an uninstall: delete the driver's namespaces whose claim is gone, only "
            "those whose ownership signature verifies with the installation's key. A dry run "
            "unless --delete is given. Without --kubeconfig or $KUBECONFIG it uses "
            "~/.kube/config."
        ),
    )
    add_cleanup(cleanup)

    commands.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        chosen = given_value(argv, "--log-format", "SPACE_DRA_LOG_FORMAT")
        logs.configure(chosen if chosen in logs.FORMATS else "text")
        return _start_failed(exc.prog, str(exc), 2, hint=f"{exc.prog} --help")
    if args.command == "version":
        print(f"space-dra {__version__}")
        return 0

    from space_dra import metrics

    logs.configure(args.log_format, args.log_level)
    if args.command != "cleanup":
        metrics.announce_component(args.command, __version__)
    component = f"space-dra {args.command}"
    try:
        return asyncio.run(_run(args))
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        return _start_failed(component, exc.code.removeprefix(f"{component}: "), 2)
    except (OSError, ValueError) as exc:
        # Files, sockets, options, the client configuration (kube_config.ClientConfigError):
        # the message says it all.
        return _start_failed(component, f"{type(exc).__name__}: {exc}", 1)
    except Exception as exc:
        # A bug: the traceback helps, and stays inside the one log line.
        log.error("start_failed", exc_info=exc, extra={"space_fields": {"component": component}})
        return 1


async def _run(args: argparse.Namespace) -> int:
    if args.command == "kubelet-plugin":
        from space_dra.plugin.main import run

        return await run(args)
    if args.command == "cleanup":
        from space_dra.controller.cleanup import run as run_cleanup

        return await run_cleanup(args)
    from space_dra.controller.main import run as run_controller

    return await run_controller(args)


def _start_failed(component: str, error: str, code: int, **fields: str) -> int:
    logs.log_event(log, logging.ERROR, "start_failed", component=component, error=error, **fields)
    return code


if __name__ == "__main__":
    sys.exit(main())

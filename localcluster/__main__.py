"""Command line: ``python -m localcluster {up,down,status,logs,kubectl,helm,prepare,pin,env,
releases,driver-image}``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from localcluster import driverimage, fetch, pin, releases
from localcluster.cluster import DEFAULT_NODES, NODES_ENV, ClusterMismatch, LocalCluster
from localcluster.owner import ClusterBusy
from localcluster.processes import ComponentFailed, log_tail


def _logs(cluster: LocalCluster, component: str | None, lines: int, follow: bool) -> int:
    logs = cluster.layout.logs
    known = list(cluster.components(cluster.bins()))
    names = [component] if component else [n for n in known if (logs / f"{n}.log").exists()]
    if component and component not in known:
        print(f"unknown component {component!r}; one of: {', '.join(known)}", file=sys.stderr)
        return 2
    if follow:
        files = [str(logs / f"{n}.log") for n in names]
        return subprocess.call(["tail", "-n", str(lines), "-F", *files])
    for n in names:
        print(f"==> {logs / f'{n}.log'} <==")
        print(log_tail(logs / f"{n}.log", lines))
    return 0


def _driver_image_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drv = sub.add_parser(
        "driver-image",
        help="build the driver image (if its inputs changed) and import it into the cluster",
    )
    drv.add_argument(
        "--no-import", action="store_true", help="only build the OCI archive (no cluster needed)"
    )
    drv.add_argument(
        "--rebuild", action="store_true", help="discard the cached layers and build them again"
    )
    drv.add_argument(
        "--refresh",
        action="store_true",
        help="update the Debian index and the wheels first (security updates, unpinned deps)",
    )


def _driver_image(cluster: LocalCluster, no_import: bool, rebuild: bool, refresh: bool) -> int:
    t0 = time.monotonic()
    image = driverimage.build_driver_image(cluster.layout, rebuild=rebuild, refresh=refresh)
    built = time.monotonic() - t0
    imported = False
    if not no_import:
        try:
            imported = driverimage.import_driver_image(image, cluster.layout)
        except RuntimeError as exc:
            print(f"localcluster: {exc}", file=sys.stderr)
            return 1
    mib = 1024 * 1024
    layers = ", ".join(f"{name} {size / mib:.1f}" for name, size in image.layers.items())
    steps = ", ".join(f"{name} {secs:.1f}s" for name, secs in image.timings.items())
    fetch.say(f"{image.reference} {image.digest}")
    fetch.say(f"archive {image.archive} ({image.size / mib:.1f} MiB: {layers})")
    state = "imported" if imported else "not imported" if no_import else "already in containerd"
    fetch.say(f"built in {built:.1f}s ({steps}); {state}; total {time.monotonic() - t0:.1f}s")
    print(image.reference)
    return 0


def _release_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubernetes-version",
        metavar="VERSION",
        help=f"Kubernetes release: 1.37 (newest supported patch) or 1.37.2; one of "
        f"{', '.join(releases.SUPPORTED)} (default: ${releases.VERSION_ENV}, else what the state "
        f"dir was made with, else {releases.DEFAULT})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser(
        "up", help="build what is missing, start the cluster, wait until it is Ready"
    )
    _release_option(up)
    up.add_argument(
        "--nodes",
        type=int,
        help=f"how many nodes (default: ${NODES_ENV}, else what the running cluster has, else "
        f"{DEFAULT_NODES}); a running cluster gains or loses nodes to match",
    )
    down = sub.add_parser("down", help="stop everything up started and clean the host")
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete .cluster/ (etcd data, certs, images) and /var/lib/kubelet",
    )
    sub.add_parser("status", help="which components run")
    logs = sub.add_parser("logs", help="print (or follow) component logs")
    logs.add_argument(
        "component", nargs="?", help="e.g. kubelet, or kubelet@<node> for a further node"
    )
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true")
    kubectl = sub.add_parser("kubectl", help="kubectl with the cluster's kubeconfig")
    kubectl.add_argument("args", nargs=argparse.REMAINDER)
    helm = sub.add_parser("helm", help="helm with the cluster's kubeconfig")
    helm.add_argument("args", nargs=argparse.REMAINDER)
    prepare = sub.add_parser("prepare", help="only fetch and build the binaries into the cache")
    _release_option(prepare)
    prepare.add_argument(
        "--all-releases", action="store_true", help="build every supported Kubernetes release"
    )
    sub.add_parser("releases", help="list the supported Kubernetes releases")
    sub.add_parser("pin", help="rewrite the Go modules from localcluster/versions.py")
    sub.add_parser("env", help="print shell exports for KUBECONFIG and PATH")
    _driver_image_parser(sub)
    return parser


def _up(cluster: LocalCluster) -> int:
    try:
        cluster.up()
    except (ClusterMismatch, ClusterBusy) as exc:
        print(f"localcluster: {exc}", file=sys.stderr)
        return 2
    except ComponentFailed as exc:
        print(f"localcluster: FAILED: {exc}", file=sys.stderr)
        print(
            "localcluster: inspect with `python -m localcluster logs <component>`",
            file=sys.stderr,
        )
        return 1
    return 0


def _prepare(cluster: LocalCluster, all_releases: bool) -> int:
    for release in releases.all_releases() if all_releases else [cluster.release]:
        t0 = time.monotonic()
        fetch.ensure_all(cluster.layout, release)
        fetch.pause_binary(cluster.layout)
        fetch.say(
            f"binaries for Kubernetes {release.version} ready in {time.monotonic() - t0:.0f}s"
        )
    return 0


def _print_lines(lines: list[str]) -> int:
    for line in lines:
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cluster = LocalCluster.default(
            kubernetes=getattr(args, "kubernetes_version", None), nodes=getattr(args, "nodes", None)
        )
    except ValueError as exc:  # an unsupported release or node count
        print(f"localcluster: {exc}", file=sys.stderr)
        return 2
    if args.cmd in ("kubectl", "helm"):
        h = cluster.handle()
        exe = h.kubectl_path if args.cmd == "kubectl" else h.helm_path
        os.execve(str(exe), [str(exe), "--kubeconfig", str(h.kubeconfig), *args.args], h.env())
    if args.cmd == "down":
        try:
            notes = cluster.down(purge=args.purge)
        except ClusterBusy as exc:
            print(f"localcluster: {exc}", file=sys.stderr)
            return 2
        for note in [*notes, "cluster down"]:
            fetch.say(note)
        return 0
    if args.cmd == "pin":
        pin.pin()
        return 0
    if args.cmd == "env":
        h = cluster.handle()
        return _print_lines(
            [f"export KUBECONFIG={h.kubeconfig}", f"export PATH={h.kubectl_path.parent}:$PATH"]
        )
    commands = {
        "up": lambda: _up(cluster),
        "status": lambda: _print_lines([f"{n:32} {s}" for n, s in cluster.status().items()]),
        "logs": lambda: _logs(cluster, args.component, args.lines, args.follow),
        "prepare": lambda: _prepare(cluster, args.all_releases),
        "releases": lambda: _print_lines(
            [f"{v}{' (default)' if v == releases.DEFAULT else ''}" for v in releases.SUPPORTED]
        ),
        "driver-image": lambda: _driver_image(cluster, args.no_import, args.rebuild, args.refresh),
    }
    return commands[args.cmd]()


if __name__ == "__main__":
    sys.exit(main())

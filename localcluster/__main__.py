"""Command line: ``python -m localcluster {up,down,status,logs,kubectl,helm,prepare,pin,env,
driver-image}``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from localcluster import driverimage, fetch, pin
from localcluster.cluster import ORDER, LocalCluster
from localcluster.processes import ComponentFailed, log_tail


def _logs(cluster: LocalCluster, component: str | None, lines: int, follow: bool) -> int:
    logs = cluster.layout.logs
    names = [component] if component else [n for n in ORDER if (logs / f"{n}.log").exists()]
    if component and component not in ORDER:
        print(f"unknown component {component!r}; one of: {', '.join(ORDER)}", file=sys.stderr)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="build what is missing, start the cluster, wait until it is Ready")
    down = sub.add_parser("down", help="stop everything up started and clean the host")
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete .cluster/ (etcd data, certs, images) and /var/lib/kubelet",
    )
    sub.add_parser("status", help="which components run")
    logs = sub.add_parser("logs", help="print (or follow) component logs")
    logs.add_argument("component", nargs="?", help=f"one of {', '.join(ORDER)}")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true")
    kubectl = sub.add_parser("kubectl", help="kubectl with the cluster's kubeconfig")
    kubectl.add_argument("args", nargs=argparse.REMAINDER)
    helm = sub.add_parser("helm", help="helm with the cluster's kubeconfig")
    helm.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("prepare", help="only fetch and build the binaries into the cache")
    sub.add_parser("pin", help="rewrite the Go modules from localcluster/versions.py")
    sub.add_parser("env", help="print shell exports for KUBECONFIG and PATH")
    _driver_image_parser(sub)
    args = parser.parse_args(argv)

    cluster = LocalCluster.default()
    if args.cmd == "up":
        try:
            cluster.up()
        except ComponentFailed as exc:
            print(f"localcluster: FAILED: {exc}", file=sys.stderr)
            print(
                "localcluster: inspect with `python -m localcluster logs <component>`",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.cmd == "down":
        for note in cluster.down(purge=args.purge):
            fetch.say(note)
        fetch.say("cluster down")
        return 0
    if args.cmd == "status":
        for name, state in cluster.status().items():
            print(f"{name:24} {state}")
        return 0
    if args.cmd == "logs":
        return _logs(cluster, args.component, args.lines, args.follow)
    if args.cmd in ("kubectl", "helm"):
        h = cluster.handle()
        exe = h.kubectl_path if args.cmd == "kubectl" else h.helm_path
        os.execve(str(exe), [str(exe), "--kubeconfig", str(h.kubeconfig), *args.args], h.env())
    if args.cmd == "prepare":
        t0 = time.monotonic()
        fetch.ensure_all(cluster.layout)
        fetch.pause_binary(cluster.layout)
        fetch.say(f"binaries ready in {time.monotonic() - t0:.0f}s")
        return 0
    if args.cmd == "pin":
        pin.pin()
        return 0
    if args.cmd == "driver-image":
        return _driver_image(cluster, args.no_import, args.rebuild, args.refresh)
    if args.cmd == "env":
        h = cluster.handle()
        print(f"export KUBECONFIG={h.kubeconfig}")
        print(f"export PATH={h.kubectl_path.parent}:$PATH")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

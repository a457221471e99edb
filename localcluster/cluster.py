"""Bring the cluster up and down: the order, the waits, and converging to the requested shape.

A cluster is a Kubernetes release (``releases.py``) and a node count (``nodes.py``). Both are
recorded in ``.cluster/cluster.json`` by ``up``; a later ``up`` without an explicit choice keeps
them, an explicit node count adds or removes nodes, and an explicit other release is refused while
the state dir holds the old release's etcd data (``down --purge`` first).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from localcluster import (
    components,
    configs,
    fetch,
    hostnet,
    images,
    mounts,
    nodens,
    owner,
    releases,
    versions,
)
from localcluster import layout as paths
from localcluster.client import ClusterHandle
from localcluster.components import ORDER
from localcluster.layout import Layout
from localcluster.nodes import MAX_NODES, NODE_COMPONENTS, Node, make_nodes
from localcluster.processes import Component, ComponentFailed, wait_until
from localcluster.releases import Release

__all__ = ["ORDER", "ClusterMismatch", "LocalCluster", "node_name"]

NODES_ENV = "SPACE_DRA_NODES"
# Two nodes keep `make test` (with the multi-node suite) inside CI's hour on a 2-core machine.
DEFAULT_NODES = 2


class ClusterMismatch(RuntimeError):
    """The state dir belongs to another release than the one asked for."""


def node_name() -> str:
    return socket.gethostname().split(".")[0].lower()


def _epoch(timestamp: str) -> float:
    """RFC 3339 UTC timestamp (as the API server writes them) to epoch seconds; 0 if absent."""
    if not timestamp:
        return 0.0
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _recorded(lay: Layout) -> dict[str, object]:
    try:
        data = json.loads(lay.spec_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _node_count(value: str | int) -> int:
    try:
        count = int(value)
    except ValueError:
        raise ValueError(
            f"the node count must be a number from 1 to {MAX_NODES}, not {value!r}"
        ) from None
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"the node count must be from 1 to {MAX_NODES}, not {count}")
    return count


@dataclass
class LocalCluster:
    layout: Layout
    release: Release
    node_count: int
    # Whether release/node_count were asked for (flag or environment) or only inherited.
    explicit_release: bool = False
    explicit_nodes: bool = False

    @classmethod
    def default(cls, kubernetes: str | None = None, nodes: int | str | None = None) -> LocalCluster:
        """The cluster as asked for (arguments, then ``$SPACE_DRA_K8S_VERSION`` and
        ``$SPACE_DRA_NODES``), else as the state dir records it, else the defaults."""
        lay = Layout.default()
        recorded = _recorded(lay)
        wanted_release = kubernetes or releases.requested()
        wanted_nodes = nodes if nodes is not None else (os.environ.get(NODES_ENV) or None)
        if wanted_release:
            release = releases.resolve(wanted_release)
        elif isinstance(recorded.get("kubernetes"), str):
            release = releases.resolve(str(recorded["kubernetes"]))
        else:
            release = releases.Release(releases.DEFAULT)
        if wanted_nodes is not None:
            count = _node_count(wanted_nodes)
        elif isinstance(recorded.get("nodes"), int):
            count = _node_count(int(recorded["nodes"]))  # type: ignore[call-overload]
        else:
            count = DEFAULT_NODES
        return cls(lay, release, count, bool(wanted_release), wanted_nodes is not None)

    @property
    def nodes(self) -> list[Node]:
        return make_nodes(node_name(), self.node_count, self.layout.state)

    def _recorded_nodes(self) -> list[Node]:
        """Every node the state dir knows of (more than requested when scaling down)."""
        count = _recorded(self.layout).get("nodes")
        known = count if isinstance(count, int) and 1 <= count <= MAX_NODES else 1
        on_disk = {p.name for p in (self.layout.state / "nodes").glob("*") if p.is_dir()}
        all_nodes = make_nodes(node_name(), MAX_NODES, self.layout.state)
        return [
            n
            for n in all_nodes
            if n.index <= max(known, self.node_count)
            or n.name in on_disk
            or (n.netns is not None and nodens.netns_exists(n.netns))
        ]

    def bins(self) -> fetch.Binaries:
        return fetch.binaries(self.layout, self.release)

    def components(
        self, bins: fetch.Binaries, nodes: list[Node] | None = None
    ) -> dict[str, Component]:
        comps = components.control_plane(self.layout, bins, self.release)
        for node in nodes if nodes is not None else self.nodes:
            for comp in components.node_components(node, self.layout, bins).values():
                comps[comp.name] = comp
        return comps

    def handle(self) -> ClusterHandle:
        lay = self.layout
        nodes = self.nodes
        return ClusterHandle(
            kubeconfig=lay.kubeconfig,
            kubectl_path=lay.bin / "kubectl",
            helm_path=lay.bin / "helm",
            node_name=nodes[0].name,
            node_ip=versions.NODE_IP,
            api_server=configs.apiserver_url(),
            state_dir=lay.state,
            testbox_image=versions.testbox_image(self.release),
            pause_image=versions.PAUSE_IMAGE,
            kubernetes_version=self.release.version,
            nodes=tuple(nodes),
        )

    def _link_bins(self, bins: fetch.Binaries) -> None:
        self.layout.bin.mkdir(parents=True, exist_ok=True)
        for name, target in {
            "kubectl": bins.kubectl,
            "helm": bins.helm,
            "ctr": bins.ctr,
            "kube-proxy": bins.kube("kube-proxy"),
        }.items():
            link = self.layout.bin / name
            if link.is_symlink() and link.readlink() == target:
                continue
            link.unlink(missing_ok=True)
            link.symlink_to(target)

    def _check_release(self) -> None:
        recorded = _recorded(self.layout).get("kubernetes")
        has_data = self.layout.etcd_data.is_dir() and any(self.layout.etcd_data.iterdir())
        if has_data and isinstance(recorded, str) and recorded != self.release.version:
            raise ClusterMismatch(
                f"{self.layout.state} holds a Kubernetes {recorded} cluster; to run "
                f"{self.release.version} start from fresh state: `python -m localcluster down "
                f"--purge`, then `up --kubernetes-version {self.release.version}` (or run without "
                f"--kubernetes-version/${releases.VERSION_ENV} to keep {recorded})"
            )

    # --- up ---------------------------------------------------------------------------------------
    def up(self) -> ClusterHandle:
        if os.geteuid() != 0:
            raise RuntimeError("the local cluster needs root (containers, mounts, iptables)")
        self._check_release()
        t0 = time.monotonic()
        lay = self.layout
        owner.claim(lay.state)
        bins = fetch.ensure_all(lay, self.release)
        pause = fetch.pause_binary(lay)
        if (lay.pki / "ca.crt").exists() and lay.run.exists():
            known = self._recorded_nodes()
            if not any(c.running() for c in self.components(bins, known).values()):
                # Left behind by a run that ended without `down` (e.g. the session was killed):
                # clear stale mounts, shims, sockets and network state before starting again.
                for note in self.down():
                    fetch.say(f"stale state: {note}")
        removed = [n for n in self._recorded_nodes() if n.index > self.node_count]
        nodes = self.nodes
        for d in (lay.state, lay.logs, lay.pids, lay.config, lay.run, lay.bin, paths.KUBELET_ROOT):
            d.mkdir(parents=True, exist_ok=True)
        for d in paths.CDI_SPEC_DIRS:
            d.mkdir(parents=True, exist_ok=True)
        hostnet.prepare(lay.host_state)
        components.write_pki(lay, nodes)
        components.write_configs(lay, nodes, bins, self.release)
        for node in nodes:
            node.config.mkdir(parents=True, exist_ok=True)
            node.run.mkdir(parents=True, exist_ok=True)
            mounts.ensure_cgroup(node.cgroup_root)
            if not node.first:
                nodens.ensure_network(node)
                nodens.ensure_mounts(node, protect=[lay.state, paths.KUBELET_ROOT])
        self._link_bins(bins)
        lay.spec_file.write_text(
            json.dumps({"kubernetes": self.release.version, "nodes": self.node_count}) + "\n"
        )
        comps = self.components(bins)
        handle = self.handle()

        comps["etcd"].start()
        for node in nodes:
            comps[node.component("containerd")].launch()
        comps["kube-apiserver"].start()
        handle.apply(configs.COREDNS_RBAC)
        for name in ("kube-controller-manager", "kube-scheduler", "coredns"):
            comps[name].launch()
        for node in nodes:
            comps[node.component("kube-proxy")].launch()
        for node in removed:
            self._remove_node(node, bins, handle)
        images_t0 = time.monotonic()
        for node in nodes:
            comps[node.component("containerd")].wait_ready()
            self._import_images(node, bins, pause)
        images_s = time.monotonic() - images_t0
        launched_at = time.time()
        # After a (re)start, a node's Ready condition in etcd may be stale: wait for a heartbeat
        # posted by this kubelet.
        fresh_since = {
            n.name: launched_at - 1 if comps[n.component("kubelet")].launch() else 0.0
            for n in nodes
        }
        for comp in comps.values():
            comp.wait_ready()
        for node in nodes:
            self._wait_node_ready(
                handle, node, comps[node.component("kubelet")], fresh_since[node.name]
            )
        wait_until(
            "the default ServiceAccount in namespace default",
            lambda: (
                handle.kubectl_result(
                    "get", "serviceaccount", "default", "-n", "default"
                ).returncode
                == 0
            ),
            timeout=60,
            log=comps["kube-controller-manager"].log,
            component="kube-controller-manager",
        )
        fetch.say(
            f"cluster up in {time.monotonic() - t0:.1f}s (Kubernetes {self.release.version}, "
            f"{len(nodes)} node{'s' if len(nodes) > 1 else ''}: "
            f"{', '.join(n.name for n in nodes)}; images {images_s:.1f}s); "
            f"export KUBECONFIG={lay.kubeconfig}"
        )
        return handle

    def _import_images(self, node: Node, bins: fetch.Binaries, pause: Path) -> None:
        lay = self.layout
        lay.images.mkdir(parents=True, exist_ok=True)
        testbox = versions.testbox_image(self.release)
        for spec in (
            images.pause_image(pause),
            images.testbox_image(bins.busybox, bins.kubectl, testbox),
        ):
            images.ensure_image(spec, lay.images, bins.ctr, node.containerd_socket)
        images.tag_image(bins.ctr, node.containerd_socket, testbox, versions.BUSYBOX_ALIAS)

    def _wait_node_ready(
        self, handle: ClusterHandle, node: Node, kubelet: Component, since: float
    ) -> None:
        def ready() -> bool:
            res = handle.kubectl_result("get", "node", node.name, "-o", "json")
            if res.returncode != 0:
                return False
            conds = json.loads(res.stdout)["status"].get("conditions", [])
            return any(
                c["type"] == "Ready"
                and c["status"] == "True"
                and _epoch(c.get("lastHeartbeatTime", "")) >= int(since)
                for c in conds
            )

        deadline = time.monotonic() + 120
        while not ready():
            if not kubelet.running():
                raise ComponentFailed(
                    kubelet.name, "exited while waiting for the node", kubelet.log
                )
            if time.monotonic() > deadline:
                raise ComponentFailed(
                    kubelet.name, f"node {node.name} not Ready after 120s", kubelet.log
                )
            time.sleep(0.5)

    # --- one node ---------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    def stop_node(self, name: str) -> list[str]:
        """Take a node away as if the machine died: its kubelet, containers, containerd and
        kube-proxy stop at once (no draining, no graceful pod shutdown). ``up`` brings it back
        with its disk state (kubelet checkpoints, the driver's files) as it was left."""
        node = self.node(name)
        bins = self.bins()
        comps = components.node_components(node, self.layout, bins)
        comps["kubelet"].stop(timeout=5)
        notes = _kill(_processes_of(node))
        for base in ("containerd", "kube-proxy"):
            comps[base].stop(timeout=5)
        return notes

    def _down_node(self, node: Node, bins: fetch.Binaries) -> list[str]:
        notes: list[str] = []
        comps = components.node_components(node, self.layout, bins)
        t0 = time.monotonic()
        if comps["kubelet"].stop():
            notes.append(f"stopped {comps['kubelet'].name} ({time.monotonic() - t0:.1f}s)")
        if comps["containerd"].running():
            removed = images.remove_all_containers(bins.ctr, node.containerd_socket)
            if removed:
                notes.append(f"removed {removed} containers of {node.name}")
        notes += _kill(_processes_of(node))
        for base in ("kube-proxy", "containerd"):
            if comps[base].stop():
                notes.append(f"stopped {comps[base].name}")
        return notes

    def _remove_node(self, node: Node, bins: fetch.Binaries, handle: ClusterHandle) -> None:
        """Scale down: stop a node beyond the requested count and forget it."""
        for note in self._down_node(node, bins):
            fetch.say(note)
        for note in nodens.remove(node):
            fetch.say(note)
        mounts.unmount_all([node.state])
        for ctrl in mounts.cgroup_v1_mounts():
            mounts.remove_empty_dirs(ctrl / node.cgroup_root.lstrip("/"))
        handle.kubectl_result("delete", "node", node.name, "--ignore-not-found")
        shutil.rmtree(node.state, ignore_errors=True)
        fetch.say(f"removed node {node.name}")

    # --- down -------------------------------------------------------------------------------------
    def down(self, purge: bool = False) -> list[str]:
        """Stop what ``up`` started, unmount, undo host network changes. Returns notes."""
        lay = self.layout
        # The machine-wide cleanup below would break another checkout's running cluster.
        owner.check(lay.state, "clean up the local cluster")
        notes: list[str] = []
        bins = self.bins()
        nodes = self._recorded_nodes()
        host_before = hostnet.state_before_up(lay.host_state)
        for node in nodes:
            notes += self._down_node(node, bins)
        notes += _kill(_processes_of(None, lay.state))
        if (lay.pki / "ca.crt").exists():
            comps = components.control_plane(lay, bins, self.release)
            for name in reversed(components.CONTROL_PLANE):
                t0 = time.monotonic()
                # The apiserver can hang in graceful shutdown while clients (watches, exec
                # streams) stay connected; its state is in etcd, so it gets SIGKILL soon.
                grace = 5.0 if name == "kube-apiserver" else 20.0
                if comps[name].stop(timeout=grace):
                    notes.append(f"stopped {name} ({time.monotonic() - t0:.1f}s)")
        for node in nodes[1:]:
            notes += nodens.remove(node)
        for name in nodens.our_netns():
            notes += nodens.remove_netns(name)
        for veth in nodens.our_veths():
            notes += nodens.remove_netns(veth)
        if host_before:
            nodens.release_netns_dir(made_by_us=not host_before.get("netns_dir_mounted_before"))
        unmounted = mounts.unmount_all([paths.KUBELET_ROOT, lay.state])
        if unmounted:
            notes.append(f"unmounted {len(unmounted)} mounts")
        notes += hostnet.cleanup(lay.host_state, bins.kube("kube-proxy"))
        for ctrl in mounts.cgroup_v1_mounts():
            mounts.remove_empty_dirs(ctrl / paths.CGROUP_ROOT.lstrip("/"))
        for d in (
            lay.run,
            lay.pids,
            *(n.run for n in nodes[1:]),
            *(n.run_on_host for n in nodes[1:]),
        ):
            shutil.rmtree(d, ignore_errors=True)
        if purge:
            shutil.rmtree(paths.KUBELET_ROOT, ignore_errors=True)
            shutil.rmtree(lay.state, ignore_errors=True)
            notes.append(f"removed {lay.state} and {paths.KUBELET_ROOT}")
        owner.release(lay.state)
        return notes

    # --- status -----------------------------------------------------------------------------------
    def status(self) -> dict[str, str]:
        if not (self.layout.pki / "ca.crt").exists():
            names = [
                *components.CONTROL_PLANE,
                *(n.component(c) for n in self.nodes for c in NODE_COMPONENTS),
            ]
            return dict.fromkeys(names, "not set up")
        out: dict[str, str] = {}
        for name, comp in self.components(self.bins()).items():
            rec = comp.record()
            out[name] = f"running (pid {rec.pid})" if comp.running() and rec else "stopped"
        return out


def _processes_of(node: Node | None, state: Path | None = None) -> set[int]:
    """Processes in a node's pod cgroups and the shims of its containerd.

    ``node=None``: of every node, i.e. all pod cgroups and every shim serving a containerd socket
    below ``state``.
    """
    pids: set[int] = set()
    sub = paths.CGROUP_ROOT.lstrip("/") + ("" if node is None else f"/{node.name}")
    for ctrl in ("pids", "memory", "cpu"):
        root = Path("/sys/fs/cgroup") / ctrl / sub
        if root.is_dir():
            for procs in root.rglob("cgroup.procs"):
                pids.update(int(p) for p in procs.read_text().split())
    socket_prefix = str(state).encode() + b"/" if state is not None else b"\0"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"containerd-shim-runc-v2"):
            continue
        ours = (
            str(node.containerd_socket).encode() in argv
            if node is not None
            else any(a.startswith(socket_prefix) for a in argv)
        )
        if ours:
            pids.add(int(proc.name))
    return pids


def _kill(pids: set[int]) -> list[str]:
    killed = 0
    for pid in pids:
        try:
            os.kill(pid, 9)
            killed += 1
        except ProcessLookupError:
            pass
    if pids:
        time.sleep(0.5)
    return [f"killed {killed} leftover processes"] if killed else []

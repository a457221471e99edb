"""Isolate a further node like a separate machine: its own network and mount namespace.

Network: ``ip netns add sdra-node<k>`` and a veth pair, ``sdra-node<k>`` on the machine and
``eth0`` in the node, with no subnet between them: the node has its node IP on ``eth0`` and routes
everything to the machine's node IP (``10.89.0.1``, on ``lo``); the machine routes the node IP and
the node's pod CIDR into the veth. So pods on different nodes reach each other, and every node
reaches the API server and CoreDNS, by plain routing (no overlay, no NAT).

Mount: a private copy of the machine's mounts, kept alive by binding its nsfs file to
``.cluster/run/nodes/<name>.mnt``. In it, the node's own directories are mounted over
``/var/lib/kubelet`` and ``/run``, and the copies of the machine's cluster mounts (the first node's
pod volumes, rootfs overlays, netns files, other nodes' namespace files) are unmounted so they do
not pin anything. Propagation is private both ways: nothing the node mounts shows up on the
machine, and nothing mounted on the machine later appears on top of the node's directories.

Everything here is undone by :func:`remove`, and ``down`` also removes what a killed session left
(namespaces and veths are found by their ``sdra-node`` prefix).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path

from localcluster import hostnet, mounts, versions
from localcluster.nodes import Node

NETNS_PREFIX = "sdra-node"
NETNS_DIR = hostnet.NETNS_DIR


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def _netns_exec(node: Node, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert node.netns is not None
    return _run("ip", "netns", "exec", node.netns, *argv, check=check)


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def our_netns() -> list[str]:
    """Every network namespace this tool made (also those of a session that died)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX))


def our_veths() -> list[str]:
    out = _run("ip", "-o", "link", "show", check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith(NETNS_PREFIX)]


def ensure_network(node: Node) -> None:
    """Create the node's network namespace, veth pair and routes (idempotent)."""
    assert node.netns is not None
    veth = node.netns
    if not netns_exists(node.netns):
        _run("ip", "netns", "add", node.netns)
    if _run("ip", "link", "show", veth, check=False).returncode != 0:
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
    _run("ip", "link", "set", veth, "up")
    _netns_exec(node, "ip", "link", "set", "lo", "up")
    _netns_exec(node, "ip", "link", "set", "eth0", "up")
    have = _netns_exec(node, "ip", "-o", "addr", "show", "dev", "eth0").stdout
    if f" {node.ip}/32 " not in have:
        _netns_exec(node, "ip", "addr", "add", f"{node.ip}/32", "dev", "eth0")
    gateway = versions.NODE_IP
    # replace: idempotent, and repairs a route a half-finished earlier run left different.
    _netns_exec(node, "ip", "route", "replace", f"{gateway}/32", "dev", "eth0", "src", node.ip)
    _netns_exec(
        node, "ip", "route", "replace", "default", "via", gateway, "dev", "eth0", "src", node.ip
    )
    # Pods' traffic to other nodes and the API server is routed through the node and the machine
    # (hostnet.prepare recorded the machine's setting; down restores it).
    _netns_exec(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    hostnet.IP_FORWARD.write_text("1\n")
    _run("ip", "route", "replace", f"{node.ip}/32", "dev", veth, "src", gateway)
    _run("ip", "route", "replace", node.pod_cidr, "via", node.ip, "dev", veth, "onlink")


def ensure_mounts(node: Node, protect: list[Path]) -> None:
    """Create the node's mount namespace unless it exists.

    ``protect`` are the machine's cluster directories (state dir, first kubelet root) whose
    mount copies are dropped inside the node.
    """
    assert node.mount_ns is not None
    handle = node.mount_ns
    handles = handle.parent
    handles.mkdir(parents=True, exist_ok=True)
    # unshare --mount=<file> needs the file on a mount that is not shared.
    if str(handles) not in mounts.mounts_under([handles]):
        _run("mount", "--bind", str(handles), str(handles))
        _run("mount", "--make-private", str(handles))
    if str(handle) in mounts.mounts_under([handle]):
        return
    for d in (node.kubelet_root_on_host, node.run_on_host):
        d.mkdir(parents=True, exist_ok=True)
    handle.touch()
    prefixes = "|".join(
        re.escape(str(p)) for p in [*protect, Path("/var/lib/kubelet"), Path("/run")]
    )
    script = (
        "set -e\n"
        # Lazily unmount the copies of the machine's cluster mounts, deepest first.
        "for m in $(awk '{print $5}' /proc/self/mountinfo"
        f" | grep -E {_q(f'^({prefixes})(/|$)')} | sort -r); do\n"
        '  umount -l "$m" 2>/dev/null || true\n'
        "done\n"
        "mkdir -p /var/lib/kubelet\n"
        f"mount --bind {_q(node.kubelet_root_on_host)} /var/lib/kubelet\n"
        f"mount --bind {_q(node.run_on_host)} /run\n"
    )
    res = _run(
        "unshare", f"--mount={handle}", "--propagation", "private", "sh", "-c", script, check=False
    )
    if res.returncode != 0:
        with contextlib.suppress(RuntimeError):
            _run("umount", str(handle))
        raise RuntimeError(f"cannot set up the mount namespace of node {node.name}: {res.stderr}")


def _q(path: Path | str) -> str:
    text = str(path)
    if "'" in text:
        raise ValueError(f"unsupported path {text!r}")
    return f"'{text}'"


def remove(node: Node) -> list[str]:
    """Undo :func:`ensure_network` and :func:`ensure_mounts` (processes must be gone)."""
    notes: list[str] = []
    if node.mount_ns is not None and str(node.mount_ns) in mounts.mounts_under([node.mount_ns]):
        _run("umount", str(node.mount_ns), check=False)
        notes.append(f"released the mount namespace of {node.name}")
    if node.netns is not None:
        notes += remove_netns(node.netns)
    return notes


def remove_netns(name: str) -> list[str]:
    """Delete a network namespace of ours and its machine-side veth (and so its routes)."""
    notes: list[str] = []
    if netns_exists(name):
        _run("ip", "netns", "del", name, check=False)
        notes.append(f"deleted network namespace {name}")
    # Gone with the namespace unless something still holds it; its routes go with it.
    if _run("ip", "link", "show", name, check=False).returncode == 0:
        _run("ip", "link", "del", name, check=False)
        notes.append(f"deleted veth {name}")
    return notes


def release_netns_dir(made_by_us: bool) -> None:
    """``ip netns add`` bind-mounts /run/netns on itself; undo that when we caused it."""
    if not made_by_us or our_netns() or not NETNS_DIR.is_dir() or any(NETNS_DIR.iterdir()):
        return
    for _ in range(3):  # iproute2 may have stacked two binds
        if _run("umount", str(NETNS_DIR), check=False).returncode != 0:
            break
    with contextlib.suppress(OSError):
        NETNS_DIR.rmdir()

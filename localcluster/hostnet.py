"""Host network changes made by ``up`` and undone by ``down``.

``up`` adds the node IP to ``lo`` and notes ``net.ipv4.ip_forward`` (the CNI bridge plugin and
further nodes turn it on) and whether ``/run/netns`` was a mount. ``down`` removes the node IP, the
CNI bridge and its veths, the iptables chains of kube-proxy (``kube-proxy --cleanup``) and of the
kubelet (canary chains), and restores ``ip_forward``. What was changed is recorded in
``.cluster/host.json`` so ``down`` undoes only that. The further nodes' network namespaces, veths
and routes are ``nodens.py``'s.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
from pathlib import Path

from localcluster import layout as paths
from localcluster import mounts, versions

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
NETNS_DIR = Path("/run/netns")
TABLES = ("filter", "nat", "mangle")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _load(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def node_ip_present() -> bool:
    out = _ip("-o", "addr", "show", "dev", "lo").stdout
    return f" {versions.NODE_IP}/" in out


def prepare(host_state: Path) -> None:
    """Add the node IP to ``lo`` and remember what the host looked like before."""
    state = _load(host_state)
    if "ip_forward_before" not in state:
        state["ip_forward_before"] = IP_FORWARD.read_text().strip()
        # Another Kubernetes on this host would own such chains; then down leaves them alone.
        state["kube_chains_before"] = bool(kube_chains())
        # `ip netns add` (further nodes) bind-mounts /run/netns onto itself for good.
        state["netns_dir_mounted_before"] = str(NETNS_DIR) in mounts.mounts_under([NETNS_DIR])
    if not node_ip_present():
        _ip("addr", "add", f"{versions.NODE_IP}/32", "dev", "lo")
        state["node_ip_added"] = True
    host_state.parent.mkdir(parents=True, exist_ok=True)
    host_state.write_text(json.dumps(state, indent=1) + "\n")


def bridge_links() -> list[str]:
    res = _ip("-o", "link", "show", "master", paths.CNI_BRIDGE, check=False)
    return [line.split(":")[1].strip().split("@")[0] for line in res.stdout.splitlines()]


def cleanup(host_state: Path, kube_proxy: Path | None) -> list[str]:
    """Undo what ``prepare`` and the running cluster did to the host network. Returns notes."""
    notes: list[str] = []
    if kube_proxy is not None and kube_proxy.exists():
        res = subprocess.run(
            [str(kube_proxy), "--cleanup", "--proxy-mode=iptables"],
            capture_output=True,
            text=True,
            check=False,
        )
        notes.append(f"kube-proxy --cleanup exit {res.returncode}")
    if not state_before_up(host_state).get("kube_chains_before"):
        removed = remove_kube_chains()
        if removed:
            notes.append(f"removed {removed} leftover KUBE-* iptables chains")
    for link in bridge_links():
        _ip("link", "del", link, check=False)
    if _ip("link", "show", paths.CNI_BRIDGE, check=False).returncode == 0:
        _ip("link", "del", paths.CNI_BRIDGE, check=False)
        notes.append(f"deleted bridge {paths.CNI_BRIDGE}")
    state = state_before_up(host_state)
    if state.get("node_ip_added") and node_ip_present():
        _ip("addr", "del", f"{versions.NODE_IP}/32", "dev", "lo", check=False)
        notes.append(f"removed {versions.NODE_IP} from lo")
    before = state.get("ip_forward_before")
    if isinstance(before, str) and IP_FORWARD.read_text().strip() != before:
        with contextlib.suppress(OSError):
            IP_FORWARD.write_text(before + "\n")
            notes.append(f"restored net.ipv4.ip_forward={before}")
    host_state.unlink(missing_ok=True)
    return notes


def state_before_up(host_state: Path) -> dict[str, object]:
    return _load(host_state)


def _save(tool: str, table: str) -> list[str]:
    res = subprocess.run([f"{tool}-save", "-t", table], capture_output=True, text=True, check=False)
    return res.stdout.splitlines() if res.returncode == 0 else []


def kube_chains() -> list[tuple[str, str, str]]:
    """(tool, table, chain) of every KUBE-* chain in iptables and ip6tables."""
    found = []
    for tool in ("iptables", "ip6tables"):
        for table in TABLES:
            for line in _save(tool, table):
                if line.startswith(":KUBE-"):
                    found.append((tool, table, line[1:].split()[0]))
    return found


def remove_kube_chains() -> int:
    """Delete the jumps into KUBE-* chains from built-in chains, then those chains.

    kube-proxy --cleanup removes its own; the kubelet's (KUBE-FIREWALL, canaries) stay behind.
    """
    chains = kube_chains()
    for tool in ("iptables", "ip6tables"):
        for table in TABLES:
            for line in _save(tool, table):
                if not line.startswith("-A "):
                    continue
                words = shlex.split(line)
                if words[1].startswith("KUBE-") or "-j" not in words:
                    continue
                if words[words.index("-j") + 1].startswith("KUBE-"):
                    subprocess.run(
                        [tool, "-t", table, "-D", *words[1:]], capture_output=True, check=False
                    )
    for tool, table, chain in chains:
        subprocess.run([tool, "-t", table, "-F", chain], capture_output=True, check=False)
    for tool, table, chain in chains:
        subprocess.run([tool, "-t", table, "-X", chain], capture_output=True, check=False)
    return len(chains)

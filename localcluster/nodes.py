"""The nodes of the local cluster: names, addresses and where each node's state lives.

The first node runs in the machine's own network and mount namespaces, as the cluster always did:
its kubelet root is ``/var/lib/kubelet``, its runtime state is under ``.cluster/``. Every further
node is a kubelet, containerd and kube-proxy of its own, isolated the way a separate machine would
be (``nodens.py``): a network namespace with its own node IP and pod bridge, routed through a veth
pair to the machine, and a mount namespace in which that node's own directories are mounted over
``/var/lib/kubelet`` and ``/run``. So a DaemonSet's ``hostPath: /var/lib/kubelet/plugins`` or
``/var/run/cdi`` means, on each node, that node's directory, exactly as on real hardware; from the
machine they are visible under ``.cluster/nodes/<name>/`` (``Node.host_path``).

Addresses: node ``k`` (1-based) has node IP ``10.89.0.k`` and pod CIDR ``10.88.<k-1>.0/24``; the
API server, CoreDNS and the first node's kubelet listen on ``10.89.0.1``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from localcluster import versions

# More would only need bigger address plans; a 2-core machine runs out of CPU long before.
MAX_NODES = 8
KUBELET_ROOT = PurePosixPath("/var/lib/kubelet")
RUN_DIR = PurePosixPath("/run")
CGROUP_PARENT = "/space-dra"
# Per-node components; the control plane (etcd, API server, controller manager, scheduler, CoreDNS)
# runs once, in the machine's namespaces.
NODE_COMPONENTS = ("containerd", "kube-proxy", "kubelet")


def node_ip(index: int) -> str:
    return str(ipaddress.IPv4Address(versions.NODE_IP) + (index - 1))


def pod_cidr(index: int) -> str:
    network = ipaddress.IPv4Network(versions.POD_CIDR)
    return str(list(network.subnets(new_prefix=24))[index - 1])


@dataclass(frozen=True)
class Node:
    """One node: ``index`` 1 is the machine itself, 2.. are namespaced nodes."""

    index: int
    name: str
    cluster_state: Path  # the cluster's state dir (.cluster/)

    @property
    def first(self) -> bool:
        return self.index == 1

    @property
    def ip(self) -> str:
        return node_ip(self.index)

    @property
    def pod_cidr(self) -> str:
        return pod_cidr(self.index)

    @property
    def bridge_ip(self) -> str:
        """The pod bridge's address on this node (the CNI gateway: first address of the CIDR)."""
        return str(ipaddress.IPv4Network(self.pod_cidr).network_address + 1)

    def component(self, base: str) -> str:
        """The name of a per-node component (logs, pid files): ``kubelet`` or ``kubelet@vm-2``."""
        return base if self.first else f"{base}@{self.name}"

    # --- isolation (only for further nodes) ----------------------------------------------------
    @property
    def netns(self) -> str | None:
        """The ``ip netns`` name; also the name of the machine-side veth (at most 15 bytes)."""
        return None if self.first else f"sdra-node{self.index}"

    @property
    def mount_ns(self) -> Path | None:
        """The file that keeps this node's mount namespace alive (a bind mount of nsfs)."""
        return None if self.first else self.cluster_state / "run" / "nodes" / f"{self.name}.mnt"

    def namespace_prefix(self) -> list[str]:
        """argv prefix that runs a program inside this node (nothing for the first node)."""
        if self.first:
            return []
        return ["/usr/bin/nsenter", f"--net=/run/netns/{self.netns}", f"--mount={self.mount_ns}"]

    # --- state --------------------------------------------------------------------------------
    @property
    def state(self) -> Path:
        """This node's state: ``.cluster/`` for the first node, else ``.cluster/nodes/<name>``."""
        return self.cluster_state if self.first else self.cluster_state / "nodes" / self.name

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def run(self) -> Path:
        """Volatile runtime state: containerd socket and state, runc root, CNI IPAM."""
        return self.state / "run"

    @property
    def containerd_root(self) -> Path:
        """containerd's persistent root (the imported images); kept by ``down``."""
        return self.state / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.run / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.config / "cni"

    @property
    def cni_data_dir(self) -> Path:
        return self.run / "cni-ipam"

    @property
    def pod_logs(self) -> Path:
        return self.state / "pod-logs"

    @property
    def cgroup_root(self) -> str:
        return f"{CGROUP_PARENT}/{self.name}"

    @property
    def kubelet_root_on_host(self) -> Path:
        """Where this node's ``/var/lib/kubelet`` is, seen from the machine."""
        return Path(KUBELET_ROOT) if self.first else self.state / "kubelet"

    @property
    def run_on_host(self) -> Path:
        """Where this node's ``/run`` (and so ``/var/run``) is, seen from the machine."""
        return Path(RUN_DIR) if self.first else self.state / "node-run"

    def host_path(self, path: str | PurePosixPath) -> Path:
        """A path as this node's processes see it, translated to where it is on the machine.

        ``/var/lib/kubelet/...`` and ``/run/...`` (``/var/run/...``) are the node's own; every
        other path is shared with the machine.
        """
        p = PurePosixPath(path)
        if not p.is_absolute():
            raise ValueError(f"{path!r} is not an absolute path")
        if p.parts[:3] == ("/", "var", "run"):
            p = RUN_DIR.joinpath(*p.parts[3:])
        for inside, outside in (
            (KUBELET_ROOT, self.kubelet_root_on_host),
            (RUN_DIR, self.run_on_host),
        ):
            if p == inside or inside in p.parents:
                return outside.joinpath(*p.relative_to(inside).parts)
        return Path(p)


def make_nodes(first_name: str, count: int, cluster_state: Path) -> list[Node]:
    """``count`` nodes: the machine's host name, then ``<name>-2``, ``<name>-3``, ..."""
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"--nodes must be between 1 and {MAX_NODES}, not {count}")
    return [
        Node(
            index=i, name=first_name if i == 1 else f"{first_name}-{i}", cluster_state=cluster_state
        )
        for i in range(1, count + 1)
    ]

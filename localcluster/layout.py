"""Where things live: the repo's state dir, the version-keyed caches, and host paths we share."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from localcluster import versions
from localcluster.releases import Release

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """Build caches, outside the repo (``$SPACE_DRA_CACHE`` or ``~/.cache/space-dra``)."""
    env = os.environ.get("SPACE_DRA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "space-dra"


@dataclass(frozen=True)
class Layout:
    """All paths of one local cluster. Only ``state`` is inside the repository."""

    state: Path
    cache: Path

    @classmethod
    def default(cls) -> Layout:
        state = os.environ.get("SPACE_DRA_CLUSTER_STATE")
        return cls(
            state=Path(state) if state else REPO_ROOT / ".cluster",
            cache=cache_root(),
        )

    # --- state (git-ignored, per checkout) ---
    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def bin(self) -> Path:
        """Symlinks to the cached binaries: kubectl, helm, ctr, ..."""
        return self.state / "bin"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def run(self) -> Path:
        """Volatile runtime state: sockets, containerd state, netns mounts, runc root."""
        return self.state / "run"

    @property
    def containerd_socket(self) -> Path:
        """The first node's containerd (further nodes: ``nodes.Node.containerd_socket``)."""
        return self.run / "containerd.sock"

    def containerd_sockets(self) -> list[Path]:
        """The containerd socket of every node that has one (images go into each)."""
        further = sorted((self.state / "nodes").glob("*/run/containerd.sock"))
        return [s for s in [self.containerd_socket, *further] if s.exists()]

    @property
    def spec_file(self) -> Path:
        """The release and node count ``up`` last ran with (what the state dir was made for)."""
        return self.state / "cluster.json"

    @property
    def host_state(self) -> Path:
        """What ``up`` changed on the host (so that ``down`` can restore it)."""
        return self.state / "host.json"

    # --- caches (outside the repo, keyed by version) ---
    def k8s_bin(self, release: Release) -> Path:
        return self.cache / f"k8s-v{release.version}" / "bin"

    @property
    def coredns_bin(self) -> Path:
        return self.cache / f"coredns-v{versions.COREDNS}" / "bin"

    @property
    def helm_bin(self) -> Path:
        return self.cache / f"helm-v{versions.HELM}" / "bin"

    @property
    def apt(self) -> Path:
        return self.cache / "apt-trixie"

    @property
    def debs(self) -> Path:
        return self.apt / "debs"

    def deb_root(self, pkg: versions.DebPackage) -> Path:
        """Where ``dpkg -x`` unpacked one package."""
        safe = pkg.version.replace(":", "%3a")
        return self.cache / "deb-roots" / f"{pkg.name}_{safe}"

    @property
    def images(self) -> Path:
        return self.cache / "images"


# Paths as every node sees them (DRA drivers and CDI use fixed locations); on a further node they
# are that node's own directories (nodes.py).
KUBELET_ROOT = Path("/var/lib/kubelet")
CDI_SPEC_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
# Every node's pod cgroups are below /space-dra/<node> in each cgroup v1 hierarchy.
CGROUP_ROOT = "/space-dra"
CNI_BRIDGE = "sdra-cni0"
CNI_NETWORK = "space-dra-pods"

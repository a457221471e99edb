"""Every version the local cluster pins, in one place.

Moving to another Kubernetes patch or minor release is a change to ``KUBERNETES`` here followed by
``python -m localcluster pin`` (rewrites the Go modules' requirements with ``go mod edit`` and
tidies them). ``tests/unit/test_localcluster_versions.py`` fails when the Go modules and this file
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Upstream Kubernetes, built from the Go module proxy (localcluster/k8sbuild) -----------------
KUBERNETES = "1.36.3"

# Staging modules published as k8s.io/<name> v0.<minor>.<patch>. k8s.io/kubernetes requires them at
# v0.0.0 and maps them to ./staging in its own go.mod, which a consumer does not inherit, so the
# consuming module must replace every one of them (kubernetes/kubernetes#79384).
STAGING_MODULES: tuple[str, ...] = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "cri-streaming",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
    "streaming",
)

# The commands built from k8s.io/kubernetes.
KUBE_COMMANDS: tuple[str, ...] = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kubectl",
    "kube-proxy",
)

# --- Other Go programs, each built from its own small module under localcluster/ -----------------
COREDNS = "1.15.0"  # github.com/coredns/coredns, module localcluster/corednsbuild
HELM = "3.22.0"  # helm.sh/helm/v3, module localcluster/helmbuild

# The Go toolchain the modules declare (go directive) and the minimum local toolchain.
GO_DIRECTIVE = "1.26.0"
GODEBUG_DEFAULT = "go1.26"


# --- Debian packages -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DebPackage:
    """A Debian package unpacked with ``dpkg -x`` into the cache (never installed)."""

    name: str
    version: str  # exact Debian version preferred
    suite: str = "trixie"

    @property
    def upstream(self) -> str:
        """The upstream part of the version (no epoch, no Debian revision)."""
        v = self.version.split(":", 1)[-1]
        return v.rsplit("-", 1)[0].split("~", 1)[0].split("+", 1)[0]


# From Debian trixie: newer than bookworm's and built against a glibc bookworm has (checked with
# ldd: they only need libc.so.6). Trixie's runc 1.1.15 needs GLIBC 2.38 and cannot run on bookworm.
CONTAINERD = DebPackage("containerd", "1.7.24~ds1-6+deb13u1")
ETCD = DebPackage("etcd-server", "3.5.16-4")
CNI_PLUGINS = DebPackage("containernetworking-plugins", "1.1.1+ds1-3+b17")
BUSYBOX = DebPackage("busybox-static", "1:1.37.0-6+b9")
TRIXIE_DEBS: tuple[DebPackage, ...] = (CONTAINERD, ETCD, CNI_PLUGINS, BUSYBOX)

# Installed from the host's own (bookworm) apt sources with ``apt-get install``: binaries the
# runtime, the CNI plugins and kube-proxy find on PATH.
HOST_PACKAGES: dict[str, str] = {
    "runc": "runc",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "openssl": "openssl",
    "gcc": "gcc",
    "strip": "binutils",
    "nsenter": "util-linux",
    # The driver image build (driverimage/): private mount namespace, ELF dependency check.
    "unshare": "util-linux",
    "readelf": "binutils",
}


# --- Derived values ------------------------------------------------------------------------------
def staging_version(kubernetes: str | None = None) -> str:
    """k8s.io/kubernetes v1.X.Y ships its staging modules as v0.X.Y."""
    major, minor, patch = (kubernetes or KUBERNETES).split(".")
    if major != "1":
        raise ValueError(f"unexpected Kubernetes version {kubernetes or KUBERNETES}")
    return f"0.{minor}.{patch}"


def kube_minor(kubernetes: str | None = None) -> str:
    return (kubernetes or KUBERNETES).split(".")[1]


def kube_ldflags(kubernetes: str | None = None) -> str:
    """Version stamping as upstream's build does it (``kubectl version`` and the node show it)."""
    kubernetes = kubernetes or KUBERNETES
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion=v{kubernetes}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={kube_minor(kubernetes)}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


def go_module_requirements() -> dict[str, dict[str, str]]:
    """What each Go module under localcluster/ (and the test plugin) must require and replace.

    Keys are module directories relative to the repository root; values map module path to version
    (``require``) and ``replace:<module path>`` to the replacement version.
    """
    staging = f"v{staging_version()}"
    # Go kubelet plugins on the upstream helper library: the test plugin and the bench baseline.
    kubelet_plugin = {
        f"k8s.io/{m}": staging
        for m in ("dynamic-resource-allocation", "client-go", "api", "apimachinery")
    }
    k8s: dict[str, str] = {"k8s.io/kubernetes": f"v{KUBERNETES}"}
    for name in STAGING_MODULES:
        k8s[f"replace:k8s.io/{name}"] = staging
    return {
        "localcluster/k8sbuild": k8s,
        "localcluster/corednsbuild": {"github.com/coredns/coredns": f"v{COREDNS}"},
        "localcluster/helmbuild": {"helm.sh/helm/v3": f"v{HELM}"},
        "tests/cluster/draplugin": kubelet_plugin,
        "bench/gobaseline": kubelet_plugin,
    }


# --- Images -------------------------------------------------------------------------------------
PAUSE_IMAGE = "localhost/space-dra/pause:1"
TESTBOX_IMAGE = f"localhost/space-dra/testbox:{BUSYBOX.upstream}-k{KUBERNETES}"
# The testbox is also tagged as Docker Hub's busybox of the same version, so manifests written for
# kind (``image: docker.io/library/busybox:1.37.0``, ``imagePullPolicy: IfNotPresent``) run
# unchanged here without a pull.
BUSYBOX_ALIAS = f"docker.io/library/busybox:{BUSYBOX.upstream}"

# --- Cluster shape ------------------------------------------------------------------------------
SERVICE_CIDR = "10.0.0.0/24"
FIRST_SERVICE_IP = "10.0.0.1"
POD_CIDR = "10.88.0.0/16"
# The node's address, added to ``lo`` by ``up`` (this VM's kernel has no dummy interfaces). Pods
# reach it through the bridge gateway; nothing listens on the machine's external interface.
NODE_IP = "10.89.0.1"
CLUSTER_DOMAIN = "cluster.local"

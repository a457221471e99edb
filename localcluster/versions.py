"""Every version the local cluster pins, in one place (Kubernetes releases: ``releases.py``).

Moving to another patch release is a change to ``releases.SUPPORTED`` followed by ``python -m
localcluster pin`` (writes each Go module's requirements with ``go mod edit`` and tidies it).
``tests/unit/test_localcluster_versions.py`` fails when the Go modules and these files disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from localcluster import releases

# --- Upstream Kubernetes, built from the Go module proxy ------------------------------------------
# The supported releases, their pinning modules (localcluster/k8sbuild/1.<minor>) and what differs
# between them live in localcluster/releases.py.

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
def go_module_requirements() -> dict[str, dict[str, str]]:
    """What each Go module under localcluster/ (and the test plugin) must require and replace.

    Keys are module directories relative to the repository root; values map module path to version
    (``require``) and ``replace:<module path>`` to the replacement version.
    """
    modules: dict[str, dict[str, str]] = {}
    for release in releases.all_releases():
        k8s: dict[str, str] = {"k8s.io/kubernetes": f"v{release.version}"}
        for name in release.staging_modules:
            k8s[f"replace:k8s.io/{name}"] = f"v{release.staging_version}"
        modules[release.module_dir] = k8s
    # Go kubelet plugins on the upstream helper library (the test plugin and the bench baseline)
    # speak the kubelet's DRA gRPC API, which every supported release serves in the same v1
    # version: one build, pinned to the default release's libraries, runs on all.
    plugin_libs = f"v{releases.Release(releases.DEFAULT).staging_version}"
    kubelet_plugin = {
        f"k8s.io/{m}": plugin_libs
        for m in ("dynamic-resource-allocation", "client-go", "api", "apimachinery")
    }
    modules.update(
        {
            "localcluster/corednsbuild": {"github.com/coredns/coredns": f"v{COREDNS}"},
            "localcluster/helmbuild": {"helm.sh/helm/v3": f"v{HELM}"},
            "tests/cluster/draplugin": kubelet_plugin,
            "bench/gobaseline": dict(kubelet_plugin),
            # The admission-policy checker of the fast tests runs the API server's own CEL
            # code; at the default release's version, its build reuses the cached packages
            # of the Kubernetes build (both use -trimpath), seconds instead of minutes.
            "tests/vapcheck": {
                f"k8s.io/{m}": plugin_libs for m in ("api", "apimachinery", "apiserver")
            },
        }
    )
    return modules


def godebug_default(module_dir: str) -> str:
    """The ``godebug default=`` line a module carries (Kubernetes modules follow their release)."""
    for release in releases.all_releases():
        if release.module_dir == module_dir:
            return release.godebug_default
    return GODEBUG_DEFAULT


# --- Images -------------------------------------------------------------------------------------
PAUSE_IMAGE = "localhost/space-dra/pause:1"


def testbox_image(release: releases.Release) -> str:
    """busybox plus the release's kubectl, so the tag names both."""
    return f"localhost/space-dra/testbox:{BUSYBOX.upstream}-k{release.version}"


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

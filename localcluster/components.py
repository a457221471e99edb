"""What runs: the control plane once, containerd, kube-proxy and a kubelet per node.

Each component is a :class:`processes.Component` (argv, readiness probe, input files whose change
restarts it); this module decides their flags and certificates, ``cluster.py`` their order.
Release-specific flags come from :class:`releases.Release`, never from version checks here.
"""

from __future__ import annotations

import ssl
import subprocess
import urllib.request
from pathlib import Path

from localcluster import configs, fetch, versions
from localcluster.layout import Layout
from localcluster.nodes import Node
from localcluster.pki import PKI, CertRequest
from localcluster.processes import Component
from localcluster.releases import Release

# Start order of the control plane; ``down`` stops in reverse after the nodes.
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "coredns")
# Every component of a one-node cluster in start order (``logs`` lists them in this order).
ORDER = (
    "etcd",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "coredns",
    "kube-proxy",
    "kubelet",
)


def http_ok(url: str, context: ssl.SSLContext | None = None, expect: str | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as resp:
        body = resp.read().decode("utf-8", "replace")
        return bool(resp.status == 200 and (expect is None or expect in body))


def insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- certificates --------------------------------------------------------------------------------
def cert_requests(nodes: list[Node]) -> list[CertRequest]:
    first = nodes[0].name
    requests = [
        CertRequest(
            "apiserver",
            "kube-apiserver",
            dns=(
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{versions.CLUSTER_DOMAIN}",
                "localhost",
                first,
            ),
            ips=(versions.FIRST_SERVICE_IP, "127.0.0.1", versions.NODE_IP),
            server=True,
            client=False,
        ),
        CertRequest(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
        ),
        CertRequest("admin", "space-dra-admin", ("system:masters",)),
        CertRequest("kube-controller-manager", "system:kube-controller-manager"),
        CertRequest("kube-scheduler", "system:kube-scheduler"),
        CertRequest("kube-proxy", "system:kube-proxy"),
        CertRequest("coredns", configs.COREDNS_USER),
        # The aggregation layer's client identity, from its own CA (requestheader auth).
        CertRequest("front-proxy-client", "front-proxy-client", ca="front-proxy-ca"),
    ]
    for node in nodes:
        stem = configs.kubelet_cert(node)
        # Each kubelet is its own node identity, as the Node authorizer expects.
        requests.append(CertRequest(stem, f"system:node:{node.name}", ("system:nodes",)))
        requests.append(
            CertRequest(
                f"{stem}-serving",
                node.name,
                dns=(node.name, "localhost"),
                ips=(node.ip, "127.0.0.1"),
                server=True,
                client=False,
            )
        )
    return requests


def write_pki(lay: Layout, nodes: list[Node]) -> PKI:
    pki = PKI(lay.pki)
    pki.ensure_ca()
    pki.ensure_ca("front-proxy-ca", "space-dra-front-proxy-ca")
    pki.ensure_service_account_keys()
    for req in cert_requests(nodes):
        pki.ensure_cert(req)
    server = configs.apiserver_url()
    cfg = lay.config
    for name in ("kube-controller-manager", "kube-scheduler", "kube-proxy"):
        pki.kubeconfig(cfg / f"{name}.kubeconfig", server, name)
    for node in nodes:
        pki.kubeconfig(node.config / "kubelet.kubeconfig", server, configs.kubelet_cert(node))
    pki.kubeconfig(cfg / "coredns.kubeconfig", server, "coredns")
    pki.kubeconfig(lay.kubeconfig, server, "admin", embed=True)
    return pki


def write_configs(lay: Layout, nodes: list[Node], bins: fetch.Binaries, release: Release) -> None:
    configs.scheduler_config(lay)
    configs.corefile(lay)
    for node in nodes:
        configs.containerd_config(node, bins.cni_bin)
        configs.cni_config(node)
        configs.kubelet_config(node, lay.pki, release)
        configs.kube_proxy_config(node, lay.config / "kube-proxy.kubeconfig")


# --- processes -----------------------------------------------------------------------------------
def _environment(bins: fetch.Binaries) -> dict[str, str]:
    path = f"{bins.containerd_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": path, "HOME": str(Path.home()), "LANG": "C.UTF-8"}


def control_plane(lay: Layout, bins: fetch.Binaries, release: Release) -> dict[str, Component]:
    pki = PKI(lay.pki)
    cfg = lay.config
    k = bins.kube
    admin_ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    admin_ctx.load_cert_chain(str(pki.crt("admin")), str(pki.key("admin")))
    apiserver = configs.apiserver_url()
    etcd_url = configs.etcd_url()
    peer = f"http://127.0.0.1:{configs.ETCD_PEER_PORT}"

    def make(name: str, argv: list[str | Path], ready: object, **kw: object) -> Component:
        return Component(
            name=name,
            argv=[str(a) for a in argv],
            logs=lay.logs,
            pids=lay.pids,
            env=_environment(bins),
            ready=ready,  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )

    return {
        "etcd": make(
            "etcd",
            [
                bins.etcd,
                "--name=space-dra",
                f"--data-dir={lay.etcd_data}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=space-dra={peer}",
                "--listen-metrics-urls=",
                "--log-level=warn",
                # A throwaway single-member store: skip fsync (etcd is the slowest part otherwise).
                "--unsafe-no-fsync",
                "--snapshot-count=10000",
            ],
            lambda: http_ok(f"{etcd_url}/health", expect='"health":"true"'),
        ),
        "kube-apiserver": make(
            "kube-apiserver",
            [
                k("kube-apiserver"),
                f"--advertise-address={versions.NODE_IP}",
                f"--bind-address={versions.NODE_IP}",
                f"--secure-port={configs.APISERVER_PORT}",
                f"--etcd-servers={etcd_url}",
                f"--service-cluster-ip-range={versions.SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                # PodNodeSelector: a namespace annotation can pin its pods to a node (the suites
                # that run the driver as host processes serve one node only).
                "--enable-admission-plugins=NodeRestriction,PodNodeSelector",
                f"--client-ca-file={pki.ca_crt}",
                f"--tls-cert-file={pki.crt('apiserver')}",
                f"--tls-private-key-file={pki.key('apiserver')}",
                f"--kubelet-client-certificate={pki.crt('apiserver-kubelet-client')}",
                f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
                f"--kubelet-certificate-authority={pki.ca_crt}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--service-account-issuer=https://kubernetes.default.svc.{versions.CLUSTER_DOMAIN}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--requestheader-client-ca-file={pki.crt('front-proxy-ca')}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.crt('front-proxy-client')}",
                f"--proxy-client-key-file={pki.key('front-proxy-client')}",
                "--allow-privileged=true",
                "--profiling=false",
                "--event-ttl=1h",
                *release.apiserver_flags(),
            ],
            lambda: http_ok(f"{apiserver}/readyz", admin_ctx, "ok"),
            ready_timeout=120,
        ),
        "kube-controller-manager": make(
            "kube-controller-manager",
            [
                k("kube-controller-manager"),
                f"--kubeconfig={cfg / 'kube-controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={cfg / 'kube-controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={cfg / 'kube-controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={configs.KCM_PORT}",
                "--controllers=*,bootstrapsigner,tokencleaner",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_crt}",
                f"--cluster-signing-cert-file={pki.ca_crt}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={versions.SERVICE_CIDR}",
                "--cluster-name=space-dra",
                "--leader-elect=false",
                "--profiling=false",
            ],
            lambda: http_ok(f"https://127.0.0.1:{configs.KCM_PORT}/healthz", insecure(), "ok"),
        ),
        "kube-scheduler": make(
            "kube-scheduler",
            [
                k("kube-scheduler"),
                f"--config={cfg / 'kube-scheduler.yaml'}",
                f"--authentication-kubeconfig={cfg / 'kube-scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={cfg / 'kube-scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={configs.SCHEDULER_PORT}",
                "--profiling=false",
            ],
            lambda: http_ok(
                f"https://127.0.0.1:{configs.SCHEDULER_PORT}/healthz", insecure(), "ok"
            ),
            inputs=[cfg / "kube-scheduler.yaml"],
        ),
        "coredns": make(
            "coredns",
            [bins.coredns, "-conf", cfg / "Corefile"],
            lambda: http_ok(f"http://127.0.0.1:{configs.COREDNS_READY_PORT}/ready"),
            inputs=[cfg / "Corefile"],
        ),
    }


def node_components(node: Node, lay: Layout, bins: fetch.Binaries) -> dict[str, Component]:
    """containerd, kube-proxy and kubelet of one node, keyed by their base name."""
    cfg = node.config

    def make(base: str, argv: list[str | Path], ready: object, **kw: object) -> Component:
        return Component(
            name=node.component(base),
            argv=[str(a) for a in argv],
            logs=lay.logs,
            pids=lay.pids,
            env=_environment(bins),
            ready=ready,  # type: ignore[arg-type]
            wrapper=node.namespace_prefix(),
            **kw,  # type: ignore[arg-type]
        )

    def containerd_answers() -> bool:
        argv = [str(bins.ctr), "--address", str(node.containerd_socket), "version"]
        res = subprocess.run(argv, capture_output=True, check=False, timeout=5)
        return res.returncode == 0

    return {
        "containerd": make(
            "containerd",
            [bins.containerd_bin / "containerd", f"--config={cfg / 'containerd.toml'}"],
            containerd_answers,
            inputs=[cfg / "containerd.toml", cfg / "cni" / configs.CNI_CONFLIST],
        ),
        "kube-proxy": make(
            "kube-proxy",
            [bins.kube("kube-proxy"), f"--config={cfg / 'kube-proxy.yaml'}"],
            lambda: http_ok(f"http://{node.ip}:{configs.PROXY_HEALTHZ_PORT}/livez"),
            inputs=[cfg / "kube-proxy.yaml"],
        ),
        "kubelet": make(
            "kubelet",
            [
                bins.kube("kubelet"),
                f"--config={cfg / 'kubelet.yaml'}",
                f"--kubeconfig={cfg / 'kubelet.kubeconfig'}",
                f"--hostname-override={node.name}",
                f"--node-ip={node.ip}",
                # Inside a further node this is that node's own directory (nodes.py).
                "--root-dir=/var/lib/kubelet",
            ],
            lambda: http_ok(f"http://{node.ip}:{configs.KUBELET_HEALTHZ_PORT}/healthz", None, "ok"),
            ready_timeout=90,
            inputs=[cfg / "kubelet.yaml"],
        ),
    }

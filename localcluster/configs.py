"""The configuration files of the components, rendered from the layout and the pinned versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from localcluster import layout as paths
from localcluster import versions
from localcluster.layout import Layout
from localcluster.nodes import Node
from localcluster.releases import Release

# Ports. Components that only need loopback bind to 127.0.0.1; what the node or pods must reach
# binds to the node IP (on ``lo``), never to the machine's external interface.
ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
APISERVER_PORT = 6443
KCM_PORT = 10257
SCHEDULER_PORT = 10259
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_HEALTHZ_PORT = 10256
PROXY_METRICS_PORT = 10249
COREDNS_HEALTH_PORT = 18080
COREDNS_READY_PORT = 18181


CNI_CONFLIST = "10-space-dra.conflist"


def apiserver_url() -> str:
    return f"https://{versions.NODE_IP}:{APISERVER_PORT}"


def etcd_url() -> str:
    return f"http://127.0.0.1:{ETCD_CLIENT_PORT}"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _yaml(path: Path, obj: dict[str, Any]) -> Path:
    return _write(path, yaml.safe_dump(obj, sort_keys=False))


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot render {v!r} as TOML")


def _toml(tables: dict[str, dict[str, object]], top: dict[str, object]) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"]
        lines += [f"  {k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def containerd_config(node: Node, cni_bin: Path) -> Path:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    text = _toml(
        top={
            "version": 2,
            "root": str(node.containerd_root),
            "state": str(node.containerd_state),
            "disabled_plugins": [
                "io.containerd.snapshotter.v1.aufs",
                "io.containerd.snapshotter.v1.btrfs",
                "io.containerd.snapshotter.v1.devmapper",
                "io.containerd.snapshotter.v1.zfs",
                "io.containerd.tracing.processor.v1.otlp",
                "io.containerd.internal.v1.tracing",
            ],
        },
        tables={
            "grpc": {"address": str(node.containerd_socket)},
            "ttrpc": {"address": str(node.containerd_socket) + ".ttrpc"},
            "debug": {"address": "", "level": "info"},
            "metrics": {"address": ""},
            'plugins."io.containerd.internal.v1.opt"': {"path": str(node.state / "containerd-opt")},
            cri: {
                "sandbox_image": versions.PAUSE_IMAGE,
                "enable_cdi": True,
                # Inside a further node, /var/run is that node's own (see nodes.py).
                "cdi_spec_dirs": [str(d) for d in paths.CDI_SPEC_DIRS],
                "netns_mounts_under_state_dir": True,
                "stream_server_address": "127.0.0.1",
                "stream_server_port": "0",
                "enable_selinux": False,
                "tolerate_missing_hugetlb_controller": True,
                "disable_hugetlb_controller": True,
                # Without CAP_SYS_RESOURCE (as on this VM) the sandbox's default oom_score_adj of
                # -998 cannot be set; clamp it to our own instead of failing every pod.
                "restrict_oom_score_adj": True,
            },
            f"{cri}.containerd": {"snapshotter": "overlayfs", "default_runtime_name": "runc"},
            f"{cri}.containerd.runtimes.runc": {"runtime_type": "io.containerd.runc.v2"},
            f"{cri}.containerd.runtimes.runc.options": {
                "SystemdCgroup": False,
                "BinaryName": "/usr/sbin/runc",
                "Root": str(node.runc_root),
            },
            f"{cri}.cni": {
                "bin_dir": str(cni_bin),
                "conf_dir": str(node.cni_conf_dir),
                "max_conf_num": 1,
            },
        },
    )
    return _write(node.config / "containerd.toml", text)


def cni_config(node: Node) -> Path:
    conf = {
        "cniVersion": "1.0.0",
        "name": paths.CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": paths.CNI_BRIDGE,
                "isGateway": True,
                # No masquerading: pods only talk to pods (routed between nodes) and to node IPs.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.cni_data_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return _write(node.cni_conf_dir / CNI_CONFLIST, json.dumps(conf, indent=2) + "\n")


def scheduler_config(lay: Layout) -> Path:
    return _yaml(
        lay.config / "kube-scheduler.yaml",
        {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(lay.config / "kube-scheduler.kubeconfig")},
            "leaderElection": {"leaderElect": False},
        },
    )


def kubelet_config(node: Node, pki: Path, release: Release) -> Path:
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        # On the node IP, so the machine can probe the kubelets of namespaced nodes too.
        "healthzBindAddress": node.ip,
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(pki / f"{kubelet_cert(node)}-serving.crt"),
        "tlsPrivateKeyFile": str(pki / f"{kubelet_cert(node)}-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "cgroupsPerQOS": True,
        "failSwapOn": False,
        "clusterDNS": [versions.NODE_IP],
        "clusterDomain": versions.CLUSTER_DOMAIN,
        # Pods get only cluster DNS, nothing inherited from the host's resolver.
        "resolvConf": "",
        # Never garbage-collect the hand-imported images; never evict on a busy disk.
        "imageGCHighThresholdPercent": 100,
        "evictionHard": {
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
        },
        "podLogsDir": str(node.pod_logs),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerNode": True,
        "maxPods": 110,
        **release.kubelet_config(),
    }
    return _yaml(node.config / "kubelet.yaml", config)


def kubelet_cert(node: Node) -> str:
    """File stem of the node's kubelet client certificate (``-serving`` for its server cert)."""
    return "kubelet" if node.first else f"kubelet-{node.name}"


def kube_proxy_config(node: Node, kubeconfig: Path) -> Path:
    return _yaml(
        node.config / "kube-proxy.yaml",
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": node.name,
            "clusterCIDR": versions.POD_CIDR,
            "bindAddress": node.ip,
            "healthzBindAddress": f"{node.ip}:{PROXY_HEALTHZ_PORT}",
            "metricsBindAddress": f"{node.ip}:{PROXY_METRICS_PORT}",
            "nodePortAddresses": [f"{node.ip}/32"],
            "iptables": {"localhostNodePorts": False},
            # 0 = leave the host's conntrack sysctls as they are.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        },
    )


def corefile(lay: Layout) -> Path:
    kubeconfig = lay.config / "coredns.kubeconfig"
    text = f""".:53 {{
    bind {versions.NODE_IP}
    errors
    health 127.0.0.1:{COREDNS_HEALTH_PORT}
    ready 127.0.0.1:{COREDNS_READY_PORT}
    kubernetes {versions.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} space-dra-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""
    return _write(lay.config / "Corefile", text)


# RBAC for the dedicated CoreDNS identity (user from its client certificate).
COREDNS_USER = "space-dra:coredns"
COREDNS_RBAC = f"""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: space-dra:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: space-dra:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: space-dra:coredns
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: {COREDNS_USER}
"""

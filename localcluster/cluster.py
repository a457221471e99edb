"""Bring the single-node cluster up and down: the order, the wiring and the waits."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localcluster import configs, fetch, hostnet, images, mounts, versions
from localcluster import layout as paths
from localcluster.client import ClusterHandle
from localcluster.layout import Layout
from localcluster.pki import PKI, CertRequest
from localcluster.processes import Component, ComponentFailed, wait_until

# Start order; ``down`` stops in reverse.
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


def node_name() -> str:
    return socket.gethostname().split(".")[0].lower()


def _http_ok(url: str, context: ssl.SSLContext | None = None, expect: str | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as resp:
        body = resp.read().decode("utf-8", "replace")
        return bool(resp.status == 200 and (expect is None or expect in body))


def _epoch(timestamp: str) -> float:
    """RFC 3339 UTC timestamp (as the API server writes them) to epoch seconds; 0 if absent."""
    if not timestamp:
        return 0.0
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class LocalCluster:
    layout: Layout

    @classmethod
    def default(cls) -> LocalCluster:
        return cls(Layout.default())

    @property
    def pki(self) -> PKI:
        return PKI(self.layout.pki)

    @property
    def node(self) -> str:
        return node_name()

    # --- wiring ---------------------------------------------------------------------------------
    def _cert_requests(self) -> list[CertRequest]:
        node = self.node
        return [
            CertRequest(
                "apiserver",
                "kube-apiserver",
                dns=(
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    f"kubernetes.default.svc.{versions.CLUSTER_DOMAIN}",
                    "localhost",
                    node,
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
            CertRequest("kubelet", f"system:node:{node}", ("system:nodes",)),
            CertRequest(
                "kubelet-serving",
                node,
                dns=(node, "localhost"),
                ips=(versions.NODE_IP, "127.0.0.1"),
                server=True,
                client=False,
            ),
            CertRequest("coredns", configs.COREDNS_USER),
            # The aggregation layer's client identity, from its own CA (requestheader auth).
            CertRequest("front-proxy-client", "front-proxy-client", ca="front-proxy-ca"),
        ]

    def _write_pki(self) -> None:
        pki = self.pki
        pki.ensure_ca()
        pki.ensure_ca("front-proxy-ca", "space-dra-front-proxy-ca")
        pki.ensure_service_account_keys()
        for req in self._cert_requests():
            pki.ensure_cert(req)
        server = configs.apiserver_url()
        cfg = self.layout.config
        for name in ("kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet"):
            pki.kubeconfig(cfg / f"{name}.kubeconfig", server, name)
        pki.kubeconfig(cfg / "coredns.kubeconfig", server, "coredns")
        pki.kubeconfig(self.layout.kubeconfig, server, "admin", embed=True)

    def components(self, bins: fetch.Binaries) -> dict[str, Component]:
        lay, pki = self.layout, self.pki
        cfg = lay.config
        k = bins.kube
        path_env = (
            f"{bins.containerd_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )
        base_env = {"PATH": path_env, "HOME": str(Path.home()), "LANG": "C.UTF-8"}
        admin_ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
        admin_ctx.load_cert_chain(str(pki.crt("admin")), str(pki.key("admin")))
        apiserver = configs.apiserver_url()
        c: dict[str, Component] = {}

        def add(
            name: str,
            argv: list[str | Path],
            ready: object,
            timeout: float = 60,
            inputs: list[Path] | None = None,
        ) -> None:
            c[name] = Component(
                name=name,
                argv=[str(a) for a in argv],
                logs=lay.logs,
                pids=lay.pids,
                env=dict(base_env),
                ready=ready,  # type: ignore[arg-type]
                ready_timeout=timeout,
                inputs=inputs or [],
            )

        etcd_url = configs.etcd_url()
        peer = f"http://127.0.0.1:{configs.ETCD_PEER_PORT}"
        add(
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
            lambda: _http_ok(f"{etcd_url}/health", expect='"health":"true"'),
        )
        add(
            "containerd",
            [bins.containerd_bin / "containerd", f"--config={cfg / 'containerd.toml'}"],
            lambda: (
                subprocess.run(
                    [str(bins.ctr), "--address", str(lay.containerd_socket), "version"],
                    capture_output=True,
                    check=False,
                    timeout=5,
                ).returncode
                == 0
            ),
            inputs=[cfg / "containerd.toml", cfg / "cni" / "10-space-dra.conflist"],
        )
        add(
            "kube-apiserver",
            [
                k("kube-apiserver"),
                f"--advertise-address={versions.NODE_IP}",
                f"--bind-address={versions.NODE_IP}",
                f"--secure-port={configs.APISERVER_PORT}",
                f"--etcd-servers={etcd_url}",
                f"--service-cluster-ip-range={versions.SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
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
            ],
            lambda: _http_ok(f"{apiserver}/readyz", admin_ctx, "ok"),
            timeout=120,
        )
        add(
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
            lambda: _http_ok(f"https://127.0.0.1:{configs.KCM_PORT}/healthz", _insecure(), "ok"),
        )
        add(
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
            lambda: _http_ok(
                f"https://127.0.0.1:{configs.SCHEDULER_PORT}/healthz", _insecure(), "ok"
            ),
            inputs=[cfg / "kube-scheduler.yaml"],
        )
        add(
            "coredns",
            [bins.coredns, "-conf", cfg / "Corefile"],
            lambda: _http_ok(f"http://127.0.0.1:{configs.COREDNS_READY_PORT}/ready"),
            inputs=[cfg / "Corefile"],
        )
        add(
            "kube-proxy",
            [k("kube-proxy"), f"--config={cfg / 'kube-proxy.yaml'}"],
            lambda: _http_ok(f"http://127.0.0.1:{configs.PROXY_HEALTHZ_PORT}/livez"),
            inputs=[cfg / "kube-proxy.yaml"],
        )
        add(
            "kubelet",
            [
                k("kubelet"),
                f"--config={cfg / 'kubelet.yaml'}",
                f"--kubeconfig={cfg / 'kubelet.kubeconfig'}",
                f"--hostname-override={self.node}",
                f"--node-ip={versions.NODE_IP}",
                f"--root-dir={paths.KUBELET_ROOT}",
            ],
            lambda: _http_ok(
                f"http://127.0.0.1:{configs.KUBELET_HEALTHZ_PORT}/healthz", None, "ok"
            ),
            timeout=90,
            inputs=[cfg / "kubelet.yaml"],
        )
        return c

    def _write_configs(self, bins: fetch.Binaries) -> None:
        lay = self.layout
        configs.containerd_config(lay, bins.cni_bin)
        configs.cni_config(lay)
        configs.scheduler_config(lay)
        configs.kubelet_config(lay, self.node)
        configs.kube_proxy_config(lay, self.node)
        configs.corefile(lay)

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

    def handle(self) -> ClusterHandle:
        lay = self.layout
        return ClusterHandle(
            kubeconfig=lay.kubeconfig,
            kubectl_path=lay.bin / "kubectl",
            helm_path=lay.bin / "helm",
            node_name=self.node,
            node_ip=versions.NODE_IP,
            api_server=configs.apiserver_url(),
            state_dir=lay.state,
            testbox_image=versions.TESTBOX_IMAGE,
            pause_image=versions.PAUSE_IMAGE,
        )

    # --- up ---------------------------------------------------------------------------------------
    def up(self) -> ClusterHandle:
        if os.geteuid() != 0:
            raise RuntimeError("the local cluster needs root (containers, mounts, iptables)")
        t0 = time.monotonic()
        lay = self.layout
        bins = fetch.ensure_all(lay)
        pause = fetch.pause_binary(lay)
        if self.pki.ca_crt.exists() and lay.run.exists():
            comps = self.components(bins)
            if not any(c.running() for c in comps.values()):
                # Left behind by a run that ended without `down` (e.g. the session was killed):
                # clear stale mounts, shims, sockets and network state before starting again.
                for note in self.down():
                    fetch.say(f"stale state: {note}")
        for d in (lay.state, lay.logs, lay.pids, lay.config, lay.run, lay.bin, paths.KUBELET_ROOT):
            d.mkdir(parents=True, exist_ok=True)
        for d in paths.CDI_SPEC_DIRS:
            d.mkdir(parents=True, exist_ok=True)
        hostnet.prepare(lay.host_state)
        mounts.ensure_cgroup(paths.CGROUP_ROOT)
        self._write_pki()
        self._write_configs(bins)
        self._link_bins(bins)
        comps = self.components(bins)
        handle = self.handle()

        comps["etcd"].start()
        comps["containerd"].launch()
        comps["kube-apiserver"].start()
        handle.apply(configs.COREDNS_RBAC)
        for name in ("kube-controller-manager", "kube-scheduler", "coredns", "kube-proxy"):
            comps[name].launch()
        comps["containerd"].wait_ready()
        lay.images.mkdir(parents=True, exist_ok=True)
        for spec in (
            images.pause_image(pause),
            images.testbox_image(bins.busybox, bins.kubectl),
        ):
            images.ensure_image(spec, lay.images, bins.ctr, lay.containerd_socket)
        images.tag_image(
            bins.ctr, lay.containerd_socket, versions.TESTBOX_IMAGE, versions.BUSYBOX_ALIAS
        )
        launched_at = time.time()
        # After a (re)start, the node's Ready condition in etcd may be stale: wait for a heartbeat
        # posted by this kubelet.
        fresh_since = launched_at - 1 if comps["kubelet"].launch() else 0.0
        for name in ORDER:
            comps[name].wait_ready()
        self._wait_node_ready(handle, comps["kubelet"], fresh_since)
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
        fetch.say(f"cluster up in {time.monotonic() - t0:.1f}s; export KUBECONFIG={lay.kubeconfig}")
        return handle

    def _wait_node_ready(self, handle: ClusterHandle, kubelet: Component, since: float) -> None:
        def ready() -> bool:
            res = handle.kubectl_result("get", "node", self.node, "-o", "json")
            if res.returncode != 0:
                return False
            conds = json.loads(res.stdout)["status"].get("conditions", [])
            return any(
                c["type"] == "Ready"
                and c["status"] == "True"
                and _epoch(c.get("lastHeartbeatTime", "")) >= int(since)
                for c in conds
            )

        def check() -> bool:
            if not kubelet.running():
                raise ComponentFailed("kubelet", "exited while waiting for the node", kubelet.log)
            return ready()

        deadline = time.monotonic() + 120
        while not check():
            if time.monotonic() > deadline:
                raise ComponentFailed(
                    "kubelet", f"node {self.node} not Ready after 120s", kubelet.log
                )
            time.sleep(0.5)

    # --- down -------------------------------------------------------------------------------------
    def down(self, purge: bool = False) -> list[str]:
        """Stop what ``up`` started, unmount, undo host network changes. Returns notes."""
        lay = self.layout
        notes: list[str] = []
        bins = fetch.binaries(lay)
        comps = self.components(bins) if lay.pki.exists() and self.pki.ca_crt.exists() else {}
        t0 = time.monotonic()
        if "kubelet" in comps and comps["kubelet"].stop():
            notes.append(f"stopped kubelet ({time.monotonic() - t0:.1f}s)")
        if "containerd" in comps and comps["containerd"].running():
            notes += self._remove_containers(bins)
        notes += self._kill_leftovers()
        for name in reversed(ORDER):
            t0 = time.monotonic()
            # The apiserver can hang in graceful shutdown while clients (watches, exec streams)
            # stay connected; its state is in etcd, so it gets SIGKILL after a short grace.
            grace = 5.0 if name == "kube-apiserver" else 20.0
            if name in comps and name != "kubelet" and comps[name].stop(timeout=grace):
                notes.append(f"stopped {name} ({time.monotonic() - t0:.1f}s)")
        unmounted = mounts.unmount_all([paths.KUBELET_ROOT, lay.state])
        if unmounted:
            notes.append(f"unmounted {len(unmounted)} mounts")
        notes += hostnet.cleanup(lay.host_state, bins.kube("kube-proxy"))
        for ctrl in mounts.cgroup_v1_mounts():
            mounts.remove_empty_dirs(ctrl / paths.CGROUP_ROOT.lstrip("/"))
        for d in (lay.run, lay.pids):
            shutil.rmtree(d, ignore_errors=True)
        if purge:
            shutil.rmtree(paths.KUBELET_ROOT, ignore_errors=True)
            shutil.rmtree(lay.state, ignore_errors=True)
            notes.append(f"removed {lay.state} and {paths.KUBELET_ROOT}")
        return notes

    def _remove_containers(self, bins: fetch.Binaries) -> list[str]:
        ctr = [str(bins.ctr), "--address", str(self.layout.containerd_socket), "-n", "k8s.io"]

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*ctr, *args], capture_output=True, text=True, check=False, timeout=60
            )

        ids = run("containers", "ls", "-q").stdout.split()
        for cid in ids:
            run("tasks", "kill", "-s", "SIGKILL", cid)
        for cid in ids:
            run("tasks", "delete", "--force", cid)
            run("containers", "delete", cid)
        return [f"removed {len(ids)} containers"] if ids else []

    def _kill_leftovers(self) -> list[str]:
        """Kill processes left in our pod cgroups and shims serving our containerd socket."""
        killed = 0
        pids: set[int] = set()
        for ctrl in ("pids", "memory", "cpu"):
            root = Path("/sys/fs/cgroup") / ctrl / paths.CGROUP_ROOT.lstrip("/")
            if root.is_dir():
                for procs in root.rglob("cgroup.procs"):
                    pids.update(int(p) for p in procs.read_text().split())
        sock = str(self.layout.containerd_socket)
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    argv = (proc / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in argv:
                    pids.add(int(proc.name))
        for pid in pids:
            try:
                os.kill(pid, 9)
                killed += 1
            except ProcessLookupError:
                pass
        if pids:
            time.sleep(0.5)
        return [f"killed {killed} leftover processes"] if killed else []

    # --- status -----------------------------------------------------------------------------------
    def status(self) -> dict[str, str]:
        lay = self.layout
        out: dict[str, str] = {}
        if not self.pki.ca_crt.exists():
            return dict.fromkeys(ORDER, "not set up")
        comps = self.components(fetch.binaries(lay))
        for name in ORDER:
            rec = comps[name].record()
            out[name] = f"running (pid {rec.pid})" if comps[name].running() and rec else "stopped"
        return out

"""Run the controller and the kubelet plugin as host processes under the chart's RBAC.

Integration tests exercise the real API server, scheduler, kubelet and
containerd, but want to kill, restart and inspect the driver's processes
directly. So the chart's ServiceAccounts, RBAC and DeviceClass are applied as
rendered by Helm, each component gets a kubeconfig holding a token of its own
ServiceAccount (never cluster-admin), and the components run from this checkout.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localcluster import ClusterHandle
from space_dra.contract import DEFAULT_DRIVER_NAME

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deployments" / "helm" / "space-dra-driver"
RBAC_TEMPLATES = (
    "templates/serviceaccounts.yaml",
    "templates/rbac-controller.yaml",
    "templates/rbac-plugin.yaml",
    "templates/deviceclass.yaml",
    # The tenancy admission policies: the driver runs under the same API-server rules as
    # when the chart installs it (docs/security.md).
    "templates/tenancy.yaml",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


def metric(text: str, name: str, labels: str = "") -> float:
    """Sum of a metric's samples whose label set contains ``labels`` (e.g. 'verb="create"')."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not labels or labels in line):
            match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
            if match:
                total += float(match.group(2))
    return total


@dataclass
class HostDriver:
    cluster: ClusterHandle
    namespace: str
    workdir: Path
    release: str = "it"
    pool_size: int = 4
    resync_seconds: float = 10.0
    driver: str = DEFAULT_DRIVER_NAME
    controller_port: int = field(default_factory=free_port)
    plugin_port: int = field(default_factory=free_port)
    controller: subprocess.Popen[bytes] | None = None
    plugin: subprocess.Popen[bytes] | None = None

    @property
    def node_name(self) -> str:
        """The node whose kubelet the host plugin registers with (the machine's own)."""
        return self.cluster.node_name

    @property
    def fullname(self) -> str:
        return f"{self.release}-space-dra"

    @property
    def controller_sa(self) -> str:
        return f"{self.fullname}-controller"

    @property
    def plugin_sa(self) -> str:
        return f"{self.fullname}-kubelet-plugin"

    @property
    def token_minter(self) -> str:
        return f"{self.fullname}-token-minter"

    def render(self, *show_only: str, values: dict[str, str] | None = None) -> str:
        args = [
            "template",
            self.release,
            str(CHART),
            "-n",
            self.namespace,
            "--kube-version",
            self.cluster.kubernetes_version,
        ]
        for template in show_only:
            args += ["--show-only", template]
        for key, value in (values or {}).items():
            args += ["--set", f"{key}={value}"]
        return self.cluster.helm(*args)

    def install_rbac(self) -> None:
        self.cluster.kubectl("create", "namespace", self.namespace, check=False)
        self.cluster.apply(self.render(*RBAC_TEMPLATES))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_kubeconfig(self.controller_sa)
        # A plugin pod's own token is bound to its node; the admission policy requires it.
        self._write_kubeconfig(self.plugin_sa, node=self.node_name)

    def uninstall(self) -> None:
        self.stop_controller()
        self.stop_plugin()
        self.cluster.kubectl_result(
            "delete", "-f", "-", "--ignore-not-found", input=self.render(*RBAC_TEMPLATES)
        )
        self.cluster.kubectl_result(
            "delete", "resourceslices", "--field-selector", f"spec.driver={self.driver}"
        )
        self.cluster.kubectl_result(
            "delete",
            "namespace",
            self.namespace,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=90s",
        )

    def _write_kubeconfig(self, service_account: str, node: str | None = None) -> Path:
        bound = ["--bound-object-kind", "Node", "--bound-object-name", node] if node else []
        token = self.cluster.kubectl(
            "create", "token", service_account, "-n", self.namespace, "--duration", "6h", *bound
        )
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        cluster = admin["clusters"][0]["cluster"]
        ca = (
            cluster.get("certificate-authority-data")
            or base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
        )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": cluster["server"], "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": service_account, "user": {"token": token.strip()}}],
            "contexts": [{"name": "sa", "context": {"cluster": "local", "user": service_account}}],
            "current-context": "sa",
        }
        path = self.workdir / f"{service_account}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _spawn(
        self, args: list[str], log_name: str, env_extra: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / log_name).open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_extra}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        return subprocess.Popen(
            [sys.executable, "-m", "space_dra", *args], stdout=log, stderr=log, env=env
        )

    def start_controller(
        self, *extra: str, crash_at: str = "", wait: bool = True, lead: bool = True
    ) -> None:
        """Start the controller; with ``wait``, return once it serves /readyz and, with
        ``lead``, once it holds the Lease and is ready (caches synced, pool published).

        A standby replica is ready too, so readiness alone does not say it leads: after a
        crash the old Lease must expire first."""
        assert self.controller is None or self.controller.poll() is not None
        self.controller = self._spawn(
            [
                "controller",
                "--kubeconfig",
                str(self.workdir / f"{self.controller_sa}.kubeconfig"),
                "--namespace",
                self.namespace,
                "--identity",
                f"it-{os.getpid()}",
                "--pool-size",
                str(self.pool_size),
                "--pod-api-server-url",
                "https://kubernetes.default.svc",
                "--plugin-service-account",
                f"{self.namespace}/{self.plugin_sa}",
                "--token-minter-cluster-role",
                self.token_minter,
                "--ownership-secret",
                f"{self.fullname}-ownership",
                "--lease-name",
                f"{self.fullname}-controller",
                "--resync-period",
                str(self.resync_seconds),
                # The integration suites check the binding-condition path too (the chart's
                # default is off); on releases without the gate, auto leaves them out.
                "--binding-conditions",
                "auto",
                "--http-address",
                "127.0.0.1",
                "--http-port",
                str(self.controller_port),
                *extra,
            ],
            "controller.log",
            {"SPACE_DRA_CRASH_AT": crash_at},
        )
        if wait:
            self._wait_http(self.controller_port, "/readyz", "controller")
        if wait and lead:
            self._wait_leading()

    def start_plugin(self, *extra: str, crash_at: str = "", wait: bool = True) -> None:
        assert self.plugin is None or self.plugin.poll() is not None
        self.plugin = self._spawn(
            [
                "kubelet-plugin",
                "--kubeconfig",
                str(self.workdir / f"{self.plugin_sa}.kubeconfig"),
                "--node-name",
                self.node_name,
                "--http-address",
                "127.0.0.1",
                "--http-port",
                str(self.plugin_port),
                *extra,
            ],
            "plugin.log",
            {"SPACE_DRA_CRASH_AT": crash_at},
        )
        if wait:
            self._wait_http(self.plugin_port, "/healthz", "plugin")

    def _wait_http(self, port: int, path: str, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                http_get(port, path)
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{what} did not serve {path} on port {port}; see {self.workdir}")

    def _wait_leading(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if metric(self.controller_metrics(), "space_dra_controller_leader") == 1:
                    http_get(self.controller_port, "/readyz")  # 503 until published
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"controller did not lead and become ready; see {self.workdir}")

    @staticmethod
    def _stop(process: subprocess.Popen[bytes] | None, sig: int) -> None:
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_controller(self, sig: int = signal.SIGTERM) -> None:
        self._stop(self.controller, sig)

    def stop_plugin(self, sig: int = signal.SIGTERM) -> None:
        self._stop(self.plugin, sig)

    @staticmethod
    def wait_exit(process: subprocess.Popen[bytes] | None, timeout: float = 60) -> int:
        """Wait for a process that is expected to crash; return its exit code."""
        assert process is not None
        return process.wait(timeout=timeout)

    def controller_metrics(self) -> str:
        return http_get(self.controller_port, "/metrics")

    def plugin_metrics(self) -> str:
        return http_get(self.plugin_port, "/metrics")

    def log(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace") if path.exists() else ""

"""The comparison drivers, run as host processes on the first node beside the chart's driver.

- ``gobaseline``: ``bench/gobaseline``, Go on ``k8s.io/dynamic-resource-allocation/kubeletplugin``,
  our plugin's node-side work without the namespace;
- ``twin``: ``bench/twin_driver.py``, the same minimal driver in Python on our kubelet layer;
- ``example``: the upstream example driver, only when the benchmark is given its binary
  (``--example-driver``; it is built by hand from its public source, see docs/performance.md).

Each publishes its own node-local pool and gets a DeviceClass selecting its driver name.
They authenticate as one ServiceAccount whose token is bound to the node, as a plugin
pod's is, with the rights a kubelet plugin on the upstream helper needs.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.env import WORKDIR, memory_mb
from localcluster import ClusterHandle
from tests.support.gotools import build

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "space-dra-bench-drivers"
SERVICE_ACCOUNT = "bench-driver"
DEVICES = 64  # each pool's devices: more than one phase keeps claims at once

RBAC = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {SERVICE_ACCOUNT}, namespace: {NAMESPACE}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: space-dra-bench-driver}}
rules:
- apiGroups: [resource.k8s.io]
  resources: [resourceclaims]
  verbs: [get, list, watch]
- apiGroups: [resource.k8s.io]
  resources: [resourceclaims/status]
  verbs: [update, patch]
- apiGroups: [resource.k8s.io]
  resources: [resourceslices]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [nodes]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: space-dra-bench-driver}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: space-dra-bench-driver}}
subjects:
- {{kind: ServiceAccount, name: {SERVICE_ACCOUNT}, namespace: {NAMESPACE}}}
"""


def device_class(driver: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": driver},
            "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{driver}'"}}]},
        }
    )


@dataclass
class HostDriver:
    """One comparison driver: its name in the results, its DRA driver name, its command."""

    kind: str
    driver: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def memory(self) -> dict[str, float]:
        return memory_mb([self.process.pid]) if self.process else {}


def gobaseline(node: str, kubeconfig: Path) -> HostDriver:
    binary = build(REPO / "bench" / "gobaseline", "gobaseline")
    command = [str(binary), "-node", node, "-kubeconfig", str(kubeconfig), "-devices", str(DEVICES)]
    return HostDriver("gobaseline", "gobaseline.bench.space.example.com", command)


def twin(node: str, kubeconfig: Path) -> HostDriver:
    command = [sys.executable, "-m", "bench.twin_driver", "--node-name", node]
    command += ["--kubeconfig", str(kubeconfig), "--devices", str(DEVICES)]
    return HostDriver("twin", "twin.bench.space.example.com", [*command, "--log-level", "warning"])


def example(binary: Path, node: str, kubeconfig: Path) -> HostDriver:
    """The upstream example driver's kubelet plugin, GPU profile (driver gpu.example.com)."""
    command = [str(binary), "--node-name", node, "--kubeconfig", str(kubeconfig)]
    command += ["--cdi-root", "/var/run/cdi", "--num-devices", str(DEVICES)]
    return HostDriver("example", "gpu.example.com", command)


class HostDrivers:
    """Start the comparison drivers on ``cluster``'s first node and stop them again."""

    def __init__(self, cluster: ClusterHandle, example_binary: Path | None = None) -> None:
        self.cluster = cluster
        self.node = cluster.node_name
        self.kubeconfig = WORKDIR / "bench-driver.kubeconfig"
        self.drivers = [gobaseline(self.node, self.kubeconfig), twin(self.node, self.kubeconfig)]
        if example_binary is not None:
            self.drivers.append(example(example_binary, self.node, self.kubeconfig))

    def start(self) -> None:
        WORKDIR.mkdir(parents=True, exist_ok=True)
        self.cluster.apply(RBAC)
        for driver in self.drivers:
            self.cluster.apply(device_class(driver.driver))
        self._write_kubeconfig()
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        for driver in self.drivers:
            log = (WORKDIR / f"{driver.kind}.log").open("ab")
            driver.process = subprocess.Popen(
                driver.command, stdout=log, stderr=log, env=env, cwd=REPO
            )
        for driver in self.drivers:
            self.cluster.wait_for(
                f"{driver.kind}'s ResourceSlice (log: {WORKDIR / driver.kind}.log)",
                lambda d=driver: self._published(d),  # type: ignore[misc]
                timeout=60,
            )
        time.sleep(1)  # registration with the kubelet happens beside publishing

    def _published(self, driver: HostDriver) -> bool:
        if driver.process is not None and driver.process.poll() is not None:
            raise RuntimeError(f"{driver.kind} exited with {driver.process.returncode}")
        items = self.cluster.kubectl_json(
            "get", "resourceslices", "--field-selector", f"spec.driver={driver.driver}"
        )["items"]
        return bool(items)

    def stop(self) -> None:
        """SIGTERM each process this object started, then remove their slices and classes."""
        for driver in self.drivers:
            process = driver.process
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for driver in self.drivers:
            self.cluster.kubectl_result(
                "delete", "resourceslices", "--field-selector", f"spec.driver={driver.driver}"
            )
            self.cluster.kubectl_result(
                "delete", "deviceclass", driver.driver, "--ignore-not-found"
            )

    def _write_kubeconfig(self) -> None:
        """A kubeconfig holding a token of the drivers' ServiceAccount bound to the node."""
        bound = ["--bound-object-kind", "Node", "--bound-object-name", self.node]
        token = self.cluster.kubectl(
            "create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, "--duration", "6h", *bound
        ).strip()
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
            "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
            "contexts": [{"name": "d", "context": {"cluster": "local", "user": SERVICE_ACCOUNT}}],
            "current-context": "d",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

"""A handle on a running local cluster for tests and scripts (kubeconfig, kubectl, helm)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster.nodes import Node


class KubectlError(RuntimeError):
    def __init__(self, args: tuple[str, ...], result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr.strip()}"
        )


@dataclass(frozen=True)
class ClusterHandle:
    """What a test needs to use the cluster.

    ``kubectl(*args)`` runs kubectl against the cluster and returns stdout (raises KubectlError on
    a non-zero exit unless ``check=False``); ``kubectl_json`` parses ``-o json`` output.
    """

    kubeconfig: Path
    kubectl_path: Path
    helm_path: Path
    node_name: str
    node_ip: str
    api_server: str
    state_dir: Path
    testbox_image: str
    pause_image: str
    kubernetes_version: str
    # Every node, the first (``node_name``, on the machine itself) first; ``Node.host_path`` says
    # where a node's ``/var/lib/kubelet/...`` or ``/var/run/...`` is on the machine.
    nodes: tuple[Node, ...]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def env(self) -> dict[str, str]:
        """An environment with KUBECONFIG set and the cluster's bin dir first on PATH."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.kubectl_path.parent}:{os.environ.get('PATH', '')}",
        }

    def run(
        self,
        args: list[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            args,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else self.env(),
            check=False,
        )
        if check and res.returncode != 0:
            raise KubectlError(tuple(args), res)
        return res

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> str:
        res = self.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            check=check,
            timeout=timeout,
        )
        return res.stdout

    def kubectl_result(
        self, *args: str, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            check=False,
            timeout=timeout,
        )

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def apply(self, manifest: str) -> str:
        return self.kubectl("apply", "-f", "-", input=manifest)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        res = self.run(
            [str(self.helm_path), "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            timeout=timeout,
        )
        return res.stdout

    def log_path(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    # --- helpers for tests ---------------------------------------------------------------------
    def create_namespace(self, prefix: str = "t") -> str:
        """Create a uniquely named namespace and wait for its default ServiceAccount."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        self.wait_for(
            f"ServiceAccount default in {name}",
            lambda: self.kubectl_result("get", "sa", "default", "-n", name).returncode == 0,
            timeout=60,
        )
        return name

    def delete_namespace(self, name: str, wait: bool = False) -> None:
        self.kubectl(
            "delete", "namespace", name, "--ignore-not-found", f"--wait={str(wait).lower()}"
        )

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.5)

    def wait_pod_ready(self, namespace: str, name: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the pod is Ready; on timeout raise with its status and events."""
        pod: dict[str, Any] = {}

        def ready() -> bool:
            nonlocal pod
            res = self.kubectl_result("get", "pod", name, "-n", namespace, "-o", "json")
            if res.returncode != 0:
                return False
            pod = json.loads(res.stdout)
            conds = pod.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        try:
            self.wait_for(f"pod {namespace}/{name} Ready", ready, timeout)
        except TimeoutError as exc:
            events = self.kubectl_result(
                "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
            ).stdout
            raise TimeoutError(f"{exc}\nstatus: {json.dumps(pod.get('status'))}\n{events}") from exc
        return pod

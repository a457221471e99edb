"""A handle on a running local cluster for tests and scripts (kubeconfig, kubectl, helm)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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

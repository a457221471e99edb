"""Install the Helm chart on the local cluster with the locally built driver image."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcluster import ClusterHandle
from space_dra.contract import DEFAULT_DRIVER_NAME
from tests.support.hostdriver import CHART


@dataclass
class ChartRelease:
    cluster: ClusterHandle
    image: str
    # The image's manifest digest: a new build under the same tag must still roll the pods.
    image_digest: str
    name: str = "space-dra"
    namespace: str = "space-dra"
    values: dict[str, str] = field(default_factory=dict)
    # Another revision's chart (tests/upgrade), and a values file given before ``values``.
    chart: Path = CHART
    values_file: Path | None = None

    @property
    def fullname(self) -> str:
        return self.name if "space-dra" in self.name else f"{self.name}-space-dra"

    def install(self, *, wait: bool = True) -> None:
        """``helm upgrade --install`` with ``values_file`` and ``values``; without ``wait`` it
        returns as soon as the objects are written (a changed pod template then rolls in the
        background)."""
        repository, _, tag = self.image.rpartition(":")
        values = {
            "image.repository": repository,
            "image.tag": tag,
            "image.pullPolicy": "IfNotPresent",
            "podAnnotations.space-dra/image-digest": self.image_digest.replace("sha256:", "")[:32],
            **self.values,
        }
        args = [
            "upgrade",
            "--install",
            self.name,
            str(self.chart),
            "-n",
            self.namespace,
            "--create-namespace",
        ]
        if self.values_file is not None:
            args += ["-f", str(self.values_file)]
        for key, value in values.items():
            args += ["--set-string", f"{key}={value}"]
        if not wait:
            self.cluster.helm(*args, timeout=120)
            return
        self.cluster.helm(*args, "--wait", "--timeout", "180s", timeout=240)
        self.cluster.wait_for("ResourceSlices published", self._published, timeout=60)

    @property
    def plugin_daemonset(self) -> str:
        return f"{self.fullname}-kubelet-plugin"

    def _published(self) -> bool:
        items = self.cluster.kubectl_json(
            "get", "resourceslices", "--field-selector", f"spec.driver={DEFAULT_DRIVER_NAME}"
        )["items"]
        return bool(items)

    def uninstall(self) -> None:
        self.cluster.helm(
            "uninstall", self.name, "-n", self.namespace, "--wait", "--timeout", "120s", check=False
        )

    def pods(self, component: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.kubectl_json(
            "get", "pods", "-n", self.namespace, "-l", f"app.kubernetes.io/component={component}"
        )["items"]
        return items

    def logs(self, component: str) -> str:
        return self.cluster.kubectl(
            "logs",
            "-n",
            self.namespace,
            "-l",
            f"app.kubernetes.io/component={component}",
            "--tail=-1",
            check=False,
        )

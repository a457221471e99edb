"""``kubectl space`` through the real kubectl binary, on the chart-installed driver.

kubectl finds the plugin as any other: ``kubectl-space`` on PATH (the virtualenv's bin/, where
``pip install`` put the console script). The claims are made in every state the list shows:
ready with two devices (two namespaces), failed (a role the class's policy refuses), pending (no
pod has asked for it yet), and made from a template for a pod. A tenant whose RBAC covers only
its own namespace sees describe's forbidden parts named, not a failure.

The pool has 4 slots in this package (tests/e2e/conftest.py): the claims here take all 4.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import ClusterHandle
from space_dra.contract import DEFAULT_DRIVER_NAME
from tests.support.chart import ChartRelease
from tests.support.workloads import (
    claim_manifest,
    pod_manifest,
    template_manifest,
    wait_claim_failed,
    wait_claim_ready,
)

pytestmark = pytest.mark.e2e

PLUGIN = Path(sys.executable).parent / "kubectl-space"
NAMESPACE_CONFIG = {"apiVersion": "space.resource.example.com/v1alpha1", "kind": "NamespaceConfig"}


def kubectl_space(
    cluster: ClusterHandle, *args: str, kubeconfig: Path | None = None
) -> tuple[int, str, str]:
    """``kubectl space ...`` as a user runs it: the cluster's kubectl, the plugin on PATH."""
    assert PLUGIN.is_file(), f"{PLUGIN} is missing: run make venv (pip install -e .)"
    env = cluster.env()
    env["PATH"] = f"{PLUGIN.parent}:{env['PATH']}"
    env["KUBECONFIG"] = str(kubeconfig or cluster.kubeconfig)
    result = cluster.run(
        [str(cluster.kubectl_path), "space", *args], check=False, env=env, timeout=60
    )
    return result.returncode, result.stdout, result.stderr


def table(text: str) -> dict[str, dict[str, str]]:
    """kubectl-style columns (3+ spaces apart) keyed by the first one."""
    lines = text.splitlines()
    header = re.split(r"\s{3,}", lines[0].strip())
    rows = [dict(zip(header, re.split(r"\s{3,}", line.strip()), strict=True)) for line in lines[1:]]
    return {row[header[0]]: row for row in rows}


@pytest.fixture(scope="module")
def installed(chart: ChartRelease) -> ChartRelease:
    # test_demo.py's last test uninstalls the package's release; install it again if so.
    chart.install()
    return chart


@pytest.fixture(scope="module")
def claims(local_cluster: ClusterHandle, installed: ChartRelease) -> Iterator[dict[str, Any]]:
    """One claim in each state, in a namespace of its own; what each should show."""
    cluster = local_cluster
    ws = cluster.create_namespace("kspace")
    image = cluster.testbox_image
    refused = {**NAMESPACE_CONFIG, "role": "cluster-admin"}
    cluster.apply(claim_manifest(ws, "pair", count=2))
    cluster.apply(pod_manifest(ws, "pair-user", image, claim="pair"))
    cluster.apply(claim_manifest(ws, "bad", config=refused))
    cluster.apply(pod_manifest(ws, "bad-user", image, claim="bad"))
    cluster.apply(claim_manifest(ws, "waiting"))
    cluster.apply(template_manifest(ws, "per-pod"))
    cluster.apply(pod_manifest(ws, "worker", image, template="per-pod"))
    try:
        cluster.wait_pod_ready(ws, "pair-user", timeout=150)
        cluster.wait_pod_ready(ws, "worker", timeout=150)
        generated = cluster.kubectl_json("get", "pod", "worker", "-n", ws)["status"][
            "resourceClaimStatuses"
        ][0]["resourceClaimName"]
        yield {
            "workspace": ws,
            "pair": wait_claim_ready(cluster, ws, "pair"),
            "bad": wait_claim_failed(cluster, ws, "bad"),
            "generated": generated,
            "worker": wait_claim_ready(cluster, ws, generated),
        }
    finally:
        cluster.delete_namespace(ws, wait=True)


def test_list_all_namespaces_shows_every_state(
    local_cluster: ClusterHandle, claims: dict[str, Any]
) -> None:
    ws = claims["workspace"]
    shown: tuple[int, str, str] = (0, "", "")

    def bad_shows_failed() -> bool:
        # With binding conditions the scheduler takes a failed claim's allocation back and
        # allocates it again every few seconds, and the controller refuses it again.
        nonlocal shown
        shown = kubectl_space(local_cluster, "list", "-A")
        row = table(shown[1]).get(f"{ws}/bad", {}) if shown[0] == 0 and shown[1] else {}
        return row.get("STATE") == "Failed: InvalidConfig"

    local_cluster.wait_for("kubectl space list -A to show bad as Failed", bad_shows_failed, 60)
    _, out, err = shown
    print(f"$ kubectl space list -A\n{out}{err}")
    rows = table(out)
    assert rows[f"{ws}/pair"]["NAMESPACE"] == ",".join(claims["pair"])
    assert rows[f"{ws}/pair"]["STATE"] == "Ready"
    assert rows[f"{ws}/pair"]["PODS"] == "pair-user"
    assert rows[f"{ws}/bad"]["NAMESPACE"] == "<none>"
    assert rows[f"{ws}/waiting"]["STATE"] == "Pending"
    assert rows[f"{ws}/waiting"]["PODS"] == "<none>"
    worker = rows[f"{ws}/{claims['generated']}"]
    assert (worker["NAMESPACE"], worker["STATE"], worker["PODS"]) == (
        claims["worker"][0],
        "Ready",
        "worker",
    )
    assert "cluster-admin" in claims["bad"]


def test_json_and_the_namespace_flag(local_cluster: ClusterHandle, claims: dict[str, Any]) -> None:
    ws = claims["workspace"]
    code, out, err = kubectl_space(local_cluster, "list", "-n", ws, "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["driver"] == DEFAULT_DRIVER_NAME and document["warnings"] == []
    states = {item["name"]: item["state"] for item in document["items"]}
    # bad is Failed, or Pending while the scheduler allocates it again (see above).
    assert states.pop("bad") in ("Failed", "Pending")
    assert states == {"pair": "Ready", "waiting": "Pending", claims["generated"]: "Ready"}
    generated = next(i for i in document["items"] if i["name"] == claims["generated"])
    assert generated["podClaimName"] == "space"


def test_describe_shows_policy_objects_health_and_events(
    local_cluster: ClusterHandle, installed: ChartRelease, claims: dict[str, Any]
) -> None:
    ws = claims["workspace"]
    code, out, err = kubectl_space(local_cluster, "describe", "pair", "-n", ws)
    print(f"$ kubectl space describe pair -n {ws}\n{out}{err}")
    assert code == 0, err
    for namespace in claims["pair"]:
        assert f"Namespace {namespace}:" in out
    assert re.search(r"^ +role: +admin$", out, re.MULTILINE)
    assert len(re.findall(r"^ +ServiceAccount +space-user ", out, re.MULTILINE)) == 2
    # A warm namespace is handed over without an Event (two writes); a refusal has one.
    code, refused, err = kubectl_space(local_cluster, "describe", "bad", "-n", ws)
    print(f"$ kubectl space describe bad -n {ws}\n{refused}{err}")
    assert code == 0, err
    events = refused[refused.index("Events:") :]
    assert "InvalidNamespaceConfig" in events, refused
    code, out, err = kubectl_space(local_cluster, "describe", "pair", "-n", ws, "-o", "yaml")
    document = yaml.safe_load(out)
    # The default --policy-configmap is the ConfigMap the chart made for this release.
    assert (
        document["installation"]["configMap"]
        == f"{installed.namespace}/{installed.fullname}-policy"
    )
    assert document["installation"]["error"] is None
    assert [n["phase"] for n in document["namespaces"]] == ["Active", "Active"]
    assert document["pods"]["items"] == [{"name": "pair-user", "phase": "Running"}]
    assert all(
        h["resourceID"].startswith(f"{DEFAULT_DRIVER_NAME}/") for h in document["health"]["items"]
    )
    code, out, err = kubectl_space(local_cluster, "describe", "bad", "-n", ws)
    assert code == 0 and "refused: " in out and "cluster-admin" in out


def test_errors_are_one_line(local_cluster: ClusterHandle, claims: dict[str, Any]) -> None:
    code, out, err = kubectl_space(local_cluster, "describe", "nope", "-n", claims["workspace"])
    assert (code, out) == (1, "")
    assert err == f'error: ResourceClaim "nope" not found in namespace {claims["workspace"]}\n'


def tenant_kubeconfig(cluster: ClusterHandle, namespace: str, path: Path) -> Path:
    """A user who may read claims, pods and events in ``namespace`` only."""
    cluster.kubectl("create", "serviceaccount", "tenant", "-n", namespace)
    cluster.kubectl(
        "create", "role", "reader", "-n", namespace,
        "--verb=get,list,watch", "--resource=resourceclaims.resource.k8s.io,pods,events",
    )  # fmt: skip
    cluster.kubectl(
        "create", "rolebinding", "tenant-reader", "-n", namespace,
        "--role=reader", f"--serviceaccount={namespace}:tenant",
    )  # fmt: skip
    token = cluster.kubectl("create", "token", "tenant", "-n", namespace).strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    cluster_entry = admin["clusters"][0]["cluster"]
    if "certificate-authority" in cluster_entry:
        ca = Path(cluster_entry.pop("certificate-authority")).read_bytes()
        cluster_entry["certificate-authority-data"] = base64.b64encode(ca).decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": cluster_entry}],
                "users": [{"name": "tenant", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "tenant",
                        "context": {"cluster": "local", "user": "tenant", "namespace": namespace},
                    }
                ],
                "current-context": "tenant",
            }
        )
    )
    return path


def test_a_tenant_sees_what_its_rbac_allows(
    local_cluster: ClusterHandle, claims: dict[str, Any], tmp_path: Path
) -> None:
    ws = claims["workspace"]
    config = tenant_kubeconfig(local_cluster, ws, tmp_path / "tenant")
    # describe: the claim and its pods are readable; the provisioned namespaces and the
    # cluster-scope lists (objects, Events) are not, and each section says so.
    code, out, err = kubectl_space(local_cluster, "describe", "pair", kubeconfig=config)
    print(f"$ kubectl space describe pair   # as the tenant\n{out}{err}")
    assert code == 0, err
    assert re.search(r"^State: +Ready$", out, re.MULTILINE)
    assert "<cannot read the Namespace>" in out
    assert "cannot read ServiceAccounts in" in out and "forbidden" in out
    assert "cannot read Events in" not in out, "Events of its own namespace are readable"
    assert re.search(r"^ +pair-user +Running$", out, re.MULTILINE)
    # list needs list permission in the tenant's own namespace only.
    code, out, err = kubectl_space(local_cluster, "list", kubeconfig=config)
    print(f"$ kubectl space list   # as the tenant\n{out}{err}")
    assert code == 0, err
    assert re.search(r"^pair +\S+ +Ready ", out, re.MULTILINE)
    # Across namespaces it needs more, and says so in one line.
    code, out, err = kubectl_space(local_cluster, "list", "-A", kubeconfig=config)
    assert (code, out) == (1, "")
    assert "forbidden" in err and err.count("\n") == 1

"""The local cluster is a working Kubernetes: node, pods, logs, exec, in-cluster API, DRA API."""

from __future__ import annotations

import datetime
import json
import re
import ssl
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import ClusterHandle, versions

pytestmark = pytest.mark.cluster


@pytest.fixture
def namespace(local_cluster: ClusterHandle) -> Iterator[str]:
    ns = local_cluster.create_namespace("basics")
    yield ns
    local_cluster.delete_namespace(ns)


def pod_manifest(name: str, namespace: str, image: str, script: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", script],
                    }
                ],
            },
        }
    )


def test_every_node_is_ready_with_pinned_versions(local_cluster: ClusterHandle) -> None:
    listed = local_cluster.kubectl_json("get", "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in listed) == sorted(local_cluster.node_names)
    assert local_cluster.nodes[0].ip == local_cluster.node_ip
    for expected in local_cluster.nodes:
        node = local_cluster.kubectl_json("get", "node", expected.name)
        conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conds["Ready"] == "True"
        info = node["status"]["nodeInfo"]
        assert info["kubeletVersion"] == f"v{local_cluster.kubernetes_version}"
        assert info["containerRuntimeVersion"].startswith(
            f"containerd://{versions.CONTAINERD.upstream}"
        )
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addresses["InternalIP"] == expected.ip
    server = local_cluster.kubectl("version", "-o", "json")
    assert (
        json.loads(server)["serverVersion"]["gitVersion"] == f"v{local_cluster.kubernetes_version}"
    )
    assert local_cluster.kubectl_result("get", "sa", "default", "-n", "default").returncode == 0


def test_busybox_pod_runs_and_logs_and_exec_work(
    local_cluster: ClusterHandle, namespace: str
) -> None:
    marker = f"hello-{uuid.uuid4().hex[:6]}"
    local_cluster.apply(
        pod_manifest("bb", namespace, local_cluster.testbox_image, f"echo {marker}; sleep 3600")
    )
    pod = local_cluster.wait_pod_ready(namespace, "bb")
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["podIP"].startswith("10.88.")
    assert marker in local_cluster.kubectl("logs", "bb", "-n", namespace)
    out = local_cluster.kubectl("exec", "bb", "-n", namespace, "--", "printenv", "HOSTNAME")
    assert out.strip() == "bb"
    out = local_cluster.kubectl("exec", "bb", "-n", namespace, "--", "cat", "/etc/resolv.conf")
    assert f"nameserver {local_cluster.node_ip}" in out
    assert f"search {namespace}.svc.cluster.local" in out


def test_pod_reaches_api_server_through_service_dns_with_own_token(
    local_cluster: ClusterHandle, namespace: str
) -> None:
    local_cluster.apply(pod_manifest("api", namespace, local_cluster.testbox_image, "sleep 3600"))
    local_cluster.wait_pod_ready(namespace, "api")
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = (
        "kubectl --server=https://kubernetes.default.svc"
        f" --certificate-authority={sa}/ca.crt --token=$(cat {sa}/token)"
        " auth whoami -o json"
    )
    out = local_cluster.kubectl("exec", "api", "-n", namespace, "--", "sh", "-c", script)
    review = json.loads(out)
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:default"
    # The name resolves through cluster DNS to the first service IP (kube-proxy routes it).
    out = local_cluster.kubectl(
        "exec", "api", "-n", namespace, "--", "nslookup", "kubernetes.default.svc.cluster.local"
    )
    assert versions.FIRST_SERVICE_IP in out
    # The same token must not be accepted for something the SA may not do.
    res = local_cluster.kubectl_result(
        "exec",
        "api",
        "-n",
        namespace,
        "--",
        "sh",
        "-c",
        script.replace("auth whoami -o json", "get secrets -n kube-system"),
    )
    assert res.returncode != 0
    assert "forbidden" in (res.stdout + res.stderr).lower()


def test_resource_v1_is_served_and_deviceclass_can_be_created(
    local_cluster: ClusterHandle,
) -> None:
    versions_served = local_cluster.kubectl("api-versions").split()
    assert "resource.k8s.io/v1" in versions_served
    name = f"basics-{uuid.uuid4().hex[:8]}.example.com"
    manifest = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": 'device.driver == "basics.example.com"'}}]},
    }
    local_cluster.apply(json.dumps(manifest))
    try:
        got = local_cluster.kubectl_json("get", "deviceclass", name)
        assert got["spec"]["selectors"][0]["cel"]["expression"].startswith("device.driver")
    finally:
        local_cluster.kubectl("delete", "deviceclass", name, "--ignore-not-found")


DRA_WORDS = re.compile(
    r"dynamicresources|resourceclaim|resourceslice|deviceclass|resource\.k8s\.io|(?<![-\w])dra(?![-\w])",
    re.IGNORECASE,
)


WORKLOAD_LINE = re.compile(r' (pod=|pluginName=|item="(claim|pod):)')
START_MARKER = re.compile(r"=== localcluster: starting \S+ at (.+) ===")
KLOG_ERROR = re.compile(r"^[EF](\d{4} \d{2}:\d{2}:\d{2})\.\d+ ")
STARTUP_WINDOW = datetime.timedelta(seconds=60)


# Not about the component's own start: the API server was away for a moment (a test restarted
# it, or the component came up first), which every client logs and retries.
TRANSIENT = re.compile(
    r"connection refused|connection reset by peer|http2: client connection lost|"
    r"\bEOF\b|context canceled|the server is currently unable to handle|"
    r"apiserver not ready|TLS handshake timeout|i/o timeout|watch chan error"
)


def _startup_errors(text: str) -> list[str]:
    """klog error lines logged in the first minute after the component's last start.

    Lines about a particular pod (``pod=...``), claim or pod work item (``item="claim:..."``, the
    controller manager's claim controller racing a deletion: ``make demo`` deletes its claim well
    within the first minute) or DRA plugin (``pluginName=...``) are left out: they belong to
    workloads (pods whose driver is not running) or to a plugin's own lifecycle (a test stopping
    its plugin cancels the kubelet's health stream), not to the component's start.
    So are transient connection errors to the API server (``TRANSIENT``): suites that restart the
    API server make every component log those, whatever order the suites run in.
    """
    starts = list(START_MARKER.finditer(text))
    assert starts, "no start marker in the log"
    started = datetime.datetime.strptime(starts[-1].group(1), "%a %b %d %H:%M:%S %Y")
    errors = []
    for line in text[starts[-1].end() :].splitlines():
        m = KLOG_ERROR.match(line)
        if not m:
            continue
        when = datetime.datetime.strptime(f"{started.year}{m.group(1)}", "%Y%m%d %H:%M:%S")
        if when - started > STARTUP_WINDOW or TRANSIENT.search(line):
            continue
        if not WORKLOAD_LINE.search(line):
            errors.append(line)
    return errors


@pytest.mark.parametrize("component", ["kube-scheduler", "kube-controller-manager", "kubelet"])
def test_no_dra_errors_in_component_logs_at_start(
    local_cluster: ClusterHandle, component: str
) -> None:
    # Every node's kubelet (kubelet, kubelet@<node>, ...).
    names = (
        [n.component(component) for n in local_cluster.nodes]
        if component == "kubelet"
        else [component]
    )
    for name in names:
        text = local_cluster.log_path(name).read_text(errors="replace")
        bad = [line for line in _startup_errors(text) if DRA_WORDS.search(line)]
        assert not bad, f"{name}:\n" + "\n".join(bad[:20])
        # The components did start their DRA parts (so the absence of errors means something).
        since_start = text[text.rfind("=== localcluster: starting") :]
        if component == "kube-controller-manager":
            assert re.search(r"resourceclaim|resource-claim", since_start, re.IGNORECASE)
        if component == "kubelet":
            assert "Creating Dynamic Resource Allocation (DRA) manager" in since_start, name


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k.lower(): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def test_scheduler_runs_dynamic_resources_plugin(local_cluster: ClusterHandle) -> None:
    pki = local_cluster.state_dir / "pki"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the scheduler serves a self-signed cert
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    with urllib.request.urlopen("https://127.0.0.1:10259/configz", context=ctx, timeout=10) as r:
        configz = json.load(r)
    # Up to 1.35 /configz shows the internal Go field names (Profiles, Plugins, ...); from 1.36
    # the versioned ones (profiles, plugins, ...).
    config = _lower_keys(configz["componentconfig"])
    enabled = [p["name"] for p in config["profiles"][0]["plugins"]["multipoint"]["enabled"]]
    assert "DynamicResources" in enabled


def test_helm_installs_and_uninstalls_a_chart(local_cluster: ClusterHandle, tmp_path: Path) -> None:
    assert f"v{versions.HELM}" in local_cluster.helm("version", "--short")
    chart = tmp_path / "smoke"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: smoke\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
        "data:\n  value: {{ .Values.value | quote }}\n"
    )
    (chart / "values.yaml").write_text("value: from-values\n")
    ns = local_cluster.create_namespace("helm")
    try:
        local_cluster.helm("install", "smoke", str(chart), "-n", ns, "--set", "value=hi", "--wait")
        cm = local_cluster.kubectl_json("get", "configmap", "smoke-cm", "-n", ns)
        assert cm["data"]["value"] == "hi"
        local_cluster.helm("uninstall", "smoke", "-n", ns, "--wait")
        res = local_cluster.kubectl_result("get", "configmap", "smoke-cm", "-n", ns)
        assert res.returncode != 0
    finally:
        local_cluster.delete_namespace(ns)

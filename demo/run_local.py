"""`make demo`: the project's main job, on the local cluster.

Brings up the local Kubernetes (building it on first use), builds the driver image
and imports it, installs the Helm chart, then walks through demo/namespace-test.yaml
and prints what a user would see. The driver stays installed afterwards so you can
keep experimenting (`export KUBECONFIG=$PWD/.cluster/kubeconfig`).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from localcluster import ClusterHandle, ensure_cluster
from localcluster.driverimage import build_driver_image, import_driver_image

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "deployments" / "helm" / "space-dra-driver"
DEMO = REPO / "demo" / "namespace-test.yaml"
RELEASE, RELEASE_NAMESPACE = "space-dra", "space-dra"
CA_DATA = re.compile(r'(certificate-authority-data: )"?[A-Za-z0-9+/=]{40,}"?')


def heading(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(cluster: ClusterHandle, *args: str, redact: bool = False) -> str:
    print(f"$ kubectl {' '.join(args)}", flush=True)
    result = cluster.kubectl_result(*args)
    output = result.stdout + result.stderr
    if redact:
        output = CA_DATA.sub(r"\1<redacted: base64 CA bundle>", output)
    print(output.rstrip(), flush=True)
    return result.stdout


def in_pod(cluster: ClusterHandle, pod: str, *command: str, redact: bool = False) -> str:
    """Show a command's output from inside one of the demo's pods."""
    return show(cluster, "exec", "-n", "namespace-test", pod, "--", *command, redact=redact)


def main() -> int:
    heading("Local cluster (python -m localcluster up)")
    cluster = ensure_cluster()
    show(cluster, "get", "nodes", "-o", "wide")

    heading("Driver image, built without Docker and imported into containerd")
    image = build_driver_image()
    import_driver_image(image)
    print(f"{image.reference}  ({image.size / 1e6:.0f} MB, {image.digest[:19]})")

    heading("helm upgrade --install space-dra deployments/helm/space-dra-driver")
    repository, _, tag = image.reference.rpartition(":")
    cluster.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "-n",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--set-string",
        f"image.repository={repository}",
        "--set-string",
        f"image.tag={tag}",
        "--set-string",
        f"podAnnotations.space-dra/image-digest={image.digest.removeprefix('sha256:')[:32]}",
        "--wait",
        "--timeout",
        "180s",
        timeout=240,
    )
    # One kubelet plugin per node (a DaemonSet), one controller.
    show(cluster, "get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide")

    heading("kubectl apply -f demo/namespace-test.yaml")
    manifest = DEMO.read_text()
    print(cluster.kubectl("apply", "-f", "-", input=manifest).rstrip())
    for pod in ("pod0", "pod1"):
        cluster.wait_pod_ready("namespace-test", pod, timeout=180)
    # On a cluster of several nodes the two pods may run on different nodes: each node's plugin
    # prepares the same claim.
    show(cluster, "get", "pods", "-n", "namespace-test", "-o", "wide")

    heading("The ephemeral namespace")
    show(cluster, "get", "namespaces")

    heading("What the driver injected into each pod")
    env = in_pod(cluster, "pod0", "printenv")
    in_pod(cluster, "pod1", "printenv")
    namespace = next(
        line.split("=", 1)[1]
        for line in env.splitlines()
        if line.startswith("TEST_CLAIM_NAMESPACE=")
    )

    heading("The mounted kubeconfig (it reads the token from the mounted token file)")
    in_pod(cluster, "pod0", "cat", "/etc/test-claim/kubeconfig", redact=True)
    in_pod(cluster, "pod0", "ls", "-l", "/etc/test-claim/")

    heading("Using the credentials from inside pod0 (the local demo image carries kubectl)")
    use = "export KUBECONFIG=$TEST_CLAIM_KUBECONFIG; "
    in_pod(
        cluster,
        "pod0",
        "sh",
        "-c",
        use + "kubectl create configmap hello --from-literal=from=pod0 && kubectl get configmaps",
    )
    in_pod(cluster, "pod1", "sh", "-c", use + "kubectl get configmap hello -o name")
    in_pod(cluster, "pod0", "sh", "-c", use + "kubectl get pods -n namespace-test")

    heading("The claim records what was provisioned")
    show(
        cluster,
        "get",
        "resourceclaim",
        "test-claim",
        "-n",
        "namespace-test",
        "-o",
        "jsonpath={.status.devices[0].data}{'\\n'}{.status.devices[0].conditions[0].message}{'\\n'}",
    )

    heading("kubectl delete -f demo/namespace-test.yaml")
    started = time.monotonic()
    print(cluster.kubectl("delete", "-f", "-", "--wait=true", input=manifest, timeout=240).rstrip())
    cluster.wait_for(
        f"namespace {namespace} deleted",
        lambda: cluster.kubectl_result("get", "namespace", namespace).returncode != 0,
        timeout=180,
    )
    print(f"(namespace {namespace} gone {time.monotonic() - started:.0f}s after the delete)")
    show(cluster, "get", "namespaces")

    heading("Done")
    print(
        "The driver is still installed. Try it yourself:\n"
        "  export KUBECONFIG=$PWD/.cluster/kubeconfig PATH=$PWD/.cluster/bin:$PATH\n"
        "  kubectl apply -f demo/namespace-per-pod.yaml     # one namespace per pod\n"
        "  kubectl apply -f demo/namespace-quota.yaml       # a restricted namespace with a quota\n"
        "  make cluster-down                                # stop the local cluster"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

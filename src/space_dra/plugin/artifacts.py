"""The credential files of one prepared device: kubeconfig, token, CA and namespace.

They go into the device's artifact directory, bind-mounted read-only into containers
and published atomically by the layer's
:class:`~space_dra.kubeletplugin.ArtifactStore` (the kubelet's projected-volume
layout), so a rotated token is seen by running containers, never a half-written one.
The token never leaves these files: not in env vars, CDI specs, logs or events.
"""

from __future__ import annotations

import base64
import json

FILES = ("kubeconfig", "token", "ca.crt", "namespace")


def kubeconfig(server: str, ca_pem: bytes, namespace: str, token_path: str) -> bytes:
    """A kubeconfig that works from inside the container.

    The token is referenced by its in-container path rather than embedded, so
    clients that re-read ``tokenFile`` (client-go does, every minute) keep working
    across rotations without reloading the kubeconfig. Every value is written as a
    JSON string, which YAML reads as a double-quoted scalar: nothing a value
    contains can change the document's structure, and it is cheaper than a YAML
    emitter on the prepare path.
    """
    quoted = {
        "server": json.dumps(server),
        "ca": json.dumps(base64.b64encode(ca_pem).decode()),
        "namespace": json.dumps(namespace),
        "token": json.dumps(token_path),
    }
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: space\n"
        "  cluster:\n"
        f"    server: {quoted['server']}\n"
        f"    certificate-authority-data: {quoted['ca']}\n"
        "users:\n"
        "- name: space\n"
        "  user:\n"
        f"    tokenFile: {quoted['token']}\n"
        "contexts:\n"
        "- name: space\n"
        "  context:\n"
        "    cluster: space\n"
        "    user: space\n"
        f"    namespace: {quoted['namespace']}\n"
        "current-context: space\n"
    ).encode()


def render(
    mount_path: str, server: str, ca_pem: bytes, namespace: str, token: str
) -> dict[str, bytes]:
    """The files for one device; ``mount_path`` is where the container sees them."""
    return {
        "kubeconfig": kubeconfig(server, ca_pem, namespace, f"{mount_path}/token"),
        "token": token.encode(),
        "ca.crt": ca_pem,
        "namespace": namespace.encode(),
    }

"""How both components reach the API server: the client configuration and the connections.

Connections are kept open while idle for :data:`IDLE_CONNECTION_SECONDS`, like Go's HTTP
client (90 s), not httpx's 5 s: the kubelet plugin talks to the API server only when a pod
arrives, often more than 5 s apart, and a new TLS connection on every prepare cost more
than the request itself (measured in docs/performance.md). The API server closes idle
connections itself after 90 s; a connection it closed is noticed and dropped before reuse.
"""

from __future__ import annotations

import base64
from pathlib import Path

import httpx2
from lightkube import KubeConfig
from lightkube.config.client_adapter import verify_cluster
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.exceptions import ConfigError

IDLE_CONNECTION_SECONDS = 60.0


class ClientConfigError(ValueError):
    """No usable client configuration: the kubeconfig file, or the in-cluster one."""


def load_config(kubeconfig: str | None) -> KubeConfig:
    """In-cluster config when no kubeconfig is given, else that file."""
    try:
        if kubeconfig:
            return KubeConfig.from_file(kubeconfig)
        return KubeConfig.from_service_account()
    except ConfigError as exc:
        where = kubeconfig or "in-cluster (no --kubeconfig given)"
        raise ClientConfigError(f"cannot load the client configuration {where}: {exc}") from exc


def current_context(config: KubeConfig) -> SingleConfig:
    try:
        single = config.get()
    except ConfigError as exc:
        raise ClientConfigError(f"the client configuration has no usable context: {exc}") from exc
    if single is None:
        raise ClientConfigError("the client configuration has no current context")
    return single


def transport(config: SingleConfig) -> httpx2.AsyncHTTPTransport:
    """Connections to the configured cluster, verified as lightkube would, kept open longer."""
    if config.user is None:
        raise ClientConfigError("the client configuration's context names no user")
    return httpx2.AsyncHTTPTransport(
        verify=verify_cluster(config.cluster, config.user, config.abs_file),
        limits=httpx2.Limits(
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=IDLE_CONNECTION_SECONDS,
        ),
    )


def cluster_ca(config: SingleConfig) -> bytes:
    """The PEM CA bundle the client trusts, to hand on to workloads."""
    cluster = config.cluster
    if cluster.certificate_auth_data:
        return base64.b64decode(cluster.certificate_auth_data)
    if cluster.certificate_auth:
        return Path(cluster.certificate_auth).read_bytes()
    raise ValueError("the client configuration has no certificate authority to hand to pods")

"""The one adapter between this project and the Kubernetes API.

Everything else talks to :class:`KubeAPI`, a small protocol with the handful of
calls the controller and the plugin make. :class:`LightkubeAPI` implements it over
lightkube's ``AsyncClient`` (small, typed, async, with server-side apply and the
TokenRequest subresource); :mod:`space_dra.kube_memory` implements it in memory for
unit tests and benchmarks. HTTP failures are turned into the tiny exception
hierarchy below at a single choke point, so callers never see lightkube's types.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.resource_v1 import ResourceClaim

log = logging.getLogger(__name__)


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when none was received)."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """409: a resourceVersion conflict or an object that already exists."""


class Forbidden(KubeError):
    pass


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


class KubeAPI(Protocol):
    """The API calls this project makes, and nothing else."""

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim: ...

    async def create_token(
        self, namespace: str, service_account: str, expiration_seconds: int
    ) -> IssuedToken: ...


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn lightkube/httpx failures into KubeError subclasses, naming ``what``."""
    try:
        yield
    except ApiError as exc:
        code = exc.status.code or 0
        message = f"{what}: {exc.status.message or exc}"
        reason = exc.status.reason or ""
        if code == 404:
            raise NotFound(message, code, reason) from exc
        if code == 409:
            raise Conflict(message, code, reason) from exc
        if code == 403:
            raise Forbidden(message, code, reason) from exc
        raise KubeError(message, code, reason) from exc
    except httpx2.HTTPError as exc:
        raise KubeError(f"{what}: {type(exc).__name__}: {exc}") from exc


def load_config(kubeconfig: str | None) -> KubeConfig:
    """In-cluster config when no kubeconfig is given, else that file."""
    if kubeconfig:
        return KubeConfig.from_file(kubeconfig)
    return KubeConfig.from_service_account()


def cluster_ca(config: SingleConfig) -> bytes:
    """The PEM CA bundle the client trusts, to hand on to workloads."""
    cluster = config.cluster
    if cluster.certificate_auth_data:
        return base64.b64decode(cluster.certificate_auth_data)
    if cluster.certificate_auth:
        return Path(cluster.certificate_auth).read_bytes()
    raise ValueError("the client configuration has no certificate authority to hand to pods")


class LightkubeAPI:
    """KubeAPI over lightkube's AsyncClient."""

    def __init__(self, config: KubeConfig, field_manager: str) -> None:
        self._client = AsyncClient(
            config, field_manager=field_manager, timeout=httpx2.Timeout(15.0)
        )

    @property
    def config(self) -> SingleConfig:
        return self._client.config

    async def close(self) -> None:
        await self._client.close()

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim:
        with translated(f"get ResourceClaim {namespace}/{name}"):
            return await self._client.get(ResourceClaim, name, namespace=namespace)

    async def create_token(
        self, namespace: str, service_account: str, expiration_seconds: int
    ) -> IssuedToken:
        request = ServiceAccount.Token(
            spec=TokenRequestSpec(audiences=[], expirationSeconds=expiration_seconds)
        )
        with translated(f"create token for ServiceAccount {namespace}/{service_account}"):
            issued = await self._client.create(request, service_account, namespace=namespace)
        if (
            issued.status is None
            or not issued.status.token
            or issued.status.expirationTimestamp is None
        ):
            raise KubeError(f"TokenRequest for {namespace}/{service_account} returned no token")
        return IssuedToken(issued.status.token, issued.status.expirationTimestamp)


@contextlib.asynccontextmanager
async def connect(kubeconfig: str | None, field_manager: str) -> AsyncIterator[LightkubeAPI]:
    api = LightkubeAPI(load_config(kubeconfig), field_manager)
    try:
        yield api
    finally:
        await api.close()

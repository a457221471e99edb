"""The one adapter between this project and the Kubernetes API.

Everything else talks to a protocol: :class:`KubeAPI`, the two calls the kubelet
plugin makes, or :class:`ControllerAPI`, which adds the generic calls the controller
makes. :class:`LightkubeAPI` implements both over lightkube's ``AsyncClient`` (small,
typed, async, with server-side apply and the TokenRequest subresource);
:mod:`space_dra.kube_memory` implements both in memory, so unit tests and benchmarks
of either component run without a cluster. HTTP failures are turned into the tiny
exception hierarchy below at a single choke point, so callers never see lightkube's
types.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core import resource as lkr
from lightkube.models.authentication_v1 import BoundObjectReference, TokenRequestSpec
from lightkube.models.meta_v1 import DeleteOptions, ObjectMeta, Preconditions
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.kube_config import current_context, load_config, transport
from space_dra.kube_reads import (
    ListCorrupt,
    Slim,
    WatchExpired,
    WatchFailed,
    list_all,
    watch_from,
)
from space_dra.metrics import API_WRITES

R = TypeVar("R", bound=lkr.Resource)

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


class Gone(KubeError):
    """410: a watch's resourceVersion is too old; list again."""


class Invalid(KubeError):
    """400/422: the API server will not accept the object (or request) as it is.

    Retrying the same request cannot help; something about it must change first.
    """


_ERRORS_BY_STATUS: dict[int, type[KubeError]] = {
    400: Invalid,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenBinding:
    """What a minted token is tied to, for the API server's admission policy to check.

    ``node``: the token is bound to that Node object (it dies with the node, and audit
    logs name it); ``annotations`` go on the TokenRequest itself, where a
    ValidatingAdmissionPolicy can compare them with the namespace's labels.
    """

    node: str
    annotations: Mapping[str, str]


class KubeAPI(Protocol):
    """What the kubelet plugin asks of the API server, and nothing else."""

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim: ...

    async def create_token(
        self,
        namespace: str,
        service_account: str,
        expiration_seconds: int,
        binding: TokenBinding | None = None,
    ) -> IssuedToken: ...


class WatchAPI(KubeAPI, Protocol):
    """What the kubelet plugin asks of the API server when it mints tokens ahead of the
    kubelet (:mod:`space_dra.plugin.ahead`): also lists and watches.

    Label and field selectors are equality matches (``{key: value}``). Every call
    raises a :class:`KubeError` subclass on failure.
    """

    async def list(
        self,
        res: type[R],
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        slim: Slim | None = None,
    ) -> tuple[list[R], str]:
        """All objects (all namespaces for namespaced kinds) and the list's resourceVersion."""
        ...

    def watch(
        self,
        res: type[R],
        resource_version: str,
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        slim: Slim | None = None,
    ) -> AsyncIterator[tuple[str, R]]:
        """(ADDED|MODIFIED|DELETED, object) after ``resource_version``; Gone when too old.

        ``slim`` (on ``list`` too) reduces each object's JSON to what the caller keeps,
        before it is parsed: memory then depends on that, not on what objects carry."""
        ...


class ControllerAPI(WatchAPI, Protocol):
    """What the controller asks of the API server, and nothing else (every call raises a
    :class:`KubeError` subclass on failure)."""

    @property
    def server(self) -> str:
        """The API server URL this client talks to."""
        ...

    async def get(self, res: type[R], name: str, namespace: str | None = None) -> R: ...

    async def create(self, obj: R) -> R:
        """Create (``metadata.generateName`` honoured); Conflict when the name is taken."""
        ...

    async def replace(self, obj: R) -> R:
        """Replace; Conflict when ``metadata.resourceVersion`` is no longer current."""
        ...

    async def apply(self, obj: R, *, name: str | None = None, namespace: str | None = None) -> R:
        """Server-side apply, taking over conflicting fields. A ``*Status`` class writes
        the status subresource; a ``metadata.uid`` that is not the object's is Invalid."""
        ...

    async def delete(
        self,
        res: type[R],
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> None:
        """Delete; Conflict if the object's ``uid`` or ``resource_version`` (if given) differ."""
        ...


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn lightkube/httpx failures into KubeError subclasses, naming ``what``."""
    try:
        yield
    except ApiError as exc:
        code = exc.status.code or 0
        kind = _ERRORS_BY_STATUS.get(code, KubeError)
        message = f"{what}: {exc.status.message or exc}"
        raise kind(message, code, exc.status.reason or "") from exc
    except httpx2.HTTPError as exc:
        raise KubeError(f"{what}: {type(exc).__name__}: {exc}") from exc


class LightkubeAPI:
    """KubeAPI and ControllerAPI over lightkube's AsyncClient."""

    def __init__(self, config: KubeConfig, field_manager: str) -> None:
        single = current_context(config)
        self._client = AsyncClient(
            single,
            field_manager=field_manager,
            timeout=httpx2.Timeout(15.0),
            transport=transport(single),
        )
        # Lists and watches go through lightkube's generic client (see kube_reads).
        self._generic: Any = self._client._client
        # lightkube's overloads are per resource scope; the generic methods below
        # take any resource class, so they call through an untyped alias.
        self._any: Any = self._client

    @property
    def config(self) -> SingleConfig:
        return self._client.config

    @property
    def server(self) -> str:
        return str(self._client.config.cluster.server)

    async def close(self) -> None:
        await self._client.close()

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim:
        with translated(f"get ResourceClaim {namespace}/{name}"):
            return await self._client.get(ResourceClaim, name, namespace=namespace)

    async def create_token(
        self,
        namespace: str,
        service_account: str,
        expiration_seconds: int,
        binding: TokenBinding | None = None,
    ) -> IssuedToken:
        API_WRITES.labels("create", "TokenRequest").inc()
        spec = TokenRequestSpec(audiences=[], expirationSeconds=expiration_seconds)
        metadata = ObjectMeta()
        if binding is not None:
            spec.boundObjectRef = BoundObjectReference(
                apiVersion="v1", kind="Node", name=binding.node
            )
            metadata.annotations = dict(binding.annotations)
        request = ServiceAccount.Token(metadata=metadata, spec=spec)
        with translated(f"create token for ServiceAccount {namespace}/{service_account}"):
            issued = await self._client.create(request, service_account, namespace=namespace)
        if (
            issued.status is None
            or not issued.status.token
            or issued.status.expirationTimestamp is None
        ):
            raise KubeError(f"TokenRequest for {namespace}/{service_account} returned no token")
        return IssuedToken(issued.status.token, issued.status.expirationTimestamp)

    # -- generic calls for the controller ---------------------------------------------

    async def get(self, res: type[R], name: str, namespace: str | None = None) -> R:
        with translated(f"get {res.__name__} {_ref(namespace, name)}"):
            obj: R = await self._any.get(res, name, namespace=namespace)
            return obj

    async def list(
        self,
        res: type[R],
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        slim: Slim | None = None,
    ) -> tuple[list[R], str]:
        what = f"list {res.__name__}"
        with translated(what):
            try:
                return await list_all(self._generic, res, labels, fields, slim)
            except ListCorrupt as exc:
                raise KubeError(f"{what}: {exc}; listing again") from exc

    async def watch(
        self,
        res: type[R],
        resource_version: str,
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        slim: Slim | None = None,
    ) -> AsyncIterator[tuple[str, R]]:
        what = f"watch {res.__name__}"
        with translated(what):
            try:
                async for event, obj in watch_from(
                    self._generic, res, resource_version, labels, fields, slim
                ):
                    yield event, obj
            except WatchExpired as exc:
                raise Gone(f"{what}: {exc}", 410, "Expired") from exc
            except WatchFailed as exc:
                code = int(exc.status.get("code") or 0)
                raise _ERRORS_BY_STATUS.get(code, KubeError)(
                    f"{what}: {exc}", code, str(exc.status.get("reason") or "")
                ) from exc

    async def create(self, obj: R) -> R:
        API_WRITES.labels("create", type(obj).__name__).inc()
        with translated(f"create {type(obj).__name__} {_describe(obj)}"):
            created: R = await self._any.create(obj)
            return created

    async def replace(self, obj: R) -> R:
        API_WRITES.labels("replace", type(obj).__name__).inc()
        with translated(f"replace {type(obj).__name__} {_describe(obj)}"):
            replaced: R = await self._any.replace(obj)
            return replaced

    async def apply(self, obj: R, *, name: str | None = None, namespace: str | None = None) -> R:
        API_WRITES.labels("apply", type(obj).__name__).inc()
        with translated(f"apply {type(obj).__name__} {_describe(obj, name, namespace)}"):
            if name is not None:
                applied: R = await self._any.apply(obj, name, namespace=namespace, force=True)
            else:
                applied = await self._any.apply(obj, force=True)
            return applied

    async def delete(
        self,
        res: type[R],
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> None:
        what = f"delete {res.__name__} {_ref(namespace, name)}"
        API_WRITES.labels("delete", res.__name__).inc()
        with translated(what):
            if uid is None and resource_version is None:
                await self._any.delete(res, name, namespace=namespace)
                return
            # lightkube's delete() takes no DeleteOptions body, so build the request
            # through its generic client and attach the preconditions.
            generic = self._any._client
            request = generic.prepare_request("delete", res=res, name=name, namespace=namespace)
            preconditions = Preconditions(uid=uid, resourceVersion=resource_version)
            request.data = DeleteOptions(preconditions=preconditions)
            response = await generic.send(generic.build_adapter_request(request))
            generic.handle_response("delete", response, request)


def _plain(selector: Mapping[str, str] | None) -> dict[str, str] | None:
    return dict(selector) if selector is not None else None


def _ref(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _describe(obj: Any, name: str | None = None, namespace: str | None = None) -> str:
    meta = getattr(obj, "metadata", None)
    return _ref(
        namespace or (meta.namespace if meta else None),
        name
        or (meta.name if meta and meta.name else None)
        or (meta.generateName if meta else "")
        or "",
    )


@contextlib.asynccontextmanager
async def connect(kubeconfig: str | None, field_manager: str) -> AsyncIterator[LightkubeAPI]:
    api = LightkubeAPI(load_config(kubeconfig), field_manager)
    try:
        yield api
    finally:
        await api.close()

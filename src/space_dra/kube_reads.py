"""Paged lists and resumable watches, read as raw JSON before anything is kept.

Part of the Kubernetes adapter (:mod:`space_dra.kube` is the only importer). The
controller lists and watches every ResourceClaim of the cluster, and a tenant decides
how big those are: 500 claims carrying another driver's opaque configs are 145 MB of
JSON. So lists are read a page at a time, and each object goes through ``slim`` (a
function on its JSON) before it becomes a typed object, so what is kept depends on
what the caller reads, not on what the claim carries; peak memory is one page.

A list across all namespaces narrowed by a ``metadata.namespace`` field selector gets
a first ``continue`` token without the namespace in its start key from the API server
(seen on 1.36: the second page repeats the first), so such a list is sent to that
namespace's path instead, as kubectl does; and since the controller's garbage
collection trusts a list to be complete and exact, a page that repeats an object
fails the list rather than passing on a corrupt one (tests/cluster/test_kube_adapter.py).

A watch that the API server ends (its timeout) resumes from the last resourceVersion
it delivered, so the caller only relists after a real failure (410 Gone, a broken
connection).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import httpx2
from lightkube.core import resource as lkr
from lightkube.core.generic_client import ALL_NS

R = TypeVar("R", bound=lkr.Resource)
Slim = Callable[[dict[str, Any]], dict[str, Any]]

# Objects per list page: a page of the largest claims is about 30 MB of JSON.
PAGE_SIZE = 100
WATCH_SECONDS = 300


class WatchExpired(Exception):
    """The API server no longer has the resourceVersion the watch started from (410)."""


class WatchFailed(Exception):
    """The watch stream reported an error event other than 410."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(str(status.get("message") or status))
        self.status = status


def _selector(pairs: Mapping[str, str] | None) -> str | None:
    return ",".join(f"{key}={value}" for key, value in pairs.items()) if pairs else None


def _typed(res: type[R], raw: dict[str, Any], slim: Slim | None) -> R:
    obj: R = res.from_dict(slim(raw) if slim else raw)  # type: ignore[attr-defined]
    return obj


class ListCorrupt(Exception):
    """A paged list returned the same object twice."""


def _scoped(
    res: type[lkr.Resource], fields: Mapping[str, str] | None
) -> tuple[str | None, dict[str, str]]:
    """(namespace for the request path, remaining field selector)."""
    rest = dict(fields or {})
    if not issubclass(res, lkr.NamespacedResource):
        return None, rest
    namespace = rest.pop("metadata.namespace", None)
    return namespace or ALL_NS, rest


async def list_all(
    client: Any,  # lightkube GenericAsyncClient; its methods are untyped
    res: type[R],
    labels: Mapping[str, str] | None,
    fields: Mapping[str, str] | None,
    slim: Slim | None,
    page_size: int = PAGE_SIZE,
) -> tuple[list[R], str]:
    """Every object, following continue tokens; the resourceVersion of the list."""
    namespace, rest = _scoped(res, fields)
    params: dict[str, Any] = {
        "labelSelector": _selector(labels),
        "fieldSelector": _selector(rest),
        "limit": page_size,
    }
    items: list[R] = []
    seen: set[tuple[str, str]] = set()
    while True:
        request = client.prepare_request("list", res=res, namespace=namespace, params=params)
        response = await client.send(client.build_adapter_request(request))
        client.raise_for_status(response)
        page = json.loads(response.content)
        kind = res.__name__
        api_version = page.get("apiVersion", "")
        for raw in page.get("items") or []:
            meta = raw.get("metadata") or {}
            key = (meta.get("namespace") or "", meta.get("name") or "")
            if key in seen:
                raise ListCorrupt(f"the list returned {key[0]}/{key[1]} twice")
            seen.add(key)
            # List items carry no kind; the typed models need it.
            raw.setdefault("kind", kind)
            raw.setdefault("apiVersion", api_version)
            items.append(_typed(res, raw, slim))
        listed = page.get("metadata") or {}
        token = listed.get("continue")
        if not token:
            return items, listed.get("resourceVersion", "")
        params["continue"] = token


async def watch_from(
    client: Any,  # lightkube GenericAsyncClient; its methods are untyped
    res: type[R],
    resource_version: str,
    labels: Mapping[str, str] | None,
    fields: Mapping[str, str] | None,
    slim: Slim | None,
) -> AsyncIterator[tuple[str, R]]:
    """Events after ``resource_version``, across the API server's watch timeouts."""
    version = resource_version
    namespace, rest = _scoped(res, fields)
    while True:
        params = {
            "labelSelector": _selector(labels),
            "fieldSelector": _selector(rest),
            "resourceVersion": version,
            "timeoutSeconds": WATCH_SECONDS,
            "allowWatchBookmarks": "true",
        }
        request = client.prepare_request(
            "list", res=res, namespace=namespace, watch=True, params=params
        )
        request.timeout = httpx2.Timeout(15.0, read=WATCH_SECONDS + 30)
        response = await client.send(client.build_adapter_request(request), stream=True)
        try:
            if response.status_code >= 400:
                await response.aread()  # the error's body names the problem
                client.raise_for_status(response)
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, raw = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if raw.get("code") == 410:
                        raise WatchExpired(raw.get("message", "too old resource version"))
                    raise WatchFailed(raw)
                version = (raw.get("metadata") or {}).get("resourceVersion") or version
                if kind == "BOOKMARK":
                    continue
                yield kind, _typed(res, raw, slim)
        finally:
            await response.aclose()

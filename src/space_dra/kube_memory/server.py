"""An in-memory API server: :class:`~space_dra.kube.KubeAPI` and
:class:`~space_dra.kube.ControllerAPI` for unit tests and benchmarks.

Both components' logic runs against it without a cluster, so it behaves like the
API server in the ways our code depends on: objects get a UID, a resourceVersion
(one increasing counter, like etcd's) and a creationTimestamp; ``generateName`` is
honoured; a taken name is a 409 and a missing object a 404; a replace carrying a
stale resourceVersion and a delete whose UID precondition names another object are
409s; deleting an object with finalizers only marks it deleting; deleting a
namespace deletes what is in it; server-side apply creates or merges, and on a
``*Status`` class writes only ``status`` (our ``status.devices`` entries replace
those of the same driver, as with one field manager) and refuses a foreign
``metadata.uid`` with a 422; list and watch honour equality label and field
selectors, and a watch replays what happened after its resourceVersion, then
follows every write (ADDED, MODIFIED, DELETED), or raises Gone once compacted.

Tests play the other actors (a user, the scheduler) with :meth:`MemoryKube.put`,
and make the API server misbehave with :meth:`MemoryKube.fail_next` (the next
matching call fails), :meth:`MemoryKube.admit` (an admission hook that rewrites or
refuses every write of a kind), :meth:`MemoryKube.compact` and
:meth:`MemoryKube.end_watches`. Not modelled: RBAC, field ownership beyond the
status entries above, namespaces that must exist, graceful namespace termination.
Tests that need real Kubernetes behaviour run against the local cluster instead.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

from lightkube.core import resource as lkr
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.kube import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    IssuedToken,
    KubeError,
    NotFound,
    TokenBinding,
)
from space_dra.kube_memory.objects import (
    META_FIELDS,
    SUFFIX_ALPHABET,
    AdmissionHook,
    Data,
    Fault,
    Key,
    Kind,
    R,
    as_data,
    check_preconditions,
    check_uid,
    fresh,
    key_of,
    kind_of,
    matches,
    merge_status,
    now,
    plural,
    scope,
    typed,
)
from space_dra.kube_memory.watch import Watch
from space_dra.kube_reads import Slim


class MemoryKube:
    def __init__(self, server: str = "https://memory.invalid:443") -> None:
        self._server = server
        self._objects: dict[Kind, dict[Key, Data]] = {}
        self._version = 0
        # (resourceVersion, kind, before, after, deleted) of every write since compaction.
        self._history: list[tuple[int, Kind, Data | None, Data, bool]] = []
        self._compacted = 0
        self._watches: list[Watch] = []
        self._faults: list[Fault] = []
        self._admission: dict[Kind, list[AdmissionHook]] = {}
        # The plugin's view: claims by (namespace, name), ServiceAccounts it may mint for.
        self.claims = self._bucket(kind_of(ResourceClaim))
        self.service_accounts: set[tuple[str, str]] = set()
        self.tokens_issued: list[tuple[str, str, int]] = []
        # What each issued token was bound to, in the same order.
        self.token_bindings: list[TokenBinding | None] = []
        self.calls: list[str] = []

    # -- what tests use to set the scene ----------------------------------------------

    @property
    def server(self) -> str:
        return self._server

    def put(self, obj: lkr.Resource) -> None:
        """Store ``obj`` as another actor would (a user, the scheduler): no admission,
        no injected faults; it keeps its UID (one is assigned if it has none)."""
        res, data = type(obj), as_data(obj)
        meta = data.setdefault("metadata", {})
        key = (meta.get("namespace") or "", meta.get("name") or "")
        before = self._bucket(kind_of(res)).get(key)
        if (
            before is not None
            and meta.get("uid", before["metadata"]["uid"]) != before["metadata"]["uid"]
        ):
            # Another object under the same name: the old one was deleted first.
            self._remove(kind_of(res), key)
            before = None
        meta.setdefault("uid", before["metadata"]["uid"] if before else str(uuid.uuid4()))
        meta.setdefault(
            "creationTimestamp", before["metadata"]["creationTimestamp"] if before else now()
        )
        self._store(res, key, before, data)

    def put_claim(self, claim: ResourceClaim) -> None:
        self.put(claim)

    def remove(self, res: type[lkr.Resource], name: str, namespace: str | None = None) -> None:
        """Delete as another actor would: at once, no finalizers, no injected faults."""
        key = (namespace or "", name)
        if key in self._bucket(kind_of(res)):
            self._remove(kind_of(res), key)

    def stored(self, res: type[R]) -> list[R]:
        """Every object of a kind, as the API server holds it now."""
        bucket = self._bucket(kind_of(res))
        return [typed(res, bucket[key]) for key in sorted(bucket)]

    def fail_next(
        self,
        verb: str,
        res: type[lkr.Resource] | None = None,
        error: KubeError | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``verb`` (get, list, watch, create, replace,
        apply, delete, create_token) on ``res`` (any kind when None) raise ``error``
        (a transient 500 when None)."""
        error = error or KubeError("injected: the API server is unavailable", 500, "Internal")
        self._faults.append(Fault(verb, res.__name__ if res else None, error, times))

    def admit(self, res: type[lkr.Resource], hook: AdmissionHook) -> None:
        """Run ``hook`` on every create, replace and apply of ``res``'s kind."""
        self._admission.setdefault(kind_of(res), []).append(hook)

    def compact(self) -> None:
        """Forget the write history: a watch from an older resourceVersion gets Gone."""
        self._history.clear()
        self._compacted = self._version

    def end_watches(
        self, error: KubeError | None = None, res: type[lkr.Resource] | None = None
    ) -> None:
        """End every open watch (of ``res``'s kind), raising ``error`` in it (quietly
        when None)."""
        for watch in self._watches:
            if res is None or watch.kind == kind_of(res):
                watch.events.put_nowait(error)

    # -- KubeAPI -----------------------------------------------------------------------

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim:
        await self._enter("get", ResourceClaim, "get_claim")
        return typed(ResourceClaim, self._existing(ResourceClaim, namespace, name))

    async def create_token(
        self,
        namespace: str,
        service_account: str,
        expiration_seconds: int,
        binding: TokenBinding | None = None,
    ) -> IssuedToken:
        await self._enter("create_token", ServiceAccount, "create_token")
        known = (namespace, service_account) in self.service_accounts
        if not known and (namespace, service_account) not in self._bucket(kind_of(ServiceAccount)):
            raise Forbidden(
                f"cannot create token for {namespace}/{service_account}", 403, "Forbidden"
            )
        self.tokens_issued.append((namespace, service_account, expiration_seconds))
        self.token_bindings.append(binding)
        return IssuedToken(
            token=f"memtoken.{secrets.token_hex(16)}",
            expires_at=datetime.now(UTC) + timedelta(seconds=expiration_seconds),
        )

    # -- ControllerAPI -----------------------------------------------------------------

    async def get(self, res: type[R], name: str, namespace: str | None = None) -> R:
        await self._enter("get", res)
        return typed(res, self._existing(res, namespace, name))

    async def list(
        self,
        res: type[R],
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        slim: Slim | None = None,
    ) -> tuple[list[R], str]:
        await self._enter("list", res)
        bucket = self._bucket(kind_of(res))
        items = [
            typed(res, bucket[key], slim)
            for key in sorted(bucket)
            if matches(bucket[key], labels, fields)
        ]
        return items, str(self._version)

    async def watch(
        self,
        res: type[R],
        resource_version: str,
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        slim: Slim | None = None,
    ) -> AsyncIterator[tuple[str, R]]:
        await self._enter("watch", res)
        since = int(resource_version or 0)
        if since < self._compacted:
            raise Gone(f"too old resource version: {since} ({self._compacted})", 410, "Expired")
        # Replay and subscribe with no await in between, so no write falls in a gap.
        watch = Watch(kind_of(res), labels, fields)
        for version, kind, before, after, deleted in self._history:
            if version > since and kind == watch.kind:
                watch.offer(before, after, deleted)
        self._watches.append(watch)
        try:
            while True:
                item = await watch.events.get()
                if item is None:
                    return
                if isinstance(item, KubeError):
                    raise item
                event, data = item
                yield event, typed(res, data, slim)
        finally:
            self._watches.remove(watch)

    async def create(self, obj: R) -> R:
        res = type(obj)
        await self._enter("create", res)
        data = self._admitted("create", obj)
        meta = data.setdefault("metadata", {})
        namespace = scope(res, meta.get("namespace"))
        bucket = self._bucket(kind_of(res))
        name = meta.get("name") or ""
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise Invalid(
                    f"create {res.__name__}: metadata.name or generateName is required",
                    422,
                    "Invalid",
                )
            name = prefix + "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(5))
        if (namespace, name) in bucket:
            raise Conflict(f'{plural(res)} "{name}" already exists', 409, "AlreadyExists")
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now())
        meta.pop("deletionTimestamp", None)
        return typed(res, self._store(res, (namespace, name), None, data))

    async def replace(self, obj: R) -> R:
        res = type(obj)
        await self._enter("replace", res)
        data = self._admitted("replace", obj)
        meta = data.setdefault("metadata", {})
        current = self._existing(res, meta.get("namespace"), meta.get("name") or "")
        current_meta = current["metadata"]
        version = meta.get("resourceVersion")
        if version and version != current_meta["resourceVersion"]:
            raise Conflict(
                f'Operation cannot be fulfilled on {plural(res)} "{meta["name"]}": '
                "the object has been modified; please apply your changes to the latest version",
                409,
                "Conflict",
            )
        check_uid(meta.get("uid"), current_meta["uid"], precondition=True)
        for kept in ("uid", "creationTimestamp", "deletionTimestamp"):
            if kept in current_meta:
                meta[kept] = current_meta[kept]
        return typed(res, self._store(res, key_of(current), current, data))

    async def apply(self, obj: R, *, name: str | None = None, namespace: str | None = None) -> R:
        res = type(obj)
        await self._enter("apply", res)
        data = self._admitted("apply", obj)
        meta = data.setdefault("metadata", {})
        name = name or meta.get("name") or ""
        if not name:
            raise Invalid(f"apply {res.__name__}: metadata.name is required", 422, "Invalid")
        status_only = res._api_info.action == "status"
        key = (scope(res, namespace or meta.get("namespace")), name)
        current = self._bucket(kind_of(res)).get(key)
        if current is None:
            if status_only:
                raise NotFound(f'{plural(res)} "{name}" not found', 404, "NotFound")
            meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now())
            return typed(res, self._store(res, key, None, data))
        check_uid(meta.get("uid"), current["metadata"]["uid"], precondition=False)
        merged = fresh(current)
        if status_only:
            merged["status"] = merge_status(current.get("status") or {}, data.get("status") or {})
        else:
            merged.update({k: v for k, v in data.items() if k not in META_FIELDS})
            for part in ("labels", "annotations"):
                if meta.get(part):
                    merged["metadata"][part] = {**merged["metadata"].get(part, {}), **meta[part]}
            if "ownerReferences" in meta:
                merged["metadata"]["ownerReferences"] = meta["ownerReferences"]
        if merged == current:
            return typed(res, current)  # a no-op apply writes nothing, as the server's
        return typed(res, self._store(res, key, current, merged))

    async def delete(
        self,
        res: type[R],
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> None:
        await self._enter("delete", res)
        current = self._existing(res, namespace, name)
        check_preconditions(uid, resource_version, current["metadata"])
        if current["metadata"].get("finalizers"):
            if not current["metadata"].get("deletionTimestamp"):
                marked = fresh(current)
                marked["metadata"]["deletionTimestamp"] = now()
                self._store(res, key_of(current), current, marked)
            return
        self._remove(kind_of(res), key_of(current))

    # -- the store -----------------------------------------------------------------------

    async def _enter(self, verb: str, res: type[lkr.Resource], call: str | None = None) -> None:
        self.calls.append(call or f"{verb} {res.__name__}")
        for fault in self._faults:
            if fault.verb == verb and fault.kind in (None, res.__name__):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                raise fault.error
        await asyncio.sleep(0)  # a real call yields to the event loop

    def _admitted(self, verb: str, obj: lkr.Resource) -> Data:
        data = as_data(obj)
        hooks = self._admission.get(kind_of(type(obj)), [])
        if not hooks:
            return data
        mutable = typed(type(obj), data)
        for hook in hooks:
            hook(verb, mutable)
        return as_data(mutable)

    def _bucket(self, kind: Kind) -> dict[Key, Data]:
        return self._objects.setdefault(kind, {})

    def _existing(self, res: type[lkr.Resource], namespace: str | None, name: str) -> Data:
        found = self._bucket(kind_of(res)).get((namespace or "", name))
        if found is None:
            raise NotFound(f'{plural(res)} "{name}" not found', 404, "NotFound")
        return found

    def _store(self, res: type[lkr.Resource], key: Key, before: Data | None, data: Data) -> Data:
        meta = data["metadata"]
        deleting = before is not None and before["metadata"].get("deletionTimestamp")
        if deleting and not meta.get("finalizers"):
            self._remove(kind_of(res), key)  # the last finalizer is gone
            return data
        self._version += 1
        meta.update(resourceVersion=str(self._version), name=key[1])
        if key[0]:
            meta["namespace"] = key[0]
        self._bucket(kind_of(res))[key] = data
        self._record(kind_of(res), before, data, deleted=False)
        return data

    def _remove(self, kind: Kind, key: Key) -> None:
        before = self._bucket(kind).pop(key)
        self._version += 1
        final = fresh(before)
        final["metadata"]["resourceVersion"] = str(self._version)
        self._record(kind, before, final, deleted=True)
        if kind == ("", "Namespace"):
            for other, bucket in self._objects.items():
                for inside in [k for k in bucket if k[0] == key[1]]:
                    self._remove(other, inside)

    def _record(self, kind: Kind, before: Data | None, after: Data, deleted: bool) -> None:
        self._history.append((self._version, kind, before, after, deleted))
        for watch in self._watches:
            if watch.kind == kind:
                watch.offer(before, after, deleted)

"""What this node has prepared, persisted across plugin restarts and reboots.

The checkpoint keeps only what cannot be recomputed without the API server: for
each prepared claim, its devices, where their files are and which namespace and
ServiceAccount their token comes from. CDI specs and artifacts can be re-created
from it (``/var/run`` is tmpfs and vanishes on reboot); tokens are re-minted.

Writes go to a temporary file that is renamed over the checkpoint, so a crashed
process never leaves half a file. They are not fsynced: only a node crash can
lose a write that the kernel already has, and a node crash also wipes the CDI
specs and artifacts (tmpfs) and makes the kubelet prepare its pods' claims
again, which rebuilds the entry; an fsync per claim would triple the cost of a
prepare for nothing. Every change re-reads
the file under an exclusive ``flock``, so two plugin instances during a rolling
update never lose each other's entries. A checkpoint that cannot be parsed is
moved aside and reported; the caller rebuilds what it can from the CDI specs
instead of crash-looping.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from space_dra.logs import log_event

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


class CheckpointCorrupt(ValueError):
    def __init__(self, path: Path, reason: str, moved_to: Path | None) -> None:
        self.path = path
        self.moved_to = moved_to
        super().__init__(f"checkpoint {path} is unreadable ({reason}); moved aside to {moved_to}")


@dataclass(frozen=True)
class PreparedDevice:
    request: str
    pool: str
    device: str
    share_id: str | None
    cdi_device_name: str
    artifact_dir_name: str
    env_prefix: str
    mount_path: str
    namespace: str
    service_account: str
    server: str
    token_expiration_seconds: int
    # Unix seconds; refresh is due at issued_at + 80 % of the lifetime.
    token_issued_at: float = 0.0
    token_expires_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies, and this runs on every prepare.
        return {name: getattr(self, name) for name in _DEVICE_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreparedDevice:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


_DEVICE_FIELDS = tuple(f.name for f in fields(PreparedDevice))


@dataclass(frozen=True)
class PreparedClaim:
    uid: str
    namespace: str
    name: str
    devices: tuple[PreparedDevice, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "devices": [device.to_json() for device in self.devices],
        }

    @classmethod
    def from_json(cls, uid: str, data: Mapping[str, Any]) -> PreparedClaim:
        return cls(
            uid=uid,
            namespace=str(data["namespace"]),
            name=str(data["name"]),
            devices=tuple(PreparedDevice.from_json(d) for d in data["devices"]),
        )


class Checkpoint:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._lock_fd: int | None = None
        # What we last read or wrote, and the file identity it came from: while
        # the file is unchanged (no other instance wrote), it need not be re-read.
        self._known: dict[str, PreparedClaim] | None = None
        self._known_stat: tuple[int, int, int] | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._lock_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self) -> dict[str, PreparedClaim]:
        identity = self._identity()
        if self._known is not None and identity == self._known_stat:
            return dict(self._known)
        claims = self._parse()
        self._known, self._known_stat = dict(claims), identity
        return claims

    def _parse(self) -> dict[str, PreparedClaim]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(raw)
            if document.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"unsupported version {document.get('version')!r}")
            return {
                uid: PreparedClaim.from_json(uid, entry)
                for uid, entry in document["claims"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            try:
                self.path.rename(aside)
            except OSError:
                raise CheckpointCorrupt(self.path, str(exc), None) from exc
            raise CheckpointCorrupt(self.path, str(exc), aside) from exc

    def _write(self, claims: Mapping[str, PreparedClaim]) -> None:
        document = {
            "version": CHECKPOINT_VERSION,
            "claims": {uid: claim.to_json() for uid, claim in sorted(claims.items())},
        }
        staging = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(document, separators=(",", ":")).encode())
        finally:
            os.close(fd)
        staging.rename(self.path)
        self._known, self._known_stat = dict(claims), self._identity()

    def load(self) -> dict[str, PreparedClaim]:
        """All prepared claims; raises CheckpointCorrupt (after moving the file aside)."""
        with self._locked():
            return self._read()

    def update(
        self, change: Callable[[dict[str, PreparedClaim]], object]
    ) -> dict[str, PreparedClaim]:
        """Apply ``change`` to the current content under the lock and persist it."""
        with self._locked():
            try:
                claims = self._read()
            except CheckpointCorrupt as exc:
                log_event(log, logging.ERROR, "checkpoint_corrupt", error=str(exc))
                claims = {}
            change(claims)
            self._write(claims)
            return claims


def _applying(
    batch: list[tuple[Callable[[dict[str, PreparedClaim]], object], asyncio.Future[None]]],
) -> Callable[[dict[str, PreparedClaim]], None]:
    def apply_batch(claims: dict[str, PreparedClaim]) -> None:
        for change, _ in batch:
            change(claims)

    return apply_batch


class GroupCommit:
    """Concurrent changes share one checkpoint write.

    Every change must be durable before its RPC answers, but a request preparing
    100 claims should not pay for 100 fsyncs. Changes that arrive while a write is
    in flight are applied together in the next one.
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self._pending: list[
            tuple[Callable[[dict[str, PreparedClaim]], object], asyncio.Future[None]]
        ] = []
        self._writer: asyncio.Task[None] | None = None
        self.latest: dict[str, PreparedClaim] = {}

    async def apply(
        self, change: Callable[[dict[str, PreparedClaim]], object]
    ) -> dict[str, PreparedClaim]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((change, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        await done
        return self.latest

    async def _write_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []

            try:
                self.latest = self.checkpoint.update(_applying(batch))
            except Exception as exc:
                for _, done in batch:
                    # A waiter whose RPC was cancelled has a cancelled future; the rest
                    # of the batch must still be answered.
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

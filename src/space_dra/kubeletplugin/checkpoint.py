"""What a driver has prepared on this node, kept across plugin restarts and reboots.

The file is ``{"version": <n>, "claims": {"<claim uid>": <entry>}}``; each entry is
whatever the driver's :class:`Codec` makes of its own record for that claim, and
``version`` is the driver's: a file of any other version is treated as unreadable.
Keep in an entry only what cannot be recomputed without the API server, so that after
a reboot (``/var/run`` is tmpfs) the driver can re-create its CDI specs and files.

Writes go to a temporary file that is renamed over the checkpoint, so a crashed
process never leaves half a file. They are not fsynced: only a node crash can lose a
write the kernel already has, and a node crash also wipes what lives on tmpfs and
makes the kubelet prepare its pods' claims again, which rebuilds the entry; an fsync
per claim would triple the cost of a prepare for nothing. Every change re-reads the
file under an exclusive ``flock``, so two plugin instances during a rolling update
never lose each other's entries. A checkpoint that cannot be read, because it is not
valid JSON or entries the codec refuses (``corrupt``) or because it is in a format
version this code does not know (``unsupported_version``, say written by a newer
plugin before a rollback), is moved aside next to the file and reported
(:class:`CheckpointCorrupt`) instead of crash-looping the plugin; the driver's
``on_unreadable`` hook says what to start again from.

:class:`GroupCommit` batches concurrent changes into one write.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from space_dra.kubeletplugin.files import replace_file
from space_dra.logs import log_event

log = logging.getLogger(__name__)

T = TypeVar("T")

Change = Callable[[dict[str, T]], object]
"""Edits the claims in place (add, replace, pop); its return value is ignored."""


CORRUPT = "corrupt"
UNSUPPORTED_VERSION = "unsupported_version"


class CheckpointCorrupt(ValueError):
    """``kind`` is CORRUPT or UNSUPPORTED_VERSION; ``moved_to`` None if it could not move."""

    def __init__(self, path: Path, reason: str, moved_to: Path | None, kind: str = CORRUPT) -> None:
        self.path = path
        self.moved_to = moved_to
        self.kind = kind
        super().__init__(f"checkpoint {path} is unreadable ({reason}); moved aside to {moved_to}")


Recovery = Callable[[CheckpointCorrupt], Mapping[str, T]]
"""Given why the file was unreadable, the claims to start again from."""


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How a driver's per-claim record becomes JSON and back.

    ``decode`` gets the claim UID and the entry; raising ValueError, KeyError or
    TypeError marks the whole file unreadable.
    """

    encode: Callable[[T], Mapping[str, Any]]
    decode: Callable[[str, Mapping[str, Any]], T]


class Checkpoint(Generic[T]):
    def __init__(
        self,
        path: Path,
        codec: Codec[T],
        version: int = 1,
        on_unreadable: Recovery[T] | None = None,
    ) -> None:
        self.path = path
        self.codec = codec
        self.version = version
        # Called by update() when the file is unreadable; without it, it starts empty.
        self.on_unreadable = on_unreadable
        self._lock_path = path.with_name(path.name + ".lock")
        self._lock_fd: int | None = None
        # What we last read or wrote, and the file identity it came from: while
        # the file is unchanged (no other instance wrote), it need not be re-read.
        self._known: dict[str, T] | None = None
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

    def _read(self) -> dict[str, T]:
        identity = self._identity()
        if self._known is not None and identity == self._known_stat:
            return dict(self._known)
        claims = self._parse()
        self._known, self._known_stat = dict(claims), identity
        return claims

    def _parse(self) -> dict[str, T]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        kind = CORRUPT
        try:
            document = json.loads(raw)
            found = document.get("version")
            if found != self.version:
                kind = UNSUPPORTED_VERSION
                raise ValueError(
                    f"format version {found!r}, this plugin reads version {self.version}: "
                    "written by another version of the plugin?"
                )
            return {uid: self.codec.decode(uid, entry) for uid, entry in document["claims"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            try:
                self.path.rename(aside)
            except OSError:
                raise CheckpointCorrupt(self.path, str(exc), None, kind) from exc
            raise CheckpointCorrupt(self.path, str(exc), aside, kind) from exc

    def _write(self, claims: Mapping[str, T]) -> None:
        document = {
            "version": self.version,
            "claims": {uid: self.codec.encode(entry) for uid, entry in sorted(claims.items())},
        }
        replace_file(self.path, json.dumps(document, separators=(",", ":")).encode(), 0o600)
        self._known, self._known_stat = dict(claims), self._identity()

    def load(self) -> dict[str, T]:
        """Every claim's record; raises CheckpointCorrupt (after moving the file aside)."""
        with self._locked():
            return self._read()

    def update(self, change: Change[T]) -> dict[str, T]:
        """Apply ``change`` to the current content under the lock and persist it.

        An unreadable file is moved aside and replaced by what ``on_unreadable`` gives.
        """
        with self._locked():
            try:
                claims = self._read()
            except CheckpointCorrupt as exc:
                if self.on_unreadable is None:
                    log_event(log, logging.ERROR, "checkpoint_corrupt", error=str(exc))
                    claims = {}
                else:
                    claims = dict(self.on_unreadable(exc))
            change(claims)
            self._write(claims)
            return claims


def _applying(batch: list[tuple[Change[T], asyncio.Future[None]]]) -> Change[T]:
    def apply_batch(claims: dict[str, T]) -> None:
        for change, _ in batch:
            change(claims)

    return apply_batch


class GroupCommit(Generic[T]):
    """Concurrent changes share one checkpoint write.

    Every change must be on disk before its RPC answers, but a request preparing
    100 claims should not pay for 100 writes. Changes that arrive while a write is
    in flight are applied together in the next one.
    """

    def __init__(self, checkpoint: Checkpoint[T]) -> None:
        self.checkpoint = checkpoint
        self._pending: list[tuple[Change[T], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.latest: dict[str, T] = {}

    async def apply(self, change: Change[T]) -> dict[str, T]:
        """Queue ``change``; return the content once a write including it is done."""
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

"""Group commit: concurrent checkpoint changes share one write, and a cancelled caller
(the kubelet gave up on its RPC) neither loses its change nor strands the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

from space_dra.kubeletplugin import GroupCommit
from space_dra.plugin.checkpoint import PreparedClaim, open_checkpoint


def _claim(uid: str) -> PreparedClaim:
    return PreparedClaim(uid, "default", f"claim-{uid}", ())


def _adding(uid: str) -> Callable[[dict[str, PreparedClaim]], None]:
    return lambda claims: claims.__setitem__(uid, _claim(uid))


async def test_concurrent_changes_share_one_write(tmp_path: Path) -> None:
    checkpoint = open_checkpoint(tmp_path / "checkpoint.json")
    writes = 0
    write = checkpoint._write

    def counting_write(claims: Mapping[str, PreparedClaim]) -> None:
        nonlocal writes
        writes += 1
        write(claims)

    checkpoint._write = counting_write  # type: ignore[method-assign]
    commits = GroupCommit(checkpoint)
    await asyncio.gather(*(commits.apply(_adding(uid)) for uid in "abc"))
    assert writes == 1
    assert sorted(open_checkpoint(checkpoint.path).load()) == ["a", "b", "c"]


async def test_a_cancelled_caller_does_not_strand_the_rest_of_its_batch(tmp_path: Path) -> None:
    checkpoint = open_checkpoint(tmp_path / "checkpoint.json")
    commits = GroupCommit(checkpoint)
    first = asyncio.ensure_future(commits.apply(_adding("a")))
    second = asyncio.ensure_future(commits.apply(_adding("b")))
    await asyncio.sleep(0)  # both changes are queued; the writer has not run yet
    first.cancel()
    result = await asyncio.wait_for(second, timeout=5)
    assert sorted(result) == ["a", "b"]
    # The cancelled caller's change was queued before it gave up, so it is durable too:
    # its files are on disk and the checkpoint must say so.
    assert sorted(open_checkpoint(checkpoint.path).load()) == ["a", "b"]
    # And the writer is still usable.
    await asyncio.wait_for(commits.apply(lambda c: c.pop("a", None)), timeout=5)
    assert sorted(open_checkpoint(checkpoint.path).load()) == ["b"]

"""A namespace is created under a free name of our choosing: a taken name means another
suffix, and only after every attempt failed does the Conflict reach the caller."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from space_dra.controller import create
from space_dra.kube import Conflict
from space_dra.kube_memory import MemoryKube


def named(name: str) -> Namespace:
    return Namespace(metadata=ObjectMeta(name=name))


def names(kube: MemoryKube) -> set[str]:
    return {ns.metadata.name or "" for ns in kube.stored(Namespace) if ns.metadata}


def suffixes(monkeypatch: pytest.MonkeyPatch, *chosen: str) -> None:
    sequence: Iterator[str] = iter(chosen)
    monkeypatch.setattr(create, "random_name", lambda prefix: prefix + next(sequence))


async def test_a_taken_name_is_answered_with_another_suffix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = MemoryKube()
    kube.put(named("ns-aaaaa"))
    kube.put(named("ns-bbbbb"))
    suffixes(monkeypatch, "aaaaa", "bbbbb", "ccccc")
    made = await create.create_with_free_name(kube, "ns-", named)
    assert made.metadata is not None and made.metadata.name == "ns-ccccc"
    assert names(kube) == {"ns-aaaaa", "ns-bbbbb", "ns-ccccc"}


async def test_when_every_attempt_is_taken_the_conflict_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = MemoryKube()
    kube.put(named("ns-taken"))
    suffixes(monkeypatch, *["taken"] * create.NAME_ATTEMPTS)
    with pytest.raises(Conflict):
        await create.create_with_free_name(kube, "ns-", named)
    assert names(kube) == {"ns-taken"}

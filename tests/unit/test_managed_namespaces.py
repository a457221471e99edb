"""The controller's view of its namespaces: answers by claim and for the warm pool that
follow every watch event, without reading the whole cache per question."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from lightkube.resources.core_v1 import Namespace

from space_dra.config import Settings
from space_dra.contract import DEFAULT_DRIVER_NAME, DeviceRef, ManagementLabels, NamespaceView
from space_dra.controller.manifests import namespace_object
from space_dra.controller.namespaces import ManagedNamespaces
from space_dra.kube_memory import MemoryKube
from tests.support.claims import new_uid
from tests.support.controller import SIGNER, eventually

LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)


def made_for(claim_uid: str, name: str, slot: int = 0) -> Namespace:
    return namespace_object(
        LABELS,
        SIGNER,
        name,
        claim_uid,
        "team/claim",
        DeviceRef("ns", "space", f"slot-{slot}"),
        Settings(),
    )


@pytest.fixture
async def watched() -> AsyncIterator[tuple[MemoryKube, ManagedNamespaces]]:
    kube = MemoryKube()
    namespaces = ManagedNamespaces(kube, LABELS, SIGNER, lambda view: None)
    task = asyncio.create_task(namespaces.informer.run())
    await namespaces.informer.synced.wait()
    try:
        yield kube, namespaces
    finally:
        task.cancel()


def names(views: list[NamespaceView]) -> set[str]:
    return {view.name for view in views}


async def test_answers_follow_the_watch(watched: tuple[MemoryKube, ManagedNamespaces]) -> None:
    kube, namespaces = watched
    first, second = new_uid(), new_uid()
    await kube.create(made_for(first, "ns-a"))
    await kube.create(made_for(first, "ns-b", slot=1))
    await eventually(lambda: len(namespaces.for_claim(first)) == 2, "both seen")
    assert namespaces.for_claim(second) == []

    # Handed from one claim to another (as the warm pool's replace does): moves over.
    [stored] = [ns for ns in kube.stored(Namespace) if ns.metadata and ns.metadata.name == "ns-b"]
    moved = made_for(second, "ns-b", slot=1)
    assert moved.metadata is not None and stored.metadata is not None
    moved.metadata.resourceVersion = stored.metadata.resourceVersion
    await kube.replace(moved)
    await eventually(lambda: names(namespaces.for_claim(second)) == {"ns-b"}, "moved")
    assert names(namespaces.for_claim(first)) == {"ns-a"}

    kube.remove(Namespace, "ns-a")
    await eventually(lambda: not namespaces.for_claim(first), "deletion seen")
    assert names(namespaces.cached()) == {"ns-b"}
    assert namespaces.named("ns-b") is not None and namespaces.named("ns-a") is None


@pytest.fixture
def views_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many NamespaceViews were built (one per watch event is the cost to keep)."""
    built = [0]
    original = NamespaceView.of.__func__  # type: ignore[attr-defined]

    def counting(
        cls: type[NamespaceView], namespace: Namespace, labels: ManagementLabels
    ) -> NamespaceView:
        built[0] += 1
        view: NamespaceView = original(cls, namespace, labels)
        return view

    monkeypatch.setattr(NamespaceView, "of", classmethod(counting))
    yield built


async def test_a_question_about_one_claim_does_not_read_every_namespace(
    watched: tuple[MemoryKube, ManagedNamespaces], views_built: list[int]
) -> None:
    # With a thousand claims and as many namespaces, reading the cache for each claim's
    # question kept the controller's event loop busy for seconds at a time.
    kube, namespaces = watched
    claims = [new_uid() for _ in range(300)]
    for index, claim in enumerate(claims):
        await kube.create(made_for(claim, f"ns-{index}", slot=index))
    await eventually(lambda: len(namespaces) == len(claims), "all seen")
    before = views_built[0]
    for claim in claims:
        assert len(namespaces.for_claim(claim)) == 1
        namespaces.warm()
        namespaces.is_managed(f"ns-{claims.index(claim)}")
    assert views_built[0] - before == 0

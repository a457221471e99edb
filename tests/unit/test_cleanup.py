"""``space-dra cleanup`` against the in-memory API server: after the controller is gone, it
deletes only the driver's signed namespaces that no claim holds, and only when asked.

The namespaces are made by the real reconciler (then stopped, as by ``helm uninstall``),
next to ones it did not make: labels copied onto another namespace, a namespace signed
with another installation's key, an unlabelled one.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra import cli
from space_dra.contract import DEFAULT_DRIVER_NAME, ManagementLabels
from space_dra.controller.cleanup import apply, cleanup, kubeconfig_for, plan
from space_dra.controller.ownership import KEY_FIELD, Signer
from space_dra.kube_memory import MemoryKube
from tests.support.claims import make_claim, new_uid
from tests.support.controller import (
    CONTROLLER_NAMESPACE,
    SIGNER,
    device_state,
    eventually,
    namespaces,
    running_reconciler,
    signed_namespace,
)

SECRET = "space-dra-ownership"
LABELS = ManagementLabels(DEFAULT_DRIVER_NAME)


def arguments(*flags: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(
        ["cleanup", f"--namespace={CONTROLLER_NAMESPACE}", f"--ownership-secret={SECRET}", *flags]
    )


def key_secret() -> Secret:
    return Secret(
        metadata=ObjectMeta(name=SECRET, namespace=CONTROLLER_NAMESPACE),
        data={KEY_FIELD: base64.b64encode(b"k" * 32).decode()},
    )


async def provisioned(kube: MemoryKube, claim: str) -> str:
    record = await eventually(lambda: device_state(kube, claim).record, f"{claim} ready")
    return record.namespace


async def left_behind() -> tuple[MemoryKube, dict[str, str]]:
    """The controller made two namespaces, then was uninstalled; one claim was deleted."""
    kube = MemoryKube()
    await kube.create(key_secret())
    gone, kept = new_uid(), new_uid()
    async with running_reconciler(kube):
        kube.put(make_claim(gone, name="gone"))
        kube.put(make_claim(kept, name="kept"))
        made = {name: await provisioned(kube, name) for name in ("gone", "kept")}
    kube.remove(ResourceClaim, "gone", "default")
    # Not the driver's, whatever their labels say.
    forged = signed_namespace("forged", new_uid())
    assert forged.metadata and forged.metadata.annotations
    forged.metadata.annotations[LABELS.ownership] = "v1:" + "0" * 64
    kube.put(forged)
    kube.put(signed_namespace("other-install", new_uid(), signer=Signer(b"o" * 32)))
    kube.put(Namespace(metadata=ObjectMeta(name="unrelated")))
    return kube, made


async def test_a_dry_run_reports_and_deletes_nothing() -> None:
    kube, made = await left_behind()
    said: list[str] = []
    assert await cleanup(kube, arguments(), said.append) == 0
    assert set(namespaces(kube)) >= {*made.values(), "forged", "other-install", "unrelated"}
    text = "\n".join(said)
    assert f"would delete  {made['gone']}" in text
    assert f"kept          {made['kept']}" in text
    assert "a claim still holds it: delete the claim first" in text
    assert text.count("no valid ownership signature") == 2
    assert "unrelated" not in text, "only namespaces with the driver's labels are listed"
    assert said[-1] == "dry run: 1 namespace(s) would be deleted; add --delete to delete them"


async def test_delete_removes_only_signed_namespaces_no_claim_holds() -> None:
    kube, made = await left_behind()
    said: list[str] = []
    assert await cleanup(kube, arguments("--delete"), said.append) == 0
    assert set(namespaces(kube)) == {made["kept"], "forged", "other-install", "unrelated"}
    assert any(line.startswith(f"deleted       {made['gone']}") for line in said)
    # Nothing left to do the second time.
    again: list[str] = []
    await cleanup(kube, arguments("--delete"), again.append)
    assert not any(line.startswith("deleted") for line in again)


async def test_protected_namespaces_are_kept_even_when_signed() -> None:
    kube = MemoryKube()
    await kube.create(key_secret())
    kube.put(signed_namespace("precious", new_uid()))
    said: list[str] = []
    await cleanup(kube, arguments("--delete", "--protected-namespaces=precious"), said.append)
    assert "precious" in namespaces(kube)
    assert said == [
        f"kept          {'precious':<40} claim {_claim_of(kube, 'precious')}: protected"
    ]


async def test_without_the_key_nothing_is_deleted() -> None:
    kube = MemoryKube()
    kube.put(signed_namespace("orphan", new_uid()))
    with pytest.raises(ValueError, match="ownership key\\) does not exist"):
        await cleanup(kube, arguments("--delete"))
    assert "orphan" in namespaces(kube)
    assert not kube.stored(Secret), "cleanup never creates a key"


async def test_a_namespace_recreated_under_the_same_name_is_left_alone() -> None:
    """Deletion is conditional on the UID the decision was made for."""
    kube = MemoryKube()
    await kube.create(key_secret())
    kube.put(signed_namespace("reused", new_uid()))
    [decision] = await plan(kube, DEFAULT_DRIVER_NAME, SIGNER, frozenset())
    assert decision.verdict.delete
    kube.remove(Namespace, "reused")
    kube.put(signed_namespace("reused", new_uid()))
    assert await apply(kube, [decision]) == []
    assert "reused" in namespaces(kube)


def _claim_of(kube: MemoryKube, name: str) -> str:
    labels = namespaces(kube)[name].metadata.labels  # type: ignore[union-attr]
    return str(labels[LABELS.claim_uid])  # type: ignore[index]


def test_kubeconfig_defaults_to_kubectls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    assert kubeconfig_for("/given") == "/given"
    assert kubeconfig_for(None) is None, "in-cluster when there is no ~/.kube/config"
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\n")
    assert kubeconfig_for(None) == str(tmp_path / ".kube" / "config")

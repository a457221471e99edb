"""State written by an earlier plugin version is still understood after an upgrade.

The fixtures in ``fixtures/`` were written by the plugin as of commit 99bca74 (before the
kubelet protocol layer was split out), by preparing two claims through its gRPC service:
a template claim with one device, and a claim with two devices and a NamespaceConfig that
overrides the env prefix, mount path and token lifetime. A plugin pod replaced during an
upgrade leaves exactly these files behind: the checkpoint on disk, the CDI specs on tmpfs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from space_dra.contract import WORKLOAD_SERVICE_ACCOUNT
from space_dra.kube_memory import MemoryKube
from space_dra.plugin.server import PluginServer
from tests.protocol.conftest import Dirs, Kubelet

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DRIVER = "space.resource.example.com"
SINGLE = "3b0f6f4e-2a51-4c3e-9d7a-5e1f0c2b8a91"
MULTI = "7c2d9e10-4b6a-4f8e-a1d3-9e8f7a6b5c42"
# Where the generating run kept its artifacts; the specs name it in their hostPath.
FIXTURE_ARTIFACTS = "/tmp/sdra-m1lxs1kp/artifacts"
NAMESPACES = {
    f"{SINGLE}": "ephemeral-ns-aaaaa",
    f"{MULTI}-0": "ephemeral-ns-bbbbb",
    f"{MULTI}-1": "ephemeral-ns-ccccc",
}


def fixture_spec(dirs: Dirs, uid: str) -> str:
    text = (FIXTURES / f"cdi-v1-{uid}.json").read_text()
    return text.replace(FIXTURE_ARTIFACTS, str(dirs.artifacts))


def kube_with_service_accounts() -> MemoryKube:
    kube = MemoryKube()
    for namespace in NAMESPACES.values():
        kube.service_accounts.add((namespace, WORKLOAD_SERVICE_ACCOUNT))
    return kube


async def prepare_both_from_state(dirs: Dirs, kube: MemoryKube) -> None:
    """Both claims are answered from local state alone, then unprepared cleanly."""
    # As after a reboot: the credentials are gone and must be minted again.
    shutil.rmtree(dirs.artifacts, ignore_errors=True)
    server = PluginServer(kube, dirs.options())
    await server.start()
    kubelet = Kubelet(server.paths.dra)
    try:
        response = await kubelet.prepare(
            ("default", "pod0-test-claim-x7k2p", SINGLE), ("team-a", "multi", MULTI)
        )
        assert kube.calls.count("get_claim") == 0, "known claims need no API server"
        assert {uid: entry.error for uid, entry in response.claims.items()} == {
            SINGLE: "",
            MULTI: "",
        }
        ids = {
            uid: [(d.device_name, list(d.cdi_device_ids)) for d in entry.devices]
            for uid, entry in response.claims.items()
        }
        assert ids == {
            SINGLE: [("slot-0", [f"{DRIVER}/namespace={SINGLE}"])],
            MULTI: [
                ("slot-3", [f"{DRIVER}/namespace={MULTI}-0"]),
                ("slot-7", [f"{DRIVER}/namespace={MULTI}-1"]),
            ],
        }
        for name, namespace in NAMESPACES.items():
            assert (dirs.artifacts / name / "namespace").read_text() == namespace
            assert (dirs.artifacts / name / "token").read_text().startswith("memtoken.")
        kubeconfig = (dirs.artifacts / f"{MULTI}-1" / "kubeconfig").read_text()
        assert 'tokenFile: "/var/work/space-1/token"' in kubeconfig
        assert {lifetime for _, _, lifetime in kube.tokens_issued} == {3600, 1200}

        await kubelet.unprepare(
            ("default", "pod0-test-claim-x7k2p", SINGLE), ("team-a", "multi", MULTI)
        )
        assert list(dirs.cdi.iterdir()) == []
        assert list(dirs.artifacts.iterdir()) == []
    finally:
        await kubelet.close()
        await server.stop()


async def test_a_checkpoint_from_the_previous_version_restores_identical_cdi_specs(
    dirs: Dirs,
) -> None:
    checkpoint = dirs.plugins / DRIVER / "checkpoint.json"
    checkpoint.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "checkpoint-v1.json", checkpoint)

    server = PluginServer(kube_with_service_accounts(), dirs.options())
    await server.start()
    try:
        for uid in (SINGLE, MULTI):
            restored = (dirs.cdi / f"{DRIVER}-{uid}.json").read_text()
            assert restored == fixture_spec(dirs, uid), "the same spec, byte for byte"
        assert set(server.driver.prepared()) == {SINGLE, MULTI}
    finally:
        await server.stop()

    await prepare_both_from_state(dirs, kube_with_service_accounts())


async def test_cdi_specs_from_the_previous_version_rebuild_a_lost_checkpoint(
    dirs: Dirs,
) -> None:
    dirs.cdi.mkdir(parents=True)
    for uid in (SINGLE, MULTI):
        (dirs.cdi / f"{DRIVER}-{uid}.json").write_text(fixture_spec(dirs, uid))
    checkpoint = dirs.plugins / DRIVER / "checkpoint.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{ truncated")

    server = PluginServer(kube_with_service_accounts(), dirs.options())
    await server.start()
    try:
        rebuilt = json.loads(checkpoint.read_text())
        original = json.loads((FIXTURES / "checkpoint-v1.json").read_text())
        assert rebuilt["version"] == original["version"]
        # Token times are not in the specs; everything else comes back as it was.
        for entry in (*rebuilt["claims"].values(), *original["claims"].values()):
            for device in entry["devices"]:
                device["token_issued_at"] = device["token_expires_at"] = 0.0
        assert rebuilt["claims"] == original["claims"]
    finally:
        await server.stop()

    await prepare_both_from_state(dirs, kube_with_service_accounts())

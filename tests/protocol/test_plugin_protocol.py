"""The kubelet plugin over real gRPC on real unix sockets, as the kubelet calls it."""

from __future__ import annotations

import asyncio
import json
import stat
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2

from space_dra.contract import CONDITION_HEALTHY, WORKLOAD_SERVICE_ACCOUNT
from space_dra.plugin.server import PluginServer
from space_dra.proto.dra.v1 import api_pb2 as v1
from space_dra.proto.dra.v1beta1 import api_pb2 as v1beta1
from space_dra.proto.dra_health.v1 import api_pb2 as health_v1
from space_dra.proto.dra_health.v1alpha1 import api_pb2 as health_v1alpha1
from space_dra.proto.pluginregistration import api_pb2 as reg
from tests.protocol.conftest import Dirs, Harness, Kubelet, serving
from tests.support.claims import (
    SERVER,
    condition,
    failed_device,
    make_claim,
    namespace_config,
    new_uid,
    ready_device,
)

DRIVER = "space.resource.example.com"


def add_ready_claim(
    h: Harness, name: str = "test-claim", namespace: str = "default", **kwargs: Any
) -> str:
    uid = new_uid()
    ns = f"ephemeral-ns-{uid[:5]}"
    h.kube.service_accounts.add((ns, WORKLOAD_SERVICE_ACCOUNT))
    h.kube.put_claim(
        make_claim(
            uid,
            name=name,
            namespace=namespace,
            status_devices=[ready_device("slot-0", ns)],
            **kwargs,
        )
    )
    return uid


async def get_info(socket: Path) -> reg.PluginInfo:
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(
            "/pluginregistration.Registration/GetInfo",
            request_serializer=reg.InfoRequest.SerializeToString,
            response_deserializer=reg.PluginInfo.FromString,
        )
        info: reg.PluginInfo = await call(reg.InfoRequest(), timeout=5)
        return info


async def notify(socket: Path, registered: bool, error: str = "") -> None:
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(
            "/pluginregistration.Registration/NotifyRegistrationStatus",
            request_serializer=reg.RegistrationStatus.SerializeToString,
            response_deserializer=reg.RegistrationStatusResponse.FromString,
        )
        await call(reg.RegistrationStatus(plugin_registered=registered, error=error), timeout=5)


async def health(socket: Path, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        response: health_pb2.HealthCheckResponse = await call(
            health_pb2.HealthCheckRequest(service=service)
        )
        return int(response.status)


async def http_get(port: int, path: str) -> tuple[int, str]:
    # In a thread: the server under test runs on this test's event loop.
    return await asyncio.to_thread(_http_get, port, path)


def _http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# -- registration ---------------------------------------------------------------


async def test_get_info_names_driver_endpoint_and_versions(harness: Harness) -> None:
    info = await get_info(harness.server.paths.registration)
    assert info.type == "DRAPlugin"
    assert info.name == DRIVER
    assert info.endpoint == str(harness.server.paths.dra)
    assert Path(info.endpoint).is_absolute()
    assert list(info.supported_versions) == [
        "v1.DRAPlugin",
        "v1beta1.DRAPlugin",
        "v1.DRAResourceHealth",
        "v1alpha1.DRAResourceHealth",
    ]


async def test_socket_layout_and_modes(harness: Harness) -> None:
    paths = harness.server.paths
    assert paths.dra == harness.dirs.plugins / DRIVER / "dra.sock"
    assert paths.registration == harness.dirs.registry / f"{DRIVER}-reg.sock"
    for path in (paths.dra, paths.registration):
        mode = path.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600


async def test_rejected_registration_is_surfaced_in_health(harness: Harness) -> None:
    port = harness.server.http.port
    assert await health(harness.server.paths.dra) == health_pb2.HealthCheckResponse.SERVING
    assert (await http_get(port, "/healthz"))[0] == 200
    await notify(harness.server.paths.registration, registered=True)
    assert "space_dra_plugin_registered 1.0" in (await http_get(port, "/metrics"))[1]

    await notify(harness.server.paths.registration, registered=False, error="version mismatch")
    assert await health(harness.server.paths.dra) == health_pb2.HealthCheckResponse.NOT_SERVING
    status, body = await http_get(port, "/healthz")
    assert status == 503
    assert "version mismatch" in body


async def test_sockets_removed_on_stop_and_stale_ones_replaced(dirs: Dirs) -> None:
    from space_dra.kube_memory import MemoryKube

    server = PluginServer(MemoryKube(), dirs.options())
    await server.start()
    await server.stop()
    assert not server.paths.dra.exists()
    assert not server.paths.registration.exists()

    # A crashed plugin leaves its sockets behind; the next start replaces them.
    import socket

    for path in (server.paths.dra, server.paths.registration):
        leftover = socket.socket(socket.AF_UNIX)
        leftover.bind(str(path))
        leftover.close()
    again = PluginServer(MemoryKube(), dirs.options())
    await again.start()
    try:
        assert (await get_info(again.paths.registration)).name == DRIVER
    finally:
        await again.stop()


async def test_refuses_to_replace_a_non_socket(dirs: Dirs) -> None:
    from space_dra.kube_memory import MemoryKube

    server = PluginServer(MemoryKube(), dirs.options())
    server.paths.registration.parent.mkdir(parents=True)
    server.paths.registration.write_text("not a socket")
    with pytest.raises(FileExistsError, match="not a socket"):
        await server.start()
    await server.stop()
    assert server.paths.registration.read_text() == "not a socket"


async def test_rolling_update_mode_puts_pod_uid_in_both_sockets(dirs: Dirs) -> None:
    from dataclasses import replace

    from space_dra.kube_memory import MemoryKube

    pod_uid = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    first = PluginServer(MemoryKube(), replace(dirs.options(), rolling_update_uid=pod_uid))
    second = PluginServer(MemoryKube(), replace(dirs.options(), rolling_update_uid=new_uid()))
    await first.start()
    await second.start()
    try:
        assert pod_uid in first.paths.dra.name
        assert pod_uid in first.paths.registration.name
        assert first.paths.dra != second.paths.dra
        assert (await get_info(first.paths.registration)).endpoint == str(first.paths.dra)
        assert (await get_info(second.paths.registration)).endpoint == str(second.paths.dra)
    finally:
        await second.stop()
        await first.stop()


# -- prepare ---------------------------------------------------------------------


@pytest.mark.parametrize("api", [v1, v1beta1], ids=["v1", "v1beta1"])
async def test_prepare_writes_cdi_spec_artifacts_and_checkpoint(
    harness: Harness, api: object
) -> None:
    uid = add_ready_claim(harness)
    response = await harness.kubelet.prepare(("default", "test-claim", uid), api=api)
    assert set(response.claims) == {uid}
    entry = response.claims[uid]
    assert entry.error == ""
    [device] = entry.devices
    assert (device.pool_name, device.device_name, list(device.request_names)) == (
        "space",
        "slot-0",
        ["ns"],
    )
    assert list(device.cdi_device_ids) == [f"{DRIVER}/namespace={uid}"]

    spec = json.loads((harness.dirs.cdi / f"{DRIVER}-{uid}.json").read_text())
    assert spec["kind"] == f"{DRIVER}/namespace"
    [cdi_device] = spec["devices"]
    env = dict(item.split("=", 1) for item in cdi_device["containerEdits"]["env"])
    namespace = f"ephemeral-ns-{uid[:5]}"
    assert env == {
        "DRA_RESOURCE_DRIVER_NAME": DRIVER,
        "TEST_CLAIM_CLUSTER": SERVER,
        "TEST_CLAIM_NAMESPACE": namespace,
        "TEST_CLAIM_KUBECONFIG": "/etc/test-claim/kubeconfig",
    }
    [mount] = cdi_device["containerEdits"]["mounts"]
    assert mount["hostPath"] == str(harness.dirs.artifacts / uid)
    assert mount["containerPath"] == "/etc/test-claim"
    assert "ro" in mount["options"]
    assert "memtoken" not in json.dumps(spec), "tokens must never appear in CDI specs"

    artifacts = harness.dirs.artifacts / uid
    token = (artifacts / "token").read_text()
    assert token.startswith("memtoken.")
    assert (artifacts / "namespace").read_text() == namespace
    kubeconfig = yaml.safe_load((artifacts / "kubeconfig").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == SERVER
    assert kubeconfig["contexts"][0]["context"]["namespace"] == namespace
    assert kubeconfig["users"][0]["user"] == {"tokenFile": "/etc/test-claim/token"}
    assert stat.S_IMODE(harness.dirs.artifacts.stat().st_mode) == 0o700
    assert stat.S_IMODE((artifacts / "token").stat().st_mode) == 0o644

    checkpoint = json.loads((harness.dirs.plugins / DRIVER / "checkpoint.json").read_text())
    assert list(checkpoint["claims"]) == [uid]
    assert "memtoken" not in json.dumps(checkpoint)
    assert harness.kube.tokens_issued == [(namespace, WORKLOAD_SERVICE_ACCOUNT, 3600)]


async def test_template_claim_uses_pod_claim_name_for_env_and_mount(harness: Harness) -> None:
    uid = add_ready_claim(
        harness,
        name="pod0-test-claim-x7k2p",
        annotations={"resource.kubernetes.io/pod-claim-name": "my-space"},
    )
    response = await harness.kubelet.prepare(("default", "pod0-test-claim-x7k2p", uid))
    assert response.claims[uid].error == ""
    spec = json.loads((harness.dirs.cdi / f"{DRIVER}-{uid}.json").read_text())
    edits = spec["devices"][0]["containerEdits"]
    assert "MY_SPACE_KUBECONFIG=/etc/my-space/kubeconfig" in edits["env"]
    assert edits["mounts"][0]["containerPath"] == "/etc/my-space"


async def test_a_claim_generated_for_a_pods_extended_resource_uses_the_fixed_names(
    harness: Harness,
) -> None:
    # What the scheduler creates for a pod asking for the DeviceClass's extended resource.
    name = "pod0-extended-resources-x7k2p"
    uid = add_ready_claim(
        harness,
        name=name,
        annotations={"resource.kubernetes.io/extended-resource-claim": "true"},
    )
    response = await harness.kubelet.prepare(("default", name, uid))
    assert response.claims[uid].error == ""
    spec = json.loads((harness.dirs.cdi / f"{DRIVER}-{uid}.json").read_text())
    edits = spec["devices"][0]["containerEdits"]
    assert "SPACE_KUBECONFIG=/etc/space/kubeconfig" in edits["env"]
    assert f"SPACE_NAMESPACE=ephemeral-ns-{uid[:5]}" in edits["env"]
    assert not any(e.startswith("POD0_") for e in edits["env"])
    assert edits["mounts"][0]["containerPath"] == "/etc/space"


async def test_opaque_config_overrides_env_prefix_mount_and_lifetime(harness: Harness) -> None:
    config = namespace_config(
        envPrefix="WORK", mountPath="/var/work/space", tokenExpirationSeconds=1200
    )
    uid = add_ready_claim(harness, configs=[("FromClaim", config, [])])
    response = await harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    spec = json.loads((harness.dirs.cdi / f"{DRIVER}-{uid}.json").read_text())
    edits = spec["devices"][0]["containerEdits"]
    assert "WORK_KUBECONFIG=/var/work/space/kubeconfig" in edits["env"]
    assert harness.kube.tokens_issued[-1][2] == 1200


async def test_claim_with_several_devices_numbers_them(harness: Harness) -> None:
    uid = new_uid()
    for ns in ("ns-a", "ns-b"):
        harness.kube.service_accounts.add((ns, WORKLOAD_SERVICE_ACCOUNT))
    harness.kube.put_claim(
        make_claim(
            uid,
            devices=[("ns", "slot-3"), ("ns", "slot-7")],
            status_devices=[ready_device("slot-3", "ns-a"), ready_device("slot-7", "ns-b")],
        )
    )
    response = await harness.kubelet.prepare(("default", "test-claim", uid))
    entry = response.claims[uid]
    assert entry.error == ""
    assert [d.device_name for d in entry.devices] == ["slot-3", "slot-7"]
    assert [list(d.cdi_device_ids) for d in entry.devices] == [
        [f"{DRIVER}/namespace={uid}-0"],
        [f"{DRIVER}/namespace={uid}-1"],
    ]
    spec = json.loads((harness.dirs.cdi / f"{DRIVER}-{uid}.json").read_text())
    envs = [set(d["containerEdits"]["env"]) for d in spec["devices"]]
    assert "TEST_CLAIM_0_NAMESPACE=ns-a" in envs[0]
    assert "TEST_CLAIM_1_NAMESPACE=ns-b" in envs[1]
    assert {(harness.dirs.artifacts / f"{uid}-{i}" / "namespace").read_text() for i in (0, 1)} == {
        "ns-a",
        "ns-b",
    }
    await harness.kubelet.unprepare(("default", "test-claim", uid))
    assert list(harness.dirs.artifacts.iterdir()) == []


async def test_prepare_is_idempotent_and_recreates_lost_files(harness: Harness) -> None:
    uid = add_ready_claim(harness)
    first = await harness.kubelet.prepare(("default", "test-claim", uid))
    again = await harness.kubelet.prepare(("default", "test-claim", uid))
    assert first == again
    assert harness.kube.calls.count("get_claim") == 1, (
        "a prepared claim is answered from the checkpoint"
    )

    spec = harness.dirs.cdi / f"{DRIVER}-{uid}.json"
    content = spec.read_text()
    spec.unlink()
    import shutil

    shutil.rmtree(harness.dirs.artifacts / uid)
    third = await harness.kubelet.prepare(("default", "test-claim", uid))
    assert third == first
    assert spec.read_text() == content
    assert (harness.dirs.artifacts / uid / "kubeconfig").is_file()


async def test_waits_for_the_controller_then_succeeds(harness: Harness) -> None:
    uid = new_uid()
    ns = "ephemeral-ns-later"
    harness.kube.service_accounts.add((ns, WORKLOAD_SERVICE_ACCOUNT))
    harness.kube.put_claim(make_claim(uid))

    async def controller_marks_ready() -> None:
        await asyncio.sleep(0.3)
        harness.kube.put_claim(make_claim(uid, status_devices=[ready_device("slot-0", ns)]))

    task = asyncio.create_task(controller_marks_ready())
    response = await harness.kubelet.prepare(("default", "test-claim", uid))
    await task
    assert response.claims[uid].error == ""
    assert (harness.dirs.artifacts / uid / "namespace").read_text() == ns


async def test_batch_answers_every_uid_and_writes_nothing_for_failures(harness: Harness) -> None:
    good = add_ready_claim(harness, name="good")
    bad: dict[str, tuple[str, str, str]] = {}

    uid = new_uid()
    bad["not found"] = ("default", "missing", uid)

    uid = new_uid()
    harness.kube.put_claim(make_claim(uid, name="unallocated", allocated=False))
    bad["is not allocated"] = ("default", "unallocated", uid)

    uid = new_uid()
    harness.kube.put_claim(make_claim(uid, name="other-driver", driver="gpu.example.com"))
    bad["no device of driver"] = ("default", "other-driver", uid)

    uid = new_uid()
    harness.kube.put_claim(make_claim(new_uid(), name="replaced"))
    bad["the claim was replaced"] = ("default", "replaced", uid)

    uid = new_uid()
    harness.kube.put_claim(make_claim(uid, name="never-ready"))
    bad["has not marked namespace"] = ("default", "never-ready", uid)

    uid = new_uid()
    harness.kube.put_claim(
        make_claim(uid, name="failed", status_devices=[failed_device("slot-0", "quota too big")])
    )
    bad["quota too big"] = ("default", "failed", uid)

    uid = new_uid()
    expired = ready_device("slot-0", "gone-ns")
    expired["conditions"].append(
        condition(CONDITION_HEALTHY, "False", "NamespaceExpired", "gone-ns expired at noon")
    )
    harness.kube.put_claim(make_claim(uid, name="expired", status_devices=[expired]))
    bad["namespace gone-ns: NamespaceExpired: gone-ns expired at noon"] = (
        "default",
        "expired",
        uid,
    )

    uid = new_uid()
    harness.kube.put_claim(
        make_claim(
            uid,
            name="bad-config",
            configs=[("FromClaim", namespace_config(colour="blue"), [])],
            status_devices=[ready_device("slot-0", "x")],
        )
    )
    bad["unknown field 'colour'"] = ("default", "bad-config", uid)

    uid = new_uid()
    harness.kube.put_claim(
        make_claim(uid, name="9lives", status_devices=[ready_device("slot-0", "x")])
    )
    bad["not a valid environment variable name"] = ("default", "9lives", uid)

    uid = new_uid()
    harness.kube.put_claim(
        make_claim(
            uid,
            name="escape",
            annotations={"resource.kubernetes.io/pod-claim-name": "../../../etc"},
            status_devices=[ready_device("slot-0", "x")],
        )
    )
    bad["normalized absolute path"] = ("default", "escape", uid)

    uid = new_uid()
    ns = "ephemeral-ns-malformed"
    broken = ready_device("slot-0", ns)
    broken["data"] = {"namespace": ns}
    harness.kube.put_claim(make_claim(uid, name="malformed", status_devices=[broken]))
    bad["'serviceAccount' is missing"] = ("default", "malformed", uid)

    bad["not a Kubernetes UID"] = ("default", "traversal", "../../../../tmp/x")
    bad["empty claim UID"] = ("default", "empty", "")

    response = await harness.kubelet.prepare(("default", "good", good), *bad.values())
    assert set(response.claims) == {good} | {ref[2] for ref in bad.values()}
    assert response.claims[good].error == ""
    for reason, (_, _, uid) in bad.items():
        entry = response.claims[uid]
        assert reason in entry.error, (reason, entry.error)
        assert len(entry.devices) == 0
        if uid:
            assert uid[:36] in entry.error or "UID" in entry.error
    assert sorted(p.name for p in harness.dirs.cdi.iterdir()) == [f"{DRIVER}-{good}.json"]
    assert sorted(p.name for p in harness.dirs.artifacts.iterdir()) == [good]


async def test_token_failure_leaves_nothing_behind(harness: Harness) -> None:
    uid = new_uid()
    harness.kube.put_claim(
        make_claim(uid, status_devices=[ready_device("slot-0", "no-such-sa-ns")])
    )
    response = await harness.kubelet.prepare(("default", "test-claim", uid))
    assert "cannot create token" in response.claims[uid].error
    assert list(harness.dirs.cdi.iterdir()) == []
    assert list(harness.dirs.artifacts.iterdir()) == []


async def test_duplicate_uids_in_one_request(harness: Harness) -> None:
    uid = add_ready_claim(harness)
    same = await harness.kubelet.prepare(
        ("default", "test-claim", uid), ("default", "test-claim", uid)
    )
    assert same.claims[uid].error == ""
    conflicting = await harness.kubelet.prepare(
        ("default", "test-claim", uid), ("other", "test-claim", uid)
    )
    assert "names this UID for both" in conflicting.claims[uid].error


async def test_empty_request_gets_empty_response(harness: Harness) -> None:
    response = await harness.kubelet.prepare()
    assert len(response.claims) == 0


# -- unprepare -------------------------------------------------------------------


@pytest.mark.parametrize("api", [v1, v1beta1], ids=["v1", "v1beta1"])
async def test_unprepare_removes_everything_and_is_idempotent(
    harness: Harness, api: object
) -> None:
    uid = add_ready_claim(harness)
    await harness.kubelet.prepare(("default", "test-claim", uid), api=api)
    harness.kube.claims.clear()  # the claim may already be gone from the API server
    response = await harness.kubelet.unprepare(("default", "test-claim", uid), api=api)
    assert set(response.claims) == {uid}
    assert response.claims[uid].error == ""
    assert list(harness.dirs.cdi.iterdir()) == []
    assert list(harness.dirs.artifacts.iterdir()) == []
    checkpoint = json.loads((harness.dirs.plugins / DRIVER / "checkpoint.json").read_text())
    assert checkpoint["claims"] == {}
    again = await harness.kubelet.unprepare(
        ("default", "test-claim", uid), ("default", "never", new_uid()), api=api
    )
    assert all(entry.error == "" for entry in again.claims.values())
    assert len(again.claims) == 2


async def test_unprepare_without_checkpoint_entry_still_cleans_owned_files(
    harness: Harness,
) -> None:
    uid = new_uid()
    (harness.dirs.artifacts / uid).mkdir(parents=True)
    (harness.dirs.artifacts / f"{uid}-1").mkdir()
    (harness.dirs.artifacts / "someone-else").mkdir()
    harness.dirs.cdi.mkdir(parents=True, exist_ok=True)
    (harness.dirs.cdi / f"{DRIVER}-{uid}.json").write_text("{}")
    response = await harness.kubelet.unprepare(("default", "c", uid))
    assert response.claims[uid].error == ""
    assert sorted(p.name for p in harness.dirs.artifacts.iterdir()) == ["someone-else"]
    assert list(harness.dirs.cdi.iterdir()) == []


async def test_unprepare_rejects_hostile_uid(harness: Harness) -> None:
    (harness.dirs.root / "victim").mkdir()
    response = await harness.kubelet.unprepare(("default", "c", "../victim"))
    assert "not a Kubernetes UID" in response.claims["../victim"].error
    assert (harness.dirs.root / "victim").is_dir()


# -- restarts, reboots and rotation ----------------------------------------------


async def test_restart_resumes_and_reboot_recreates_cdi_and_artifacts(harness: Harness) -> None:
    import shutil

    uid = add_ready_claim(harness)
    await harness.kubelet.prepare(("default", "test-claim", uid))
    await harness.kubelet.close()
    await harness.server.stop()

    # A reboot wipes the tmpfs directories but keeps the checkpoint.
    shutil.rmtree(harness.dirs.cdi)
    shutil.rmtree(harness.dirs.artifacts)
    restarted = PluginServer(harness.kube, harness.dirs.options())
    await restarted.start()
    harness.server = restarted
    harness.kubelet = Kubelet(restarted.paths.dra)
    assert (harness.dirs.cdi / f"{DRIVER}-{uid}.json").is_file(), "CDI spec restored at start"
    for _ in range(50):
        if (harness.dirs.artifacts / uid / "kubeconfig").is_file():
            break
        await asyncio.sleep(0.05)
    assert (harness.dirs.artifacts / uid / "token").read_text().startswith("memtoken.")
    response = await harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""


async def test_corrupt_checkpoint_is_moved_aside_and_rebuilt_from_cdi_specs(
    harness: Harness,
) -> None:
    uid = add_ready_claim(harness)
    await harness.kubelet.prepare(("default", "test-claim", uid))
    await harness.kubelet.close()
    await harness.server.stop()
    checkpoint = harness.dirs.plugins / DRIVER / "checkpoint.json"
    checkpoint.write_text("{ not json")

    restarted = PluginServer(harness.kube, harness.dirs.options())
    await restarted.start()
    harness.server = restarted
    harness.kubelet = Kubelet(restarted.paths.dra)
    assert list(checkpoint.parent.glob("checkpoint.json.corrupt-*"))
    assert list(json.loads(checkpoint.read_text())["claims"]) == [uid]
    calls_before = harness.kube.calls.count("get_claim")
    response = await harness.kubelet.prepare(("default", "test-claim", uid))
    assert response.claims[uid].error == ""
    assert harness.kube.calls.count("get_claim") == calls_before, "recovered claim is known again"
    await harness.kubelet.unprepare(("default", "test-claim", uid))
    assert list(harness.dirs.artifacts.iterdir()) == []


async def test_token_is_rotated_before_expiry_through_the_same_directory(dirs: Dirs) -> None:
    # Credential checks (every minute by default) would re-mint first; this is the lifetime rule.
    async with serving(dirs, credential_check_interval=7200) as harness:
        await _rotated_before_expiry(harness)


async def _rotated_before_expiry(harness: Harness) -> None:
    uid = add_ready_claim(harness)
    await harness.kubelet.prepare(("default", "test-claim", uid))
    directory = harness.dirs.artifacts / uid
    before = (directory / "token").read_text()
    generation_before = (directory / "..data").readlink()

    driver = harness.server.driver
    now = driver.clock()
    assert await driver.refresh_due() > 0.7 * 3600, "nothing due right after prepare"
    driver.clock = lambda: now + 0.81 * 3600
    await driver.refresh_due()
    after = (directory / "token").read_text()
    assert after != before
    assert (directory / "..data").readlink() != generation_before
    hidden = [p.name for p in directory.iterdir() if p.name.startswith("..") and not p.is_symlink()]
    assert len(hidden) == 1, "old generations are removed"
    assert len(harness.kube.tokens_issued) == 2


@pytest.mark.parametrize("api", [health_v1, health_v1alpha1], ids=["v1", "v1alpha1"])
async def test_health_stream_reports_prepared_devices(harness: Harness, api: Any) -> None:
    stream = harness.kubelet.watch_health(api)
    first: Any = await asyncio.wait_for(stream.read(), 5)
    assert list(first.devices) == []

    uid = add_ready_claim(harness)
    await harness.kubelet.prepare(("default", "test-claim", uid))
    update: Any = await asyncio.wait_for(stream.read(), 5)
    [device] = update.devices
    assert (device.device.pool_name, device.device.device_name) == ("space", "slot-0")
    assert device.health == api.HEALTHY
    assert device.health_check_timeout_seconds > 0

    await harness.kubelet.unprepare(("default", "test-claim", uid))
    after: Any = await asyncio.wait_for(stream.read(), 5)
    assert list(after.devices) == []
    stream.cancel()


# The 1.37 kubelet's preference, newest first (pkg/kubelet/cm/dra/plugin/dra_plugin.go);
# a 1.36 kubelet opens v1alpha1 without looking at the list.
KUBELET_1_37_HEALTH_SERVICES = ("v1.DRAResourceHealth", "v1alpha1.DRAResourceHealth")


async def test_a_kubelet_choosing_from_get_info_gets_a_working_health_stream(
    harness: Harness,
) -> None:
    info = await get_info(harness.server.paths.registration)
    chosen = next(s for s in KUBELET_1_37_HEALTH_SERVICES if s in info.supported_versions)
    assert chosen == "v1.DRAResourceHealth"
    api = {"v1.DRAResourceHealth": health_v1}[chosen]
    uid = add_ready_claim(harness)
    await harness.kubelet.prepare(("default", "test-claim", uid))
    stream = harness.kubelet.watch_health(api)
    first: Any = await asyncio.wait_for(stream.read(), 5)
    assert [d.health for d in first.devices] == [api.HEALTHY]
    stream.cancel()


def test_rolling_update_socket_names_fit_grpc_limits_with_kubelet_paths() -> None:
    from space_dra.kubeletplugin.sockets import MAX_SOCKET_PATH, socket_paths

    pod_uid = "78115f7e-8669-4c64-9098-57ec6249219f"
    paths = socket_paths(
        DRIVER, Path("/var/lib/kubelet/plugins"), Path("/var/lib/kubelet/plugins_registry"), pod_uid
    )
    for path in (paths.dra, paths.registration):
        assert len(str(path)) <= MAX_SOCKET_PATH
    assert paths.registration.name.startswith(f"{DRIVER}-") and paths.registration.name.endswith(
        "-reg.sock"
    )
    other = socket_paths(
        DRIVER,
        Path("/var/lib/kubelet/plugins"),
        Path("/var/lib/kubelet/plugins_registry"),
        new_uid(),
    )
    assert other.registration != paths.registration, "hashed names stay unique per pod"


async def test_sockets_of_dead_instances_are_removed_live_ones_kept(dirs: Dirs) -> None:
    import socket as sockets
    from dataclasses import replace

    from space_dra.kube_memory import MemoryKube

    live = PluginServer(MemoryKube(), replace(dirs.options(), rolling_update_uid=new_uid()))
    await live.start()
    dead = dirs.registry / f"{DRIVER}-{new_uid()}-reg.sock"
    leftover = sockets.socket(sockets.AF_UNIX)
    leftover.bind(str(dead))
    leftover.close()
    second = PluginServer(MemoryKube(), replace(dirs.options(), rolling_update_uid=new_uid()))
    await second.start()
    try:
        assert not dead.exists()
        assert live.paths.registration.exists(), "a live instance's socket is kept"
        assert (await get_info(live.paths.registration)).name == DRIVER
    finally:
        await second.stop()
        await live.stop()


async def test_per_claim_locks_do_not_accumulate(harness: Harness) -> None:
    good = add_ready_claim(harness)
    unknown = [("default", f"x{i}", new_uid()) for i in range(50)]
    await harness.kubelet.prepare(("default", "test-claim", good), *unknown)
    await harness.kubelet.unprepare(("default", "test-claim", good), *unknown)
    # The refresh loop must take the very locks the layer serialises prepares with.
    assert harness.server.kubelet.claim_locks is harness.server.driver.claim_locks
    assert len(harness.server.driver.claim_locks) == 0

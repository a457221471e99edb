"""The twin driver (bench/twin_driver.py) over real gRPC on real unix sockets.

A second driver on the kubelet protocol layer: if the layer were not enough to write a
driver, or leaked namespace concepts, these tests could not pass with the twin alone.
"""

from __future__ import annotations

import json
import shutil
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from bench.twin_driver import TwinPlugin, node_pool, options_from, parse
from bench.twin_driver_core import TwinOptions
from space_dra import kubeletplugin as kp
from space_dra.kube_memory import MemoryKube
from space_dra.proto.dra.v1 import api_pb2 as v1
from space_dra.proto.dra.v1beta1 import api_pb2 as v1beta1
from tests.protocol.conftest import Dirs, Kubelet
from tests.protocol.test_cdi_spec_validity import validate
from tests.protocol.test_plugin_protocol import get_info
from tests.support.claims import make_claim, new_uid

TWIN = "twin.bench.space.example.com"
SERVER = "https://twin.example:6443"


class Twin:
    def __init__(self, dirs: Dirs, kube: MemoryKube, rolling_update_uid: str | None = None):
        self.dirs = dirs
        self.kube = kube
        self.options = TwinOptions(
            driver_name=TWIN,
            cdi_dir=dirs.cdi,
            artifact_dir=dirs.artifacts,
            checkpoint_path=dirs.plugins / TWIN / "checkpoint.json",
            server=SERVER,
        )
        self.plugin = TwinPlugin(
            kube,
            self.options,
            kp.Options(
                driver_name=TWIN,
                plugins_dir=dirs.plugins,
                registrar_dir=dirs.registry,
                rolling_update_uid=rolling_update_uid,
                grace_seconds=0.5,
            ),
        )
        self.paths = self.plugin.kubelet.paths
        self.kubelet = Kubelet(self.paths.dra)

    def claim(self, name: str = "test-claim", **kwargs: Any) -> str:
        uid = new_uid()
        self.kube.put_claim(make_claim(uid, name=name, driver=TWIN, **kwargs))
        return uid

    def spec(self, uid: str) -> Any:
        return json.loads((self.dirs.cdi / f"{TWIN}-{uid}.json").read_text())

    async def restart(self) -> None:
        await self.stop()
        self.plugin = TwinPlugin(self.kube, self.options, self.plugin.kubelet.options)
        await self.plugin.start()
        self.kubelet = Kubelet(self.paths.dra)

    async def stop(self) -> None:
        await self.kubelet.close()
        await self.plugin.stop()


@pytest.fixture
async def twin(dirs: Dirs) -> AsyncIterator[Twin]:
    twin = Twin(dirs, MemoryKube())
    await twin.plugin.start()
    try:
        yield twin
    finally:
        await twin.stop()


async def test_registers_under_its_own_name_without_a_health_service(twin: Twin) -> None:
    info = await get_info(twin.paths.registration)
    assert (info.type, info.name, info.endpoint) == ("DRAPlugin", TWIN, str(twin.paths.dra))
    assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
    assert twin.paths.dra == twin.dirs.plugins / TWIN / "dra.sock"
    for path in (twin.paths.dra, twin.paths.registration):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await twin.kubelet.call(
            "/v1alpha1.DRAResourceHealth/NodeWatchResources", v1.Claim(), v1.Claim
        )
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("api", [v1, v1beta1], ids=["v1", "v1beta1"])
async def test_prepare_writes_four_files_a_cdi_spec_and_a_checkpoint_entry(
    twin: Twin, api: object
) -> None:
    uid = twin.claim()
    response = await twin.kubelet.prepare(("default", "test-claim", uid), api=api)
    entry = response.claims[uid]
    assert entry.error == ""
    [device] = entry.devices
    assert (list(device.request_names), device.pool_name, device.device_name) == (
        ["ns"],
        "space",
        "slot-0",
    )
    assert list(device.cdi_device_ids) == [f"{TWIN}/claim={uid}"]

    files = twin.dirs.artifacts / uid
    visible = sorted(p.name for p in files.iterdir() if not p.name.startswith(".."))
    assert visible == ["ca.crt", "kubeconfig", "namespace", "token"]
    assert (files / "..data").is_symlink(), "published like a projected volume"
    assert (files / "token").readlink() == Path("..data/token")
    assert (files / "namespace").read_text() == "default"
    assert len((files / "token").read_text()) == 64
    assert "tokenFile: /etc/test-claim/token" in (files / "kubeconfig").read_text()

    spec = twin.spec(uid)
    assert spec["kind"] == f"{TWIN}/claim"
    [cdi_device] = spec["devices"]
    edits = cdi_device["containerEdits"]
    assert dict(item.split("=", 1) for item in edits["env"]) == {
        "DRA_RESOURCE_DRIVER_NAME": TWIN,
        "TEST_CLAIM_CLUSTER": SERVER,
        "TEST_CLAIM_NAMESPACE": "default",
        "TEST_CLAIM_KUBECONFIG": "/etc/test-claim/kubeconfig",
    }
    [mount] = edits["mounts"]
    assert (mount["hostPath"], mount["containerPath"]) == (str(files), "/etc/test-claim")
    assert "ro" in mount["options"]
    assert (files / "token").read_text() not in json.dumps(spec)

    checkpoint = json.loads((twin.dirs.plugins / TWIN / "checkpoint.json").read_text())
    assert list(checkpoint["claims"]) == [uid]
    assert twin.kube.calls == ["get_claim"], "one read, no token to mint"


async def test_specs_pass_the_reference_cdi_library(twin: Twin) -> None:
    single = twin.claim()
    multi = twin.claim("multi", devices=[("a", "slot-1"), ("b", "slot-2")])
    response = await twin.kubelet.prepare(
        ("default", "test-claim", single), ("default", "multi", multi)
    )
    ids = [i for entry in response.claims.values() for d in entry.devices for i in d.cdi_device_ids]
    assert len(ids) == 3
    result = validate(str(twin.dirs.cdi), *ids)
    assert result.returncode == 0, result.stderr
    edits = json.loads(result.stdout)
    assert "MULTI_1_NAMESPACE=default" in edits["env"]
    assert {m["destination"] for m in edits["mounts"]} == {
        "/etc/test-claim",
        "/etc/multi-0",
        "/etc/multi-1",
    }
    by_request = {tuple(d.request_names): d.device_name for d in response.claims[multi].devices}
    assert by_request == {("a",): "slot-1", ("b",): "slot-2"}


async def test_prepared_claims_are_answered_from_the_checkpoint_and_repaired(twin: Twin) -> None:
    uid = twin.claim()
    first = await twin.kubelet.prepare(("default", "test-claim", uid))
    (twin.dirs.cdi / f"{TWIN}-{uid}.json").unlink()
    shutil.rmtree(twin.dirs.artifacts / uid)
    again = await twin.kubelet.prepare(("default", "test-claim", uid))
    assert again == first
    assert twin.kube.calls.count("get_claim") == 1
    assert (twin.dirs.artifacts / uid / "kubeconfig").is_file()
    assert twin.spec(uid)["kind"] == f"{TWIN}/claim"


async def test_bad_claims_get_an_error_each_and_leave_nothing(twin: Twin) -> None:
    good = twin.claim("good")
    unallocated = twin.claim("unallocated", allocated=False)
    other_driver = new_uid()
    twin.kube.put_claim(make_claim(other_driver, name="other", driver="gpu.example.com"))
    replaced = new_uid()
    twin.kube.put_claim(make_claim(new_uid(), name="replaced", driver=TWIN))
    bad_name = twin.claim("9lives")
    missing = new_uid()
    response = await twin.kubelet.prepare(
        ("default", "good", good),
        ("default", "unallocated", unallocated),
        ("default", "other", other_driver),
        ("default", "replaced", replaced),
        ("default", "9lives", bad_name),
        ("default", "missing", missing),
        ("default", "hostile", "../../etc"),
    )
    errors = {uid: entry.error for uid, entry in response.claims.items()}
    assert errors.pop(good) == ""
    expected = {
        unallocated: "is not allocated",
        other_driver: f"no device of driver {TWIN}",
        replaced: "was replaced",
        bad_name: "not a valid environment variable name",
        missing: "not found",
        "../../etc": "not a Kubernetes UID",
    }
    assert set(errors) == set(expected)
    for uid, reason in expected.items():
        assert reason in errors[uid], (reason, errors[uid])
    assert [p.name for p in twin.dirs.cdi.iterdir()] == [f"{TWIN}-{good}.json"]
    assert [p.name for p in twin.dirs.artifacts.iterdir()] == [good]


async def test_unprepare_removes_everything_and_is_idempotent(twin: Twin) -> None:
    uid = twin.claim(devices=[("ns", "slot-1"), ("ns", "slot-2")])
    await twin.kubelet.prepare(("default", "test-claim", uid))
    assert len(list(twin.dirs.artifacts.iterdir())) == 2
    twin.kube.claims.clear()
    for _ in range(2):
        response = await twin.kubelet.unprepare(
            ("default", "test-claim", uid), ("default", "never", new_uid())
        )
        assert [entry.error for entry in response.claims.values()] == ["", ""]
        assert list(twin.dirs.cdi.iterdir()) == []
        assert list(twin.dirs.artifacts.iterdir()) == []
    checkpoint = json.loads((twin.dirs.plugins / TWIN / "checkpoint.json").read_text())
    assert checkpoint["claims"] == {}


async def test_a_restart_after_a_reboot_restores_specs_from_the_checkpoint(twin: Twin) -> None:
    uid = twin.claim()
    first = await twin.kubelet.prepare(("default", "test-claim", uid))
    spec = (twin.dirs.cdi / f"{TWIN}-{uid}.json").read_text()
    shutil.rmtree(twin.dirs.cdi)
    shutil.rmtree(twin.dirs.artifacts)
    await twin.restart()
    assert (twin.dirs.cdi / f"{TWIN}-{uid}.json").read_text() == spec
    again = await twin.kubelet.prepare(("default", "test-claim", uid))
    assert again == first
    assert twin.kube.calls.count("get_claim") == 1, "known across restarts"
    assert (twin.dirs.artifacts / uid / "token").is_file()


async def test_two_instances_serve_side_by_side_during_a_rolling_update(dirs: Dirs) -> None:
    kube = MemoryKube()
    old, new = Twin(dirs, kube, new_uid()), Twin(dirs, kube, new_uid())
    dead = dirs.registry / f"{TWIN}-{new_uid()}-reg.sock"
    dead.parent.mkdir(parents=True)
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(dead))
    leftover.close()
    await old.plugin.start()
    await new.plugin.start()
    try:
        assert not dead.exists(), "a killed instance's socket is removed"
        assert old.paths.registration != new.paths.registration
        uid = old.claim()
        await old.kubelet.prepare(("default", "test-claim", uid))
        # The other instance shares the checkpoint on disk: it can unprepare.
        response = await new.kubelet.unprepare(("default", "test-claim", uid))
        assert response.claims[uid].error == ""
        assert list(dirs.artifacts.iterdir()) == []
    finally:
        await new.stop()
        await old.stop()


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_UID", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")
    monkeypatch.setenv("NODE_NAME", "n1")
    args = parse(["--plugins-dir", "/p", "--registrar-dir", "/r", "--cdi-dir", "/c"])
    assert (args.node_name, args.devices) == ("n1", 64)
    twin, plugin = options_from(args)
    assert twin.checkpoint_path == Path("/p") / TWIN / "checkpoint.json"
    assert (twin.cdi_dir, twin.driver_name) == (Path("/c"), TWIN)
    assert plugin == kp.Options(
        driver_name=TWIN,
        plugins_dir=Path("/p"),
        registrar_dir=Path("/r"),
        rolling_update_uid="0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    )


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--node-name", ""], "--node-name (or NODE_NAME) is required"),
        (["--node-name", "n1", "--devices", "129"], "between 0 and 128"),
        (["--node-name", "n1", "--devices", "many"], "a whole number"),
        (["--node-name", "n1", "--log-level", "loud"], "invalid choice"),
    ],
)
def test_bad_flags_are_refused_clearly(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse(argv)
    assert complaint in capsys.readouterr().err
    assert parse(["--node-name", "", "--devices", "0"]).devices == 0, "no pool, no node needed"


def test_the_node_pool_is_one_slice_of_slots() -> None:
    pool = node_pool(TWIN, "node-a", 3)
    assert pool.metadata is not None and pool.metadata.name == f"node-a-{TWIN}"
    assert (pool.spec.driver, pool.spec.nodeName, pool.spec.pool.name) == (TWIN, "node-a", "node-a")
    assert pool.spec.pool.resourceSliceCount == 1
    assert [device.name for device in pool.spec.devices or []] == ["slot-0", "slot-1", "slot-2"]


async def test_the_pool_is_published_once_the_kubelet_can_call(dirs: Dirs) -> None:
    twin = Twin(dirs, MemoryKube())
    seen: list[bool] = []

    async def publish() -> None:
        seen.append(twin.paths.registration.exists() and twin.paths.dra.exists())

    twin.plugin = TwinPlugin(twin.kube, twin.options, twin.plugin.kubelet.options, publish)
    await twin.plugin.start()
    try:
        assert seen == [True]
    finally:
        await twin.stop()

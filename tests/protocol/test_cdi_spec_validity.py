"""Specs the plugin writes, checked by the reference CDI library containerd uses."""

from __future__ import annotations

import json
import subprocess

from space_dra.contract import WORKLOAD_SERVICE_ACCOUNT
from tests.protocol.conftest import Harness
from tests.protocol.test_plugin_protocol import add_ready_claim
from tests.support.claims import make_claim, new_uid, ready_device
from tests.support.gotools import REPO, build


def validate(spec_dir: str, *device_ids: str) -> subprocess.CompletedProcess[str]:
    validator = build(REPO / "tests" / "cdivalidate", "cdivalidate")
    return subprocess.run(
        [str(validator), spec_dir, *device_ids], capture_output=True, text=True, check=False
    )


def inject(harness: Harness, *device_ids: str) -> dict[str, object]:
    result = validate(str(harness.dirs.cdi), *device_ids)
    assert result.returncode == 0, result.stderr
    edits: dict[str, object] = json.loads(result.stdout)
    return edits


async def test_cdi_library_accepts_specs_and_resolves_the_returned_ids(harness: Harness) -> None:
    uid = add_ready_claim(harness)
    multi = new_uid()
    for ns in ("ns-a", "ns-b"):
        harness.kube.service_accounts.add((ns, WORKLOAD_SERVICE_ACCOUNT))
    harness.kube.put_claim(
        make_claim(
            multi,
            name="multi",
            devices=[("ns", "slot-1"), ("ns", "slot-2")],
            status_devices=[ready_device("slot-1", "ns-a"), ready_device("slot-2", "ns-b")],
        )
    )
    response = await harness.kubelet.prepare(
        ("default", "test-claim", uid), ("default", "multi", multi)
    )
    ids = [i for entry in response.claims.values() for d in entry.devices for i in d.cdi_device_ids]
    assert len(ids) == 3

    edits = inject(harness, *ids)
    env = edits["env"]
    assert isinstance(env, list)
    assert "TEST_CLAIM_KUBECONFIG=/etc/test-claim/kubeconfig" in env
    assert "MULTI_1_NAMESPACE=ns-b" in env
    mounts = edits["mounts"]
    assert isinstance(mounts, list)
    assert {m["destination"] for m in mounts} == {"/etc/test-claim", "/etc/multi-0", "/etc/multi-1"}
    assert all("ro" in m["options"] for m in mounts)


async def test_cdi_library_rejects_a_broken_spec(harness: Harness) -> None:
    # Guards the validator itself: a spec containerd would refuse must fail here.
    harness.dirs.cdi.mkdir(parents=True, exist_ok=True)
    (harness.dirs.cdi / "broken.json").write_text(
        json.dumps(
            {
                "cdiVersion": "0.6.0",
                "kind": "space.resource.example.com/namespace",
                "devices": [{"name": "bad name!", "containerEdits": {"env": ["A=1"]}}],
            }
        )
    )
    result = validate(str(harness.dirs.cdi))
    assert result.returncode == 1
    assert "invalid" in result.stderr.lower()

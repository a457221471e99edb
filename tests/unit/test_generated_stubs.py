"""The committed protobuf/gRPC stubs match the .proto files, and the wire names match upstream."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from space_dra.proto.dra.v1 import api_pb2 as v1
from space_dra.proto.dra.v1beta1 import api_pb2 as v1beta1
from space_dra.proto.dra_health.v1 import api_pb2 as health_v1
from space_dra.proto.dra_health.v1alpha1 import api_pb2 as health_v1alpha1
from space_dra.proto.pluginregistration import api_pb2 as reg
from tests.support.gotools import REPO


def test_committed_stubs_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "genproto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_and_message_names_match_the_kubelet() -> None:
    assert (
        v1.DESCRIPTOR.services_by_name["DRAPlugin"].full_name
        == "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
    )
    assert (
        v1beta1.DESCRIPTOR.services_by_name["DRAPlugin"].full_name
        == "k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin"
    )
    assert (
        reg.DESCRIPTOR.services_by_name["Registration"].full_name
        == "pluginregistration.Registration"
    )
    device = v1.Device.DESCRIPTOR
    assert {f.name: f.number for f in device.fields} == {
        "request_names": 1,
        "pool_name": 2,
        "device_name": 3,
        "cdi_device_ids": 4,
        "share_id": 5,
    }
    assert "share_id" not in {f.name for f in v1beta1.Device.DESCRIPTOR.fields}
    assert {f.name: f.number for f in v1.Claim.DESCRIPTOR.fields} == {
        "namespace": 1,
        "uid": 2,
        "name": 3,
    }
    assert {f.name: f.number for f in reg.PluginInfo.DESCRIPTOR.fields} == {
        "type": 1,
        "name": 2,
        "endpoint": 3,
        "supported_versions": 4,
    }


def test_wire_bytes_are_stable() -> None:
    # Field numbers and types decide the bytes; a drift here would break the kubelet.
    claim = v1.Claim(namespace="ns", uid="u", name="n")
    assert claim.SerializeToString() == b"\n\x02ns\x12\x01u\x1a\x01n"
    device = v1.Device(pool_name="p", device_name="d", cdi_device_ids=["x"], share_id="s")
    assert device.SerializeToString() == b'\x12\x01p\x1a\x01d"\x01x*\x01s'


def test_health_service_names_match_the_kubelet() -> None:
    # The names a 1.37 kubelet looks for in GetInfo's list, and dials.
    for api, package in ((health_v1, "v1"), (health_v1alpha1, "v1alpha1")):
        service = api.DESCRIPTOR.services_by_name["DRAResourceHealth"]
        assert service.full_name == f"{package}.DRAResourceHealth"
        assert [m.name for m in service.methods] == ["NodeWatchResources"]
        assert service.methods[0].server_streaming
        assert {f.name: f.number for f in api.DeviceHealth.DESCRIPTOR.fields} == {
            "device": 1,
            "health": 2,
            "last_updated_time": 3,
            "health_check_timeout_seconds": 4,
            "message": 5,
        }
        assert (api.UNKNOWN, api.HEALTHY, api.UNHEALTHY) == (0, 1, 2)


def test_both_health_versions_put_the_same_bytes_on_the_wire() -> None:
    def report(api: Any) -> bytes:
        return bytes(
            api.NodeWatchResourcesResponse(
                devices=[
                    api.DeviceHealth(
                        device=api.DeviceIdentifier(pool_name="p", device_name="d"),
                        health=api.UNHEALTHY,
                        last_updated_time=7,
                        health_check_timeout_seconds=120,
                        message="m",
                    )
                ]
            ).SerializeToString()
        )

    assert report(health_v1) == report(health_v1alpha1)

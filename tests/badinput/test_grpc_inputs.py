"""Malformed, huge and unknown gRPC requests: answered or refused, never a crash."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from space_dra.proto.dra.v1 import api_pb2 as v1
from tests.badinput.conftest import TALLY
from tests.protocol.conftest import V1_PREPARE, V1_UNPREPARE, Harness
from tests.protocol.test_plugin_protocol import add_ready_claim

pytestmark = pytest.mark.badinput

identity = (lambda b: b, lambda b: b)


async def raw_call(h: Harness, method: str, payload: bytes) -> tuple[grpc.StatusCode, bytes | None]:
    call = h.kubelet.channel.unary_unary(
        method, request_serializer=identity[0], response_deserializer=identity[1]
    )
    try:
        return grpc.StatusCode.OK, await call(payload, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), None


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.binary(max_size=512), method=st.sampled_from([V1_PREPARE, V1_UNPREPARE]))
async def test_random_bytes_never_break_the_server(
    harness: Harness, payload: bytes, method: str
) -> None:
    TALLY["random gRPC payloads tried"] += 1
    code, body = await raw_call(harness, method, payload)
    if code != grpc.StatusCode.OK:
        TALLY["random gRPC payloads refused by the codec"] += 1
    else:
        TALLY["random gRPC payloads parsed and answered"] += 1
        assert body is not None
    # Still serving, still nothing written.
    assert (await harness.kubelet.prepare()).claims == {}
    assert not harness.dirs.cdi.exists() or not any(harness.dirs.cdi.iterdir())


async def test_unknown_method_and_version_are_unimplemented(harness: Harness) -> None:
    for method in (
        "/k8s.io.kubelet.pkg.apis.dra.v2.DRAPlugin/NodePrepareResources",
        "/k8s.io.kubelet.pkg.apis.dra.v1alpha4.Node/NodePrepareResources",
        "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodeDestroyEverything",
    ):
        code, _ = await raw_call(harness, method, b"")
        assert code == grpc.StatusCode.UNIMPLEMENTED
        TALLY["unknown methods refused"] += 1


async def test_huge_batch_gets_an_answer_per_uid(harness: Harness) -> None:
    good = add_ready_claim(harness)
    claims = [("default", f"c{i}", f"{i:08x}-0000-4000-8000-000000000000") for i in range(2000)]
    claims.append(("default", "test-claim", good))
    response = await harness.kubelet.prepare(*claims)
    assert len(response.claims) == 2001
    assert response.claims[good].error == ""
    assert all(response.claims[uid].error for _, _, uid in claims[:-1])
    TALLY["claims in one huge request"] += 2001


async def test_oversized_strings_are_rejected_per_claim(harness: Harness) -> None:
    long_uid = "a" * 100_000
    request = v1.NodePrepareResourcesRequest(
        claims=[v1.Claim(namespace="n" * 10_000, name="x" * 10_000, uid=long_uid)]
    )
    response = await harness.kubelet.call(V1_PREPARE, request, v1.NodePrepareResourcesResponse)
    error = response.claims[long_uid].error
    assert "not a Kubernetes UID" in error
    assert len(error) < 1000, "errors do not echo huge inputs back"

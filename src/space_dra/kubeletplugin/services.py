"""The DRAPlugin gRPC services, v1 and v1beta1, over one :class:`Dispatcher`.

Both versions have the same messages (v1 adds ``share_id``), so both servicers only
translate: request claims in, one response entry per UID out, an error string where
the claim failed. Which version the kubelet uses depends on its release; serving both
costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from space_dra.kubeletplugin.api import Claim, PrepareResult, UnprepareResult
from space_dra.kubeletplugin.dispatch import Dispatcher
from space_dra.proto.dra.v1 import api_pb2 as v1
from space_dra.proto.dra.v1 import api_pb2_grpc as v1_grpc
from space_dra.proto.dra.v1beta1 import api_pb2 as v1beta1
from space_dra.proto.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc

# The full gRPC service names, for the standard health service.
SERVICE_NAMES = (
    v1.DESCRIPTOR.services_by_name["DRAPlugin"].full_name,
    v1beta1.DESCRIPTOR.services_by_name["DRAPlugin"].full_name,
)


def _claims(request: Any) -> list[Claim]:
    return [Claim(claim.namespace, claim.name, claim.uid) for claim in request.claims]


def _prepare_response(response: Any, results: Mapping[str, PrepareResult], share_ids: bool) -> Any:
    for uid, outcome in results.items():
        entry = response.claims[uid]
        if isinstance(outcome, BaseException):
            entry.error = str(outcome)
            continue
        for device in outcome:
            added = entry.devices.add(
                request_names=list(device.requests),
                pool_name=device.pool,
                device_name=device.device,
                cdi_device_ids=list(device.cdi_device_ids),
            )
            if share_ids and device.share_id:
                added.share_id = device.share_id
    return response


def _unprepare_response(response: Any, results: Mapping[str, UnprepareResult]) -> Any:
    for uid, outcome in results.items():
        entry = response.claims[uid]
        if outcome is not None:
            entry.error = str(outcome)
    return response


class DRAPluginV1(v1_grpc.DRAPluginServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def NodePrepareResources(  # noqa: N802 - gRPC method name
        self, request: v1.NodePrepareResourcesRequest, context: Any
    ) -> v1.NodePrepareResourcesResponse:
        results = await self.dispatcher.prepare(_claims(request))
        response: v1.NodePrepareResourcesResponse = _prepare_response(
            v1.NodePrepareResourcesResponse(), results, share_ids=True
        )
        return response

    async def NodeUnprepareResources(  # noqa: N802
        self, request: v1.NodeUnprepareResourcesRequest, context: Any
    ) -> v1.NodeUnprepareResourcesResponse:
        results = await self.dispatcher.unprepare(_claims(request))
        response: v1.NodeUnprepareResourcesResponse = _unprepare_response(
            v1.NodeUnprepareResourcesResponse(), results
        )
        return response


class DRAPluginV1Beta1(v1beta1_grpc.DRAPluginServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def NodePrepareResources(  # noqa: N802
        self, request: v1beta1.NodePrepareResourcesRequest, context: Any
    ) -> v1beta1.NodePrepareResourcesResponse:
        results = await self.dispatcher.prepare(_claims(request))
        response: v1beta1.NodePrepareResourcesResponse = _prepare_response(
            v1beta1.NodePrepareResourcesResponse(), results, share_ids=False
        )
        return response

    async def NodeUnprepareResources(  # noqa: N802
        self, request: v1beta1.NodeUnprepareResourcesRequest, context: Any
    ) -> v1beta1.NodeUnprepareResourcesResponse:
        results = await self.dispatcher.unprepare(_claims(request))
        response: v1beta1.NodeUnprepareResourcesResponse = _unprepare_response(
            v1beta1.NodeUnprepareResourcesResponse(), results
        )
        return response

"""The DRAPlugin gRPC services, v1 and v1beta1, over one :class:`Dispatcher`.

Both versions have the same messages (v1 adds ``share_id``), so both servicers only
translate: request claims in, one response entry per UID out, an error string where
the claim failed. Which version the kubelet uses depends on its release; serving both
costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
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


class _Translating:
    """Both RPCs for one protocol version: ``api`` is that version's generated module."""

    def __init__(self, dispatcher: Dispatcher, api: ModuleType, share_ids: bool) -> None:
        self.dispatcher = dispatcher
        self.api = api
        self.share_ids = share_ids

    async def NodePrepareResources(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC
        results = await self.dispatcher.prepare(_claims(request))
        return _prepare_response(self.api.NodePrepareResourcesResponse(), results, self.share_ids)

    async def NodeUnprepareResources(self, request: Any, context: Any) -> Any:  # noqa: N802
        results = await self.dispatcher.unprepare(_claims(request))
        return _unprepare_response(self.api.NodeUnprepareResourcesResponse(), results)


class DRAPluginV1(_Translating, v1_grpc.DRAPluginServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(dispatcher, v1, share_ids=True)


class DRAPluginV1Beta1(_Translating, v1beta1_grpc.DRAPluginServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        # v1beta1 has no share_id field.
        super().__init__(dispatcher, v1beta1, share_ids=False)

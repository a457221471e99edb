"""The gRPC services the kubelet calls: DRAPlugin v1 and v1beta1, and Registration.

Both DRAPlugin versions have the same messages (v1 adds ``share_id``), so both
servicers translate through :func:`_prepare_response` / :func:`_unprepare_response`
into the same driver calls. The response map always has an entry for every UID in
the request: the kubelet treats a missing entry as "call again".
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from space_dra.logs import log_event
from space_dra.metrics import REGISTERED
from space_dra.plugin.driver import ClaimError, ClaimRef, NamespaceDriver, clip
from space_dra.proto.dra.v1 import api_pb2 as v1
from space_dra.proto.dra.v1 import api_pb2_grpc as v1_grpc
from space_dra.proto.dra.v1beta1 import api_pb2 as v1beta1
from space_dra.proto.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc
from space_dra.proto.dra_health.v1alpha1 import api_pb2 as health_v1alpha1
from space_dra.proto.dra_health.v1alpha1 import api_pb2_grpc as health_v1alpha1_grpc
from space_dra.proto.pluginregistration import api_pb2 as reg
from space_dra.proto.pluginregistration import api_pb2_grpc as reg_grpc

log = logging.getLogger(__name__)

DRA_PLUGIN_TYPE = "DRAPlugin"
# Order matters: the kubelet takes the first DRAPlugin entry it supports.
SUPPORTED_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin", "v1alpha1.DRAResourceHealth")
# The kubelet marks a device Unknown when no update arrived for this long; the
# stream repeats the full list at half that interval.
HEALTH_TIMEOUT_SECONDS = 120
# The service names the health service reports on; "" is the whole server.
HEALTH_SERVICES = (
    "",
    v1.DESCRIPTOR.services_by_name["DRAPlugin"].full_name,
    v1beta1.DESCRIPTOR.services_by_name["DRAPlugin"].full_name,
)


def _unique_refs(claims: Iterable[Any]) -> tuple[list[ClaimRef], dict[str, ClaimError]]:
    """Collapse repeated UIDs; a UID named twice with different claims is an error."""
    refs: dict[str, ClaimRef] = {}
    conflicts: dict[str, ClaimError] = {}
    for claim in claims:
        ref = ClaimRef(claim.namespace, claim.name, claim.uid)
        seen = refs.get(ref.uid)
        if seen is not None and seen != ref:
            conflicts[ref.uid] = ClaimError(
                f"claim {clip(ref.uid, 64)}: the request names this UID for both "
                f"{seen.display} "
                f"and {ref.display}"
            )
        refs.setdefault(ref.uid, ref)
    return [ref for uid, ref in refs.items() if uid not in conflicts], conflicts


async def _prepare_response(
    driver: NamespaceDriver, request: Any, response: Any, share_ids: bool
) -> Any:
    refs, conflicts = _unique_refs(request.claims)
    results: dict[str, Any] = {**await driver.prepare(refs), **conflicts}
    for uid, outcome in results.items():
        entry = response.claims[uid]
        if isinstance(outcome, ClaimError):
            entry.error = str(outcome)
            continue
        for device in outcome:
            added = entry.devices.add(
                request_names=[device.request],
                pool_name=device.pool,
                device_name=device.device,
                cdi_device_ids=[driver.cdi_device_id(device)],
            )
            if share_ids and device.share_id:
                added.share_id = device.share_id
    return response


async def _unprepare_response(driver: NamespaceDriver, request: Any, response: Any) -> Any:
    refs, conflicts = _unique_refs(request.claims)
    results: dict[str, ClaimError | None] = {**await driver.unprepare(refs), **conflicts}
    for uid, outcome in results.items():
        entry = response.claims[uid]
        if outcome is not None:
            entry.error = str(outcome)
    return response


class DRAPluginV1(v1_grpc.DRAPluginServicer):
    def __init__(self, driver: NamespaceDriver) -> None:
        self.driver = driver

    async def NodePrepareResources(  # noqa: N802 - gRPC method name
        self, request: v1.NodePrepareResourcesRequest, context: Any
    ) -> v1.NodePrepareResourcesResponse:
        response: v1.NodePrepareResourcesResponse = await _prepare_response(
            self.driver, request, v1.NodePrepareResourcesResponse(), share_ids=True
        )
        return response

    async def NodeUnprepareResources(  # noqa: N802
        self, request: v1.NodeUnprepareResourcesRequest, context: Any
    ) -> v1.NodeUnprepareResourcesResponse:
        response: v1.NodeUnprepareResourcesResponse = await _unprepare_response(
            self.driver, request, v1.NodeUnprepareResourcesResponse()
        )
        return response


class DRAPluginV1Beta1(v1beta1_grpc.DRAPluginServicer):
    def __init__(self, driver: NamespaceDriver) -> None:
        self.driver = driver

    async def NodePrepareResources(  # noqa: N802
        self, request: v1beta1.NodePrepareResourcesRequest, context: Any
    ) -> v1beta1.NodePrepareResourcesResponse:
        response: v1beta1.NodePrepareResourcesResponse = await _prepare_response(
            self.driver, request, v1beta1.NodePrepareResourcesResponse(), share_ids=False
        )
        return response

    async def NodeUnprepareResources(  # noqa: N802
        self, request: v1beta1.NodeUnprepareResourcesRequest, context: Any
    ) -> v1beta1.NodeUnprepareResourcesResponse:
        response: v1beta1.NodeUnprepareResourcesResponse = await _unprepare_response(
            self.driver, request, v1beta1.NodeUnprepareResourcesResponse()
        )
        return response


class DeviceHealthService(health_v1alpha1_grpc.DRAResourceHealthServicer):
    """Streams the health of prepared devices to the kubelet (pod allocatedResourcesStatus)."""

    def __init__(self, driver: NamespaceDriver) -> None:
        self.driver = driver

    def snapshot(self) -> health_v1alpha1.NodeWatchResourcesResponse:
        now = int(time.time())
        return health_v1alpha1.NodeWatchResourcesResponse(
            devices=[
                health_v1alpha1.DeviceHealth(
                    device=health_v1alpha1.DeviceIdentifier(
                        pool_name=item.pool, device_name=item.device
                    ),
                    health=health_v1alpha1.HEALTHY if item.healthy else health_v1alpha1.UNHEALTHY,
                    last_updated_time=now,
                    health_check_timeout_seconds=HEALTH_TIMEOUT_SECONDS,
                    message=item.message,
                )
                for item in self.driver.health()
            ]
        )

    async def NodeWatchResources(  # noqa: N802
        self, request: health_v1alpha1.NodeWatchResourcesRequest, context: Any
    ) -> AsyncIterator[health_v1alpha1.NodeWatchResourcesResponse]:
        while True:
            yield self.snapshot()
            await self.driver.changed.wait(HEALTH_TIMEOUT_SECONDS / 2)


class Registration(reg_grpc.RegistrationServicer):
    """Answers the kubelet's pluginwatcher and records its verdict."""

    def __init__(self, driver_name: str, endpoint: str, health: HealthServicer) -> None:
        self.driver_name = driver_name
        self.endpoint = endpoint
        self.health = health
        self.registered: bool | None = None
        self.error = ""

    async def GetInfo(self, request: reg.InfoRequest, context: Any) -> reg.PluginInfo:  # noqa: N802
        return reg.PluginInfo(
            type=DRA_PLUGIN_TYPE,
            name=self.driver_name,
            endpoint=self.endpoint,
            supported_versions=list(SUPPORTED_VERSIONS),
        )

    async def NotifyRegistrationStatus(  # noqa: N802
        self, request: reg.RegistrationStatus, context: Any
    ) -> reg.RegistrationStatusResponse:
        self.registered = request.plugin_registered
        self.error = request.error
        REGISTERED.set(1 if request.plugin_registered else 0)
        status = health_pb2.HealthCheckResponse.SERVING
        if request.plugin_registered:
            log_event(log, logging.INFO, "kubelet_registration_accepted", driver=self.driver_name)
        else:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
            log_event(
                log,
                logging.ERROR,
                "kubelet_registration_rejected",
                driver=self.driver_name,
                error=request.error,
            )
        for service in HEALTH_SERVICES:
            await self.health.set(service, status)
        return reg.RegistrationStatusResponse()

    def problem(self) -> str | None:
        if self.registered is False:
            return f"the kubelet rejected the registration: {self.error}"
        return None


def add_dra_services(
    server: grpc.aio.Server, driver: NamespaceDriver, health: HealthServicer
) -> None:
    from grpc_health.v1 import health_pb2_grpc

    v1_grpc.add_DRAPluginServicer_to_server(DRAPluginV1(driver), server)
    v1beta1_grpc.add_DRAPluginServicer_to_server(DRAPluginV1Beta1(driver), server)
    health_v1alpha1_grpc.add_DRAResourceHealthServicer_to_server(
        DeviceHealthService(driver), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health, server)

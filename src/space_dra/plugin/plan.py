"""The plan for one claim: which namespaces its devices get and how they show up.

Reads the ResourceClaim, checks it is still the claim the kubelet means (same UID)
and allocated, waits (bounded) until the controller has recorded a ready namespace
for each of our devices (refusing one it reports unhealthy: expired or deleted),
resolves each device's NamespaceConfig and computes its layout. Nothing here writes:
everything that can be rejected is rejected before the first file exists, so a bad
claim leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

from space_dra.config import ConfigError, Settings, resolve
from space_dra.contract import (
    CONDITION_HEALTHY,
    ClaimView,
    DeviceRef,
    NamespaceRecord,
    RecordError,
)
from space_dra.kube import KubeAPI, KubeError, NotFound
from space_dra.kubeletplugin import Claim, ClaimError
from space_dra.naming import DeviceLayout, NamingError, device_layout
from space_dra.plugin.options import DriverOptions


@dataclass(frozen=True)
class PlannedDevice:
    ref: DeviceRef
    layout: DeviceLayout
    # The controller's record, with the server URL pods use from this node.
    record: NamespaceRecord
    token_expiration_seconds: int


class Planner:
    def __init__(self, kube: KubeAPI, options: DriverOptions, clock: Callable[[], float]) -> None:
        self.kube = kube
        self.options = options
        self.clock = clock

    async def plan(
        self, claim: Claim, deadline: float, read_ahead: ClaimView | None = None
    ) -> list[PlannedDevice]:
        """Read the claim, check it is ours, and wait (until ``deadline`` on the plan's
        clock) for the controller's records. ``read_ahead``: the claim as read a moment ago
        (plugin.ahead), used instead of a read when it already has every record."""
        if read_ahead is not None and read_ahead.uid == claim.uid and read_ahead.allocated:
            try:
                planned, waiting_for = self._plan_devices(claim, read_ahead)
            except ClaimError:
                waiting_for = ["(read again)"]  # the fresh read decides
            if not waiting_for:
                return planned
        delay = 0.05
        while True:
            view = await self._fetch(claim)
            planned, waiting_for = self._plan_devices(claim, view)
            if not waiting_for:
                return planned
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise ClaimError(
                    f"claim {claim.uid}: the controller has not marked namespace(s) for "
                    f"{', '.join(waiting_for)} ready after {self.options.wait_timeout:g}s; "
                    "the kubelet will retry (check the space-dra controller's logs and the "
                    "claim's status.devices)"
                )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)

    async def _fetch(self, claim: Claim) -> ClaimView:
        try:
            found = await self.kube.get_claim(claim.namespace, claim.name)
        except NotFound:
            raise ClaimError(
                f"claim {claim.uid}: ResourceClaim {claim.display} not found"
            ) from None
        except KubeError as exc:
            raise ClaimError(f"claim {claim.uid}: {exc}") from None
        view = ClaimView(found, self.options.driver_name)
        if view.uid != claim.uid:
            raise ClaimError(
                f"claim {claim.uid}: ResourceClaim {claim.display} now has UID "
                f"{view.uid or '(none)'}; the claim was replaced"
            )
        if not view.allocated:
            raise ClaimError(f"claim {claim.uid}: ResourceClaim {claim.display} is not allocated")
        return view

    def settings(self, view: ClaimView, device: DeviceRef) -> Settings:
        """The device's settings as the prepare uses them; raises ConfigError."""
        return resolve(
            view.opaque_configs(device.request),
            device.admin_access,
            Settings(token_expiration_seconds=self.options.default_token_seconds),
            installation=self.options.policy,
        ).settings

    def _plan_devices(self, claim: Claim, view: ClaimView) -> tuple[list[PlannedDevice], list[str]]:
        """Plans for the devices the controller has made ready, and labels of the others."""
        devices = view.our_devices()
        if not devices:
            raise ClaimError(
                f"claim {claim.uid}: no device of driver {self.options.driver_name} is "
                f"allocated to ResourceClaim {claim.display}"
            )
        planned: list[PlannedDevice] = []
        waiting_for: list[str] = []
        for index, device in enumerate(devices):
            label = f"{device.request}={device.pool}/{device.device}"
            try:
                settings = self.settings(view, device)
                layout = device_layout(
                    claim.uid,
                    view.display_name,
                    index,
                    len(devices),
                    settings,
                    extended_resource=view.extended_resource,
                )
                state = view.device_state(device)
            except (ConfigError, NamingError, RecordError) as exc:
                raise ClaimError(f"claim {claim.uid}: device {label}: {exc}") from None
            if state.failure is not None:
                raise ClaimError(
                    f"claim {claim.uid}: device {label}: "
                    f"namespace provisioning failed: {state.failure}"
                )
            if state.record is None:
                waiting_for.append(label)
                continue
            record = state.record
            health = view.device_conditions(device).get(CONDITION_HEALTHY)
            if health is not None and health.status == "False":
                # Expired or deleted: the controller will not make it usable again.
                raise ClaimError(
                    f"claim {claim.uid}: device {label}: namespace {record.namespace}: "
                    f"{health.reason}: {health.message}"
                )
            if self.options.server_override:
                record = replace(record, server=self.options.server_override)
            planned.append(PlannedDevice(device, layout, record, settings.token_expiration_seconds))
        return planned, waiting_for

"""The namespace driver's CDI content: what containers get for each prepared namespace.

Specs are of kind ``<driver>/namespace``, one CDI device per prepared device. A device
adds the env vars naming the namespace, the server and the kubeconfig path, and a
read-only bind mount of its artifact directory; it never carries the token. Its
record is the device's checkpoint entry plus the claim's name and namespace, with the
token times left out so the spec only changes when what containers see changes; from
these records a lost checkpoint is rebuilt (:func:`claims_from_records`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from space_dra.contract import CDI_CLASS
from space_dra.kubeletplugin import CDIDevice, CDISpecs, Mount
from space_dra.logs import log_event
from space_dra.plugin.checkpoint import PreparedClaim, PreparedDevice

log = logging.getLogger(__name__)


def namespace_specs(cdi_dir: Path, driver_name: str) -> CDISpecs:
    return CDISpecs(cdi_dir, driver_name, CDI_CLASS)


def cdi_devices(
    driver_name: str, claim: PreparedClaim, artifact_path: Callable[[str], Path]
) -> list[CDIDevice]:
    """The CDI devices of one prepared claim; ``artifact_path`` maps a directory name
    to where it is on the host."""
    return [
        CDIDevice(
            name=device.layout.cdi_device_name,
            env=device.layout.env(driver_name, device.record.namespace, device.record.server),
            mounts=[
                Mount(
                    host_path=str(artifact_path(device.layout.artifact_dir_name)),
                    container_path=device.layout.mount_path,
                )
            ],
            record={
                **device.to_json(),
                "token_issued_at": 0.0,
                "token_expires_at": 0.0,
                "claim_namespace": claim.namespace,
                "claim_name": claim.name,
            },
        )
        for device in claim.devices
    ]


def claims_from_records(
    recorded: Mapping[str, list[Mapping[str, object]]],
) -> dict[str, PreparedClaim]:
    """Prepared claims rebuilt from the records in CDI specs; unusable ones are skipped.

    Their tokens count as due, so the next refresh mints fresh ones.
    """
    rebuilt = {}
    for uid, records in recorded.items():
        try:
            devices = tuple(PreparedDevice.from_json(r) for r in records)
            first = records[0]
            rebuilt[uid] = PreparedClaim(
                uid, str(first["claim_namespace"]), str(first["claim_name"]), devices
            )
        except (KeyError, TypeError, IndexError):
            log_event(log, logging.WARNING, "cdi_spec_unusable_for_recovery", claim_uid=uid)
    return rebuilt

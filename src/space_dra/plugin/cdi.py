"""CDI spec files: how the container runtime learns what to inject.

One spec file per claim, ``<cdi-dir>/<driver>-<claim-uid>.json``, kind
``<driver>/namespace``, one device per prepared namespace. A device adds the env
vars and a read-only bind mount of its artifact directory; it never carries the
token. Each device also records, as annotations, what the checkpoint knows about
it, so a lost checkpoint can be rebuilt from the specs still on disk.

Specs are written to a temporary name and renamed, because containerd watches the
directory and must never parse half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from space_dra.contract import CDI_CLASS

# 0.5.0 allows device names that start with a digit (claim UIDs do);
# 0.6.0 adds the annotations we use for recovery.
CDI_VERSION = "0.6.0"
SPEC_MODE = 0o644
RECORD_ANNOTATION = "record"


class CDIError(OSError):
    pass


@dataclass(frozen=True)
class CDIDevice:
    name: str
    env: Mapping[str, str]
    host_path: str
    container_path: str
    record: Mapping[str, object]


class CDISpecs:
    def __init__(self, directory: Path, driver: str) -> None:
        self.directory = directory
        self.driver = driver
        self.kind = f"{driver}/{CDI_CLASS}"

    def qualified_name(self, device_name: str) -> str:
        return f"{self.kind}={device_name}"

    def spec_path(self, claim_uid: str) -> Path:
        path = self.directory / f"{self.driver}-{claim_uid}.json"
        if path.parent != self.directory or "/" in claim_uid:
            raise CDIError(f"refusing CDI spec path for claim UID {claim_uid!r}")
        return path

    def render(self, claim_uid: str, devices: Iterable[CDIDevice]) -> dict[str, object]:
        return {
            "cdiVersion": CDI_VERSION,
            "kind": self.kind,
            "annotations": {f"{self.driver}/claim-uid": claim_uid},
            "devices": [
                {
                    "name": device.name,
                    "annotations": {
                        f"{self.driver}/{RECORD_ANNOTATION}": json.dumps(
                            device.record, sort_keys=True
                        )
                    },
                    "containerEdits": {
                        "env": [f"{key}={value}" for key, value in device.env.items()],
                        "mounts": [
                            {
                                "hostPath": device.host_path,
                                "containerPath": device.container_path,
                                "options": ["ro", "nosuid", "nodev", "noexec", "bind"],
                            }
                        ],
                    },
                }
                for device in devices
            ],
        }

    def write(self, claim_uid: str, devices: Iterable[CDIDevice]) -> Path:
        path = self.spec_path(claim_uid)
        self.directory.mkdir(parents=True, exist_ok=True)
        content = json.dumps(self.render(claim_uid, devices), indent=2).encode()
        staging = path.with_name(f".{path.name}.tmp")
        # No fsync: the CDI directory is tmpfs and specs are re-created from the
        # checkpoint after a reboot.
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SPEC_MODE)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        staging.chmod(SPEC_MODE)
        staging.rename(path)
        return path

    def exists(self, claim_uid: str) -> bool:
        return self.spec_path(claim_uid).is_file()

    def remove(self, claim_uid: str) -> None:
        self.spec_path(claim_uid).unlink(missing_ok=True)
        self.spec_path(claim_uid).with_name(f".{self.spec_path(claim_uid).name}.tmp").unlink(
            missing_ok=True
        )

    def recorded_devices(self) -> dict[str, list[Mapping[str, object]]]:
        """Claim UID -> the device records found in our spec files (for recovery)."""
        found: dict[str, list[Mapping[str, object]]] = {}
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob(f"{self.driver}-*.json")):
            try:
                spec = json.loads(path.read_bytes())
                claim_uid = spec["annotations"][f"{self.driver}/claim-uid"]
                records = [
                    json.loads(device["annotations"][f"{self.driver}/{RECORD_ANNOTATION}"])
                    for device in spec["devices"]
                ]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found[str(claim_uid)] = records
        return found

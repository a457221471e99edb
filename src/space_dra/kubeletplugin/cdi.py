"""CDI spec files: how the container runtime learns what to inject into containers.

One spec file per claim, ``<cdi-dir>/<driver>-<claim-uid>.json``, of kind
``<driver>/<device-class>``; one CDI device per prepared device, adding env vars and
bind mounts. A device may carry a record (any JSON object) as an annotation: the
driver's note to itself, so state lost with the checkpoint can be rebuilt from the
specs still on disk (:meth:`CDISpecs.recorded_devices`). Never put secrets in a spec:
the runtime logs and exposes them freely.

Specs are written to a temporary name and renamed, because containerd watches the
directory and must never parse half a file. They are not fsynced: the CDI directory is
tmpfs (``/var/run/cdi``), and a driver re-creates its specs from its checkpoint after
a reboot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from space_dra.kubeletplugin.files import replace_file, staging_path

# 0.5.0 allows device names that start with a digit (claim UIDs do);
# 0.6.0 adds the annotations records travel in.
CDI_VERSION = "0.6.0"
SPEC_MODE = 0o644
RECORD_ANNOTATION = "record"
READ_ONLY_BIND = ("ro", "nosuid", "nodev", "noexec", "bind")


class CDIError(OSError):
    pass


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    options: tuple[str, ...] = READ_ONLY_BIND


@dataclass(frozen=True)
class CDIDevice:
    name: str
    env: Mapping[str, str]
    mounts: Sequence[Mount] = ()
    record: Mapping[str, object] | None = None


class CDISpecs:
    """The spec files of one driver in one CDI directory."""

    def __init__(self, directory: Path, driver: str, device_class: str = "device") -> None:
        self.directory = directory
        self.driver = driver
        self.kind = f"{driver}/{device_class}"

    def qualified_name(self, device_name: str) -> str:
        """The CDI device ID the kubelet passes to the runtime."""
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
            "devices": [self._device(device) for device in devices],
        }

    def _device(self, device: CDIDevice) -> dict[str, object]:
        rendered: dict[str, object] = {"name": device.name}
        if device.record is not None:
            rendered["annotations"] = {
                f"{self.driver}/{RECORD_ANNOTATION}": json.dumps(device.record, sort_keys=True)
            }
        rendered["containerEdits"] = {
            "env": [f"{key}={value}" for key, value in device.env.items()],
            "mounts": [
                {
                    "hostPath": mount.host_path,
                    "containerPath": mount.container_path,
                    "options": list(mount.options),
                }
                for mount in device.mounts
            ],
        }
        return rendered

    def write(self, claim_uid: str, devices: Iterable[CDIDevice]) -> Path:
        """Replace the claim's spec atomically."""
        path = self.spec_path(claim_uid)
        self.directory.mkdir(parents=True, exist_ok=True)
        content = json.dumps(self.render(claim_uid, devices), indent=2).encode()
        replace_file(path, content, SPEC_MODE)
        return path

    def exists(self, claim_uid: str) -> bool:
        return self.spec_path(claim_uid).is_file()

    def remove(self, claim_uid: str) -> None:
        """Remove the claim's spec (and a staging file a crash left); absent is fine."""
        path = self.spec_path(claim_uid)
        path.unlink(missing_ok=True)
        staging_path(path).unlink(missing_ok=True)

    def recorded_devices(self) -> dict[str, list[Mapping[str, object]]]:
        """Claim UID -> the device records found in this driver's spec files."""
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

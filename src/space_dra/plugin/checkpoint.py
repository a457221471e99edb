"""What the namespace driver remembers of each claim it prepared: its checkpoint entry.

An entry keeps only what cannot be recomputed without the API server: the claim's
devices, each with its layout (where its files and env vars go), the namespace record
its token comes from, and when that token is due. CDI specs and artifacts can be
re-created from it; tokens are re-minted. The file itself (versioned, atomic, shared
between two instances during a rolling update) is the layer's
:class:`~space_dra.kubeletplugin.Checkpoint`.

On disk a device is one flat JSON object, the format of every version so far, so a
checkpoint written by an earlier plugin loads unchanged
(``tests/protocol/test_state_compat.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from space_dra.contract import NamespaceRecord
from space_dra.kubeletplugin import Checkpoint, Codec, Recovery
from space_dra.naming import DeviceLayout

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class PreparedDevice:
    request: str
    pool: str
    device: str
    share_id: str | None
    layout: DeviceLayout
    # The controller's record, with the server URL pods use from this node.
    record: NamespaceRecord
    token_expiration_seconds: int
    # Unix seconds; refresh is due at issued_at + a fraction of the lifetime.
    token_issued_at: float = 0.0
    token_expires_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "pool": self.pool,
            "device": self.device,
            "share_id": self.share_id,
            "cdi_device_name": self.layout.cdi_device_name,
            "artifact_dir_name": self.layout.artifact_dir_name,
            "env_prefix": self.layout.env_prefix,
            "mount_path": self.layout.mount_path,
            "namespace": self.record.namespace,
            "service_account": self.record.service_account,
            "server": self.record.server,
            "token_expiration_seconds": self.token_expiration_seconds,
            "token_issued_at": self.token_issued_at,
            "token_expires_at": self.token_expires_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreparedDevice:
        return cls(
            request=data["request"],
            pool=data["pool"],
            device=data["device"],
            share_id=data["share_id"],
            layout=DeviceLayout(
                cdi_device_name=data["cdi_device_name"],
                artifact_dir_name=data["artifact_dir_name"],
                env_prefix=data["env_prefix"],
                mount_path=data["mount_path"],
            ),
            record=NamespaceRecord(
                namespace=data["namespace"],
                service_account=data["service_account"],
                server=data["server"],
            ),
            token_expiration_seconds=data["token_expiration_seconds"],
            token_issued_at=data.get("token_issued_at", 0.0),
            token_expires_at=data.get("token_expires_at", 0.0),
        )


@dataclass(frozen=True)
class PreparedClaim:
    uid: str
    namespace: str
    name: str
    devices: tuple[PreparedDevice, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "devices": [device.to_json() for device in self.devices],
        }

    @classmethod
    def from_json(cls, uid: str, data: Mapping[str, Any]) -> PreparedClaim:
        return cls(
            uid=uid,
            namespace=str(data["namespace"]),
            name=str(data["name"]),
            devices=tuple(PreparedDevice.from_json(d) for d in data["devices"]),
        )


CLAIM_CODEC = Codec(encode=PreparedClaim.to_json, decode=PreparedClaim.from_json)


def open_checkpoint(
    path: Path, on_unreadable: Recovery[PreparedClaim] | None = None
) -> Checkpoint[PreparedClaim]:
    return Checkpoint(path, CLAIM_CODEC, CHECKPOINT_VERSION, on_unreadable)

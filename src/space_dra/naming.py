"""Where a prepared device shows up: CDI names, artifact directory, env names, mount path.

A claim usually has one device of ours; it then gets ``<P>_*`` env vars and a
mount at ``/etc/<claim-name>``, where ``<P>`` is the claim's name upper-cased with
other characters replaced by ``_`` (``test-claim`` -> ``TEST_CLAIM``); for a claim
made from a template, the name is the pod's ``resourceClaims[].name``, not the
generated one. A claim with several of our devices (count > 1)
numbers them: ``<P>_0_*`` and ``/etc/<claim-name>-0``, and so on. Everything a
request names is validated here before anything touches the disk, so no input can
make the plugin write outside its directories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from space_dra.config import ConfigError, Settings, validate_mount_path
from space_dra.kubeletplugin import uid_problem

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_DRIVER_NAME = "DRA_RESOURCE_DRIVER_NAME"


class NamingError(ValueError):
    pass


def check_uid(uid: str) -> str:
    """``uid`` itself when it is a Kubernetes UID (the layer already refuses others)."""
    problem = uid_problem(uid)
    if problem is not None:
        raise NamingError(problem)
    return uid


def env_prefix_from_name(claim_name: str) -> str:
    prefix = re.sub(r"[^A-Za-z0-9_]", "_", claim_name).upper()
    if not _ENV_NAME.match(prefix):
        raise NamingError(
            f"claim name {claim_name[:64]!r} gives env prefix {prefix[:64]!r}, "
            "which is not a valid "
            "environment variable name; set envPrefix in the claim's NamespaceConfig"
        )
    return prefix


@dataclass(frozen=True)
class DeviceLayout:
    """Names for one prepared device: computed once at prepare, then kept whole (the
    checkpoint stores it) so a refresh or a restart never recomputes it differently."""

    cdi_device_name: str
    artifact_dir_name: str
    env_prefix: str
    mount_path: str

    def env(self, driver: str, namespace: str, server: str) -> dict[str, str]:
        return {
            ENV_DRIVER_NAME: driver,
            f"{self.env_prefix}_CLUSTER": server,
            f"{self.env_prefix}_NAMESPACE": namespace,
            f"{self.env_prefix}_KUBECONFIG": f"{self.mount_path}/kubeconfig",
        }


def device_layout(
    claim_uid: str, claim_display_name: str, index: int, count: int, settings: Settings
) -> DeviceLayout:
    check_uid(claim_uid)
    prefix = settings.env_prefix or env_prefix_from_name(claim_display_name)
    mount_path = settings.mount_path or f"/etc/{claim_display_name}"
    suffix = "" if count == 1 else f"-{index}"
    if count > 1:
        prefix = f"{prefix}_{index}"
    try:
        mount_path = validate_mount_path("mountPath", mount_path + suffix)
    except ConfigError as exc:
        raise NamingError(exc.message) from None
    return DeviceLayout(
        cdi_device_name=claim_uid + suffix,
        artifact_dir_name=claim_uid + suffix,
        env_prefix=prefix,
        mount_path=mount_path,
    )


def owned_artifact_names(claim_uid: str, names: list[str]) -> list[str]:
    """Which directory entries belong to a claim, for cleanup without a checkpoint."""
    check_uid(claim_uid)
    pattern = re.compile(rf"^{re.escape(claim_uid)}(-\d+)?$")
    return [name for name in names if pattern.match(name)]

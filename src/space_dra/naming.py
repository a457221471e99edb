"""Where a prepared device shows up: CDI names, artifact directory, env names, mount path.

A claim usually has one device of ours; it then gets ``<P>_*`` env vars and a
mount at ``/etc/<claim-name>``, where ``<P>`` is the claim's name upper-cased with
other characters replaced by ``_`` (``test-claim`` -> ``TEST_CLAIM``); for a claim
made from a template, the name is the pod's ``resourceClaims[].name``, not the
generated one. A pod that asks for the driver's extended resource in its containers'
``resources.limits`` (no claim of its own) gets a claim the scheduler generates and names
``<pod>-extended-resources-<random>``, a name the user cannot know in advance: its
devices get fixed names instead, ``SPACE_*`` and ``/etc/space``. A claim with several of
our devices (count > 1) numbers them: ``<P>_0_*`` and ``/etc/<claim-name>-0``, and so on,
in allocation order (for a generated claim, requests are ordered by name,
``container-<c>-request-<r>``), so no two devices of one claim share a name whichever
containers see them. Everything a request names is validated here before anything
touches the disk, so no input can make the plugin write outside its directories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from space_dra.config import ConfigError, Settings, validate_mount_path
from space_dra.kubeletplugin import uid_problem

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_DRIVER_NAME = "DRA_RESOURCE_DRIVER_NAME"
# Where the devices of a claim generated for a pod's extended resource show up.
EXTENDED_RESOURCE_ENV_PREFIX = "SPACE"
EXTENDED_RESOURCE_MOUNT_PATH = "/etc/space"


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
    claim_uid: str,
    claim_display_name: str,
    index: int,
    count: int,
    settings: Settings,
    *,
    extended_resource: bool = False,
) -> DeviceLayout:
    """Names for device ``index`` of ``count``; ``extended_resource``: the claim was
    generated for a pod's extended resource (its name is not the user's). A config's
    ``envPrefix`` and ``mountPath`` win either way."""
    check_uid(claim_uid)
    if extended_resource:
        default_prefix, default_mount = EXTENDED_RESOURCE_ENV_PREFIX, EXTENDED_RESOURCE_MOUNT_PATH
    else:
        default_prefix, default_mount = None, f"/etc/{claim_display_name}"
    prefix = settings.env_prefix or default_prefix or env_prefix_from_name(claim_display_name)
    mount_path = settings.mount_path or default_mount
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

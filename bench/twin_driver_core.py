"""The twin driver: our plugin's node-side work without namespaces, on the kubelet layer.

It exists for two reasons. It is the Python side of the comparison with the Go driver
in ``bench/gobaseline`` (built on ``k8s.io/dynamic-resource-allocation/kubeletplugin``):
both do the work below, so the difference is the language and the helper, not the
job. And it shows what the layer leaves to a driver: this module is the whole driver,
``bench/twin_driver.py`` runs it.

Per claim, in ``NodePrepareResources`` (each claim alone, under its lock):

1. GET the ResourceClaim; refuse it when it is missing, not allocated, or replaced
   (another UID), as the Go helper does before calling its driver.
2. For each device of this driver in the allocation (``i`` of ``n``), the same layout
   as the namespace driver (:func:`space_dra.naming.device_layout`): a directory
   ``<artifact-dir>/<uid>`` (``<uid>-<i>`` when ``n`` > 1) holding four small files,
   ``kubeconfig``, ``token`` (64 random hex characters), ``ca.crt`` and ``namespace``
   (the claim's namespace), published like a projected volume: a generation directory
   and an atomically renamed ``..data`` symlink (the layer's ``ArtifactStore``).
3. One CDI spec ``<cdi-dir>/<driver>-<uid>.json`` of kind ``<driver>/claim``; each
   device sets ``DRA_RESOURCE_DRIVER_NAME``, ``<P>_CLUSTER`` (``--server``),
   ``<P>_NAMESPACE`` and ``<P>_KUBECONFIG``, where ``<P>`` comes from the claim's name
   (``test-claim`` -> ``TEST_CLAIM``, ``TEST_CLAIM_<i>`` with several devices), and
   bind-mounts its directory read-only at ``/etc/<claim-name>`` (``-<i>``).
4. A checkpoint entry (one write shared by concurrent claims), then the CDI device IDs.

A claim already in the checkpoint is answered from it, without the API server,
re-creating its spec or files if they went missing. ``NodeUnprepareResources`` removes
the spec, the directories and the entry; an unknown claim is fine. There is no token to
mint, no controller to wait for and no health stream.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from space_dra import kubeletplugin as kp
from space_dra import logs
from space_dra.config import Settings
from space_dra.contract import ClaimView
from space_dra.kube import KubeAPI, KubeError, NotFound
from space_dra.naming import DeviceLayout, NamingError, device_layout, owned_artifact_names

log = logging.getLogger("bench.twin_driver")

DEFAULT_DRIVER_NAME = "twin.bench.space.example.com"
CDI_CLASS = "claim"
FILES = ("kubeconfig", "token", "ca.crt", "namespace")
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIBtwin\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True)
class TwinOptions:
    driver_name: str
    cdi_dir: Path
    artifact_dir: Path
    checkpoint_path: Path
    server: str = "https://kubernetes.default.svc"


@dataclass(frozen=True)
class TwinDevice:
    request: str
    pool: str
    device: str
    share_id: str | None
    layout: DeviceLayout


@dataclass(frozen=True)
class TwinClaim:
    """The checkpoint entry of one prepared claim."""

    namespace: str
    name: str
    devices: tuple[TwinDevice, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, _uid: str, data: Mapping[str, Any]) -> TwinClaim:
        devices = [{**d, "layout": DeviceLayout(**d["layout"])} for d in data["devices"]]
        return cls(data["namespace"], data["name"], tuple(TwinDevice(**d) for d in devices))


class TwinDriver:
    """The driver: the layer's two callbacks, nothing else."""

    def __init__(self, kube: KubeAPI, options: TwinOptions) -> None:
        self.kube = kube
        self.options = options
        self.cdi = kp.CDISpecs(options.cdi_dir, options.driver_name, CDI_CLASS)
        self.files = kp.ArtifactStore(options.artifact_dir)
        self.checkpoint = kp.Checkpoint(
            options.checkpoint_path, kp.Codec(TwinClaim.to_json, TwinClaim.from_json)
        )
        self.commits = kp.GroupCommit(self.checkpoint)
        self.prepared: dict[str, TwinClaim] = {}

    def recover(self) -> None:
        """Load the checkpoint (an unreadable one is moved aside) and restore lost specs."""
        self.files.ensure_root()
        try:
            self.prepared = self.checkpoint.load()
        except kp.CheckpointCorrupt as exc:
            logs.log_event(log, logging.ERROR, "checkpoint_corrupt", error=str(exc))
        for uid, claim in self.prepared.items():
            if not self.cdi.exists(uid):
                self._write_spec(uid, claim)

    async def prepare_resource_claims(
        self, claims: Sequence[kp.Claim]
    ) -> dict[str, kp.PrepareResult]:
        results: dict[str, kp.PrepareResult] = {}
        for claim in claims:
            try:
                results[claim.uid] = await self._prepare(claim)
            except kp.ClaimError as exc:
                results[claim.uid] = exc
        return results

    async def _prepare(self, claim: kp.Claim) -> list[kp.Device]:
        known = self.prepared.get(claim.uid)
        if known is not None and (known.namespace, known.name) == (claim.namespace, claim.name):
            self._repair(claim.uid, known)
            return self._response(known)
        prepared = TwinClaim(claim.namespace, claim.name, await self._plan(claim))
        try:
            for device in prepared.devices:
                self._write_files(claim.namespace, device.layout)
            self._write_spec(claim.uid, prepared)
            self.prepared = await self.commits.apply(
                lambda entries: entries.__setitem__(claim.uid, prepared)
            )
        except OSError as exc:
            self._remove(claim.uid, prepared)
            raise kp.ClaimError(f"claim {claim.uid}: writing files failed: {exc}") from None
        return self._response(prepared)

    async def _plan(self, claim: kp.Claim) -> tuple[TwinDevice, ...]:
        try:
            view = ClaimView(
                await self.kube.get_claim(claim.namespace, claim.name), self.options.driver_name
            )
        except NotFound:
            raise kp.ClaimError(
                f"claim {claim.uid}: ResourceClaim {claim.display} not found"
            ) from None
        except KubeError as exc:
            raise kp.ClaimError(f"claim {claim.uid}: {exc}") from None
        if view.uid != claim.uid:
            raise kp.ClaimError(f"claim {claim.uid}: ResourceClaim {claim.display} was replaced")
        if not view.allocated:
            raise kp.ClaimError(
                f"claim {claim.uid}: ResourceClaim {claim.display} is not allocated"
            )
        refs = view.our_devices()
        if not refs:
            raise kp.ClaimError(
                f"claim {claim.uid}: no device of driver {self.options.driver_name} is allocated"
            )
        try:
            return tuple(
                TwinDevice(
                    ref.request,
                    ref.pool,
                    ref.device,
                    ref.share_id,
                    device_layout(claim.uid, view.display_name, i, len(refs), Settings()),
                )
                for i, ref in enumerate(refs)
            )
        except NamingError as exc:
            raise kp.ClaimError(f"claim {claim.uid}: {exc}") from None

    def _write_files(self, namespace: str, layout: DeviceLayout) -> None:
        contents = {
            "kubeconfig": (
                f"apiVersion: v1\nkind: Config\nclusters:\n- name: twin\n  cluster:\n"
                f"    server: {self.options.server}\nusers:\n- name: twin\n  user:\n"
                f"    tokenFile: {layout.mount_path}/token\ncontexts:\n- name: twin\n"
                f"  context: {{cluster: twin, user: twin, namespace: {namespace}}}\n"
                "current-context: twin\n"
            ).encode(),
            "token": secrets.token_hex(32).encode(),
            "ca.crt": CA_PEM,
            "namespace": namespace.encode(),
        }
        self.files.publish(layout.artifact_dir_name, contents)

    def _write_spec(self, uid: str, claim: TwinClaim) -> None:
        self.cdi.write(
            uid,
            [
                kp.CDIDevice(
                    name=d.layout.cdi_device_name,
                    env=d.layout.env(
                        self.options.driver_name, claim.namespace, self.options.server
                    ),
                    mounts=[
                        kp.Mount(
                            str(self.files.path(d.layout.artifact_dir_name)), d.layout.mount_path
                        )
                    ],
                )
                for d in claim.devices
            ],
        )

    def _repair(self, uid: str, claim: TwinClaim) -> None:
        for device in claim.devices:
            if not self.files.complete(device.layout.artifact_dir_name, FILES):
                self._write_files(claim.namespace, device.layout)
        if not self.cdi.exists(uid):
            self._write_spec(uid, claim)

    def _response(self, claim: TwinClaim) -> list[kp.Device]:
        return [
            kp.Device(
                (d.request,),
                d.pool,
                d.device,
                (self.cdi.qualified_name(d.layout.cdi_device_name),),
                d.share_id,
            )
            for d in claim.devices
        ]

    async def unprepare_resource_claims(
        self, claims: Sequence[kp.Claim]
    ) -> dict[str, kp.UnprepareResult]:
        return {claim.uid: await self._unprepare(claim.uid) for claim in claims}

    async def _unprepare(self, uid: str) -> kp.UnprepareResult:
        try:
            self._remove(uid, self.prepared.get(uid))
            self.prepared = await self.commits.apply(lambda entries: entries.pop(uid, None))
        except OSError as exc:
            return kp.ClaimError(f"claim {uid}: removing files failed: {exc}")
        return None

    def _remove(self, uid: str, claim: TwinClaim | None) -> None:
        self.cdi.remove(uid)
        names = {d.layout.artifact_dir_name for d in claim.devices} if claim else set()
        names.update(owned_artifact_names(uid, self.files.names()))
        for name in names:
            self.files.remove(name)

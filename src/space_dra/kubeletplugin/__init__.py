"""The kubelet side of a DRA driver, for any kind of device: write the driver, not the protocol.

This package speaks the kubelet's DRA protocol so a driver only has to say what
preparing a claim means. It is modelled on the Go helper
``k8s.io/dynamic-resource-allocation/kubeletplugin`` and knows nothing about what a
device is: it imports only the generated protobuf stubs and the project's log
formatter. ResourceSlice publishing is not here (a driver whose pool is published by
a controller, like the namespace driver, does not need it), nor is a Kubernetes
client: a driver that reads its claims brings its own.

What it does for you
--------------------
- **Registration**: the ``<driver>-reg.sock`` socket in the kubelet's
  ``plugins_registry``, ``GetInfo`` and ``NotifyRegistrationStatus``; a rejection is
  logged, passed to ``Options.on_registration`` and reported by
  :meth:`KubeletPlugin.problem` (wire it to a liveness probe);
  :meth:`KubeletPlugin.not_ready` stays set until the kubelet accepted the plugin
  (wire it to a readiness probe, so a rolling update waits for the new pod).
- **DRAPlugin v1 and v1beta1** on ``<plugins-dir>/<driver>/dra.sock``: every UID of a
  request gets an answer. UIDs named twice for different claims and UIDs that are not
  Kubernetes UIDs are refused before your code runs, so a claim UID is always safe in
  a file name. A driver that raises, or forgets a claim, gives those claims an error.
- **Serialization** (:class:`Serialization`): by default each claim reaches the
  driver alone, under its own lock (:class:`ClaimLocks`, shared with your background
  work through ``Options.claim_locks``), while other claims run in parallel.
- **Health**: if the driver also implements :class:`HealthReporter`, the
  ``DRAResourceHealth`` stream is served and advertised in both versions (``v1`` for
  1.37+ kubelets, ``v1alpha1`` for 1.36); it repeats the full list every minute and at
  once when the driver's :class:`ChangeSignal` fires. Each device is
  :class:`HealthStatus` Healthy, Unhealthy or Unknown with a message the pod's status
  shows.
- **Sockets and lifecycle**: stale sockets are replaced (never a file that is not a
  socket), sockets of dead instances removed, the DRA socket serves before the
  registration socket appears and the registration socket goes first on the way out.
  With ``Options.rolling_update_uid`` (the pod UID) both socket names are unique per
  pod, so a DaemonSet can roll with ``maxSurge`` and no gap.
- **Building blocks for the driver's own state**: :class:`CDISpecs` writes one CDI
  spec per claim atomically (env vars, mounts, and a record to rebuild state from);
  :class:`ArtifactStore` publishes directories of files for containers the way the
  kubelet publishes projected volumes, so they can change under a running container;
  :class:`Checkpoint` is a versioned JSON file of per-claim entries in your format,
  written atomically, safe for two instances at once; an unreadable one (corrupt, or
  of a version you do not know) is moved aside and rebuilt from what your
  ``on_unreadable`` returns, never a crash loop; :class:`GroupCommit` makes
  concurrent changes share one write.

Writing a driver
----------------
Implement the two callbacks of :class:`DRAPlugin`. Each gets claims
(:class:`Claim`: namespace, name, UID) and returns, for each UID, either the
prepared :class:`Device` list or a :class:`ClaimError` whose message the kubelet shows
in the pod's events::

    import asyncio
    from pathlib import Path

    from space_dra import kubeletplugin as kp

    class LampDriver:
        def __init__(self) -> None:
            self.cdi = kp.CDISpecs(Path("/var/run/cdi"), "lamp.example.com", "lamp")

        async def prepare_resource_claims(self, claims):
            results = {}
            for claim in claims:
                self.cdi.write(claim.uid, [kp.CDIDevice(claim.uid, {"LAMP": "on"})])
                results[claim.uid] = [
                    kp.Device(("lamp",), "pool", "lamp-0",
                              (self.cdi.qualified_name(claim.uid),))
                ]
            return results

        async def unprepare_resource_claims(self, claims):
            for claim in claims:
                self.cdi.remove(claim.uid)
            return {claim.uid: None for claim in claims}

    plugin = kp.KubeletPlugin(LampDriver(), kp.Options(driver_name="lamp.example.com"))
    asyncio.run(kp.run_until_signalled(plugin))

The contract the kubelet expects of the callbacks:

- **Idempotent.** The kubelet repeats calls (after its own restart, after a node
  reboot, when a response was lost). Preparing a prepared claim returns the same
  devices; unpreparing an unknown claim succeeds.
- **Unprepare may come from another process** than the prepare (a restart, the other
  instance during a rolling update): keep what it needs on disk (a :class:`Checkpoint`)
  or derive it from the UID.
- **Leave nothing half-made.** Check everything that can be rejected before the first
  write; if a later step fails, remove what this call wrote and return the error.
- **Answer within the kubelet's 45 s** with a retryable error rather than let the call
  time out.
- **Name the requests.** Containers reference a claim's devices by request name, so
  give each :class:`Device` the request it was allocated for.

Then: read the claim from the API server if the driver needs its allocation (the Go
helper does this for you; here the driver owns its client), recover the checkpoint
before :meth:`KubeletPlugin.start`, and run it in a DaemonSet with the kubelet's
``plugins`` and ``plugins_registry`` directories and ``/var/run/cdi`` mounted.
``bench/twin_driver_core.py`` is a complete small driver on this package (run by
``bench/twin_driver.py``, tested in ``tests/protocol/test_twin_driver.py``);
``space_dra.plugin`` is the full namespace driver. Drivers that publish their own
ResourceSlices do it beside the layer, as ``bench/twin_driver.py`` shows.
"""

from space_dra.kubeletplugin.api import (
    Claim,
    ClaimError,
    Device,
    DeviceHealth,
    DRAPlugin,
    HealthReporter,
    HealthStatus,
    PrepareResult,
    Serialization,
    UnprepareResult,
    clip,
    uid_problem,
)
from space_dra.kubeletplugin.artifacts import ArtifactError, ArtifactStore
from space_dra.kubeletplugin.cdi import CDIDevice, CDIError, CDISpecs, Mount
from space_dra.kubeletplugin.checkpoint import (
    CORRUPT,
    UNSUPPORTED_VERSION,
    Checkpoint,
    CheckpointCorrupt,
    Codec,
    GroupCommit,
    Recovery,
)
from space_dra.kubeletplugin.helper import KubeletPlugin, Options, run_until_signalled
from space_dra.kubeletplugin.sockets import (
    KUBELET_PLUGINS_DIR,
    KUBELET_REGISTRY_DIR,
    SocketPaths,
    socket_paths,
)
from space_dra.kubeletplugin.sync import ChangeSignal, ClaimLocks

__all__ = [
    "CORRUPT",
    "KUBELET_PLUGINS_DIR",
    "KUBELET_REGISTRY_DIR",
    "UNSUPPORTED_VERSION",
    "ArtifactError",
    "ArtifactStore",
    "CDIDevice",
    "CDIError",
    "CDISpecs",
    "ChangeSignal",
    "Checkpoint",
    "CheckpointCorrupt",
    "Claim",
    "ClaimError",
    "ClaimLocks",
    "Codec",
    "DRAPlugin",
    "Device",
    "DeviceHealth",
    "GroupCommit",
    "HealthReporter",
    "HealthStatus",
    "KubeletPlugin",
    "Mount",
    "Options",
    "PrepareResult",
    "Recovery",
    "Serialization",
    "SocketPaths",
    "UnprepareResult",
    "clip",
    "run_until_signalled",
    "socket_paths",
    "uid_problem",
]

"""The plugin is ready once the kubelet registered it, and not before or after a rejection.

Over real sockets: the kubelet's side is played by gRPC calls on the registration
socket, the probes by HTTP requests to the plugin's /healthz and /readyz. The second
test is a DaemonSet rolling update with maxSurge on one node: the old pod stays ready
and serving until the new one is registered.
"""

from __future__ import annotations

from dataclasses import replace

from space_dra.kube_memory import MemoryKube
from space_dra.plugin.server import PluginServer
from tests.protocol.conftest import Dirs, Harness
from tests.protocol.test_plugin_protocol import get_info, http_get, notify


async def test_readyz_follows_the_kubelets_verdict(harness: Harness) -> None:
    port = harness.server.http.port
    registration = harness.server.paths.registration
    # Serving, discoverable, alive, but not used by the kubelet yet.
    await get_info(registration)
    assert (await http_get(port, "/healthz"))[0] == 200
    status, body = await http_get(port, "/readyz")
    assert status == 503
    assert "waiting for the kubelet to register" in body

    await notify(registration, registered=True)
    assert await http_get(port, "/readyz") == (200, "ok\n")

    await notify(registration, registered=False, error="plugin name already in use")
    status, body = await http_get(port, "/readyz")
    assert status == 503
    assert "plugin name already in use" in body

    # The kubelet re-registers the plugin (say, after it restarted).
    await notify(registration, registered=True)
    assert (await http_get(port, "/readyz"))[0] == 200


async def test_rolling_update_keeps_the_old_pod_ready_until_the_new_one_is_registered(
    dirs: Dirs,
) -> None:
    kube = MemoryKube()
    old = PluginServer(kube, replace(dirs.options(), rolling_update_uid="pod-old"))
    new = PluginServer(kube, replace(dirs.options(), rolling_update_uid="pod-new"))
    try:
        await old.start()
        await notify(old.paths.registration, registered=True)
        assert (await http_get(old.http.port, "/readyz"))[0] == 200

        # maxSurge: the new pod starts beside the old one, under its own socket names.
        await new.start()
        assert new.paths.registration != old.paths.registration
        assert new.paths.dra != old.paths.dra
        assert (await http_get(new.http.port, "/readyz"))[0] == 503
        assert (await http_get(old.http.port, "/readyz"))[0] == 200
        assert old.paths.registration.exists()

        await notify(new.paths.registration, registered=True)
        assert (await http_get(new.http.port, "/readyz"))[0] == 200

        # Only now does the DaemonSet controller delete the old pod; it deregisters.
        await old.stop()
        assert not old.paths.registration.exists()
        assert not old.paths.dra.exists()
        assert new.paths.registration.exists()
        assert (await http_get(new.http.port, "/readyz"))[0] == 200
        assert (await get_info(new.paths.registration)).endpoint == str(new.paths.dra)
    finally:
        await new.stop()
        await old.stop()

"""Where the two unix sockets go, and clearing what earlier instances left behind.

The layout is the kubelet's (and the Go helper's): the DRA socket ``dra.sock`` in the
driver's data directory ``<plugins-dir>/<driver>/``, the registration socket
``<driver>-reg.sock`` in the registrar directory. During a rolling update two plugin
pods run at once, so each puts its pod UID in both names.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import stat
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

from space_dra.logs import log_event

log = logging.getLogger(__name__)

KUBELET_PLUGINS_DIR = Path("/var/lib/kubelet/plugins")
KUBELET_REGISTRY_DIR = Path("/var/lib/kubelet/plugins_registry")
SOCKET_MODE = 0o600
PLUGIN_DIR_MODE = 0o750
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL, but gRPC
# core refuses paths longer than 105 (measured with grpcio 1.85: 106 fails).
MAX_SOCKET_PATH = 105


@dataclass(frozen=True)
class SocketPaths:
    dra: Path
    registration: Path


def socket_paths(
    driver_name: str, plugins_dir: Path, registrar_dir: Path, rolling_update_uid: str | None
) -> SocketPaths:
    """Where the two sockets go; with a pod UID both names are unique per pod.

    Long pod UIDs are shortened to a hash so paths stay within the unix socket limit.
    """
    data_dir = plugins_dir / driver_name
    if not rolling_update_uid:
        return SocketPaths(data_dir / "dra.sock", registrar_dir / f"{driver_name}-reg.sock")
    uid = rolling_update_uid
    paths = SocketPaths(
        data_dir / f"dra-{uid}.sock", registrar_dir / f"{driver_name}-{uid}-reg.sock"
    )
    if max(len(str(paths.dra)), len(str(paths.registration))) > MAX_SOCKET_PATH:
        short = urlsafe_b64encode(hashlib.sha256(uid.encode()).digest()[:12]).decode()
        paths = SocketPaths(
            data_dir / f"dra-{short}.sock", registrar_dir / f"{driver_name}-{short}-reg.sock"
        )
    for path in (paths.dra, paths.registration):
        if len(str(path)) > MAX_SOCKET_PATH:
            raise ValueError(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes")
    return paths


def remove_stale_socket(path: Path) -> None:
    """Remove a leftover socket; refuse to delete anything that is not a socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
    path.unlink()
    log_event(log, logging.INFO, "stale_socket_removed", path=str(path))


def remove_dead_sockets(candidates: list[Path]) -> None:
    """Remove sockets of our driver that nobody listens on any more.

    In rolling-update mode every pod has its own socket names, so a plugin pod that
    was killed leaves sockets that no restart will reuse; the kubelet would keep
    trying them. A socket that refuses connections has no server: it is safe to
    remove, while a live one (the other instance during an update) is kept.
    """
    for path in candidates:
        try:
            if not stat.S_ISSOCK(path.lstat().st_mode):
                continue
        except FileNotFoundError:
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1)
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
            log_event(log, logging.INFO, "dead_socket_removed", path=str(path))
        except OSError:
            pass
        finally:
            probe.close()

"""Start and stop the cluster's processes by pid file; wait for readiness.

Every component runs detached (double fork, its own session) so that it outlives the command or
test session that started it, writes to ``logs/<name>.log`` and is recorded in ``pids/<name>.json``
with its executable and kernel start time. ``stop`` only ever signals a pid whose executable and
start time still match that record, so a recycled pid is never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# A log bigger than this is moved to <name>.log.1 when its component (re)starts.
LOG_ROTATE_BYTES = 64 * 1024 * 1024


class ComponentFailed(RuntimeError):
    """A component did not start or did not become ready; carries the tail of its log."""

    def __init__(self, component: str, reason: str, log: Path | None = None) -> None:
        self.component = component
        self.reason = reason
        self.log = log
        tail = log_tail(log, 40) if log else ""
        msg = f"{component}: {reason}"
        if log is not None:
            msg += f"\n--- last lines of {log} ---\n{tail}"
        super().__init__(msg)


def log_tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return "(no log)"
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64 * 1024))
        data = f.read().decode("utf-8", "replace")
    return "\n".join(data.splitlines()[-lines:])


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    exe: str
    start_time: int
    argv: tuple[str, ...] = field(default_factory=tuple)


def _proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] == "Z":
        return None  # a zombie is not running
    return int(rest[19])


def _proc_argv0(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace") if raw else None


def read_record(pidfile: Path) -> ProcessRecord | None:
    try:
        data = json.loads(pidfile.read_text())
        return ProcessRecord(
            pid=int(data["pid"]),
            exe=str(data["exe"]),
            start_time=int(data["start_time"]),
            argv=tuple(data.get("argv", ())),
        )
    except (OSError, ValueError, KeyError):
        return None


def is_alive(rec: ProcessRecord) -> bool:
    """True when the recorded process still runs (same pid, executable and start time)."""
    return _proc_start_time(rec.pid) == rec.start_time and _proc_argv0(rec.pid) == rec.exe


def spawn_detached(
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Run ``argv`` in a new session, reparented to init, output appended to ``log``.

    Returns the pid of the running program.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ if env is None else env)
    rfd, wfd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(rfd)
            os.setsid()
            grandchild = os.fork()
            if grandchild != 0:
                os.write(wfd, str(grandchild).encode())
                os._exit(0)
            os.close(wfd)
            logfd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            nullfd = os.open(os.devnull, os.O_RDONLY)
            os.dup2(nullfd, 0)
            os.dup2(logfd, 1)
            os.dup2(logfd, 2)
            os.closerange(3, 65536)
            if cwd is not None:
                os.chdir(cwd)
            os.execve(argv[0], list(argv), full_env)
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                os.write(2, f"localcluster: cannot exec {argv[0]}: {exc}\n".encode())
            os._exit(127)
    os.close(wfd)
    with os.fdopen(rfd) as r:
        data = r.read()
    os.waitpid(child, 0)
    if not data:
        raise ComponentFailed(Path(argv[0]).name, "fork failed", log)
    return int(data)


@dataclass
class Component:
    """A process of the cluster: how to run it and how to tell it is ready."""

    name: str
    argv: list[str]
    logs: Path
    pids: Path
    env: dict[str, str] | None = None
    ready: Callable[[], bool] | None = None
    ready_timeout: float = 60.0
    inputs: list[Path] = field(default_factory=list)
    # Runs the program elsewhere, e.g. ``nsenter --net=... --mount=...`` for a namespaced node. It
    # must exec the program in place (same pid), so the pid file still names ``argv[0]``.
    wrapper: list[str] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}.log"

    @property
    def pidfile(self) -> Path:
        return self.pids / f"{self.name}.json"

    def record(self) -> ProcessRecord | None:
        return read_record(self.pidfile)

    def running(self) -> bool:
        rec = self.record()
        return rec is not None and is_alive(rec)

    def fingerprint(self) -> str:
        """Identifies what would run: argv, environment and the content of the input files."""
        h = hashlib.sha256("\0".join([*self.wrapper, *self.argv]).encode())
        h.update(json.dumps(self.env, sort_keys=True).encode())
        exe = Path(self.argv[0]).stat()
        h.update(f"{exe.st_size}:{exe.st_mtime_ns}".encode())
        for f in self.inputs:
            h.update(str(f).encode())
            h.update(f.read_bytes() if f.is_file() else b"-")
        return h.hexdigest()

    def start(self) -> None:
        """Start unless already running as configured, then wait for readiness."""
        self.launch()
        self.wait_ready()

    def launch(self) -> bool:
        """Start the process if it is not running (restart it if its inputs changed).

        Returns True if a process was started.
        """
        fp = self.fingerprint()
        rec = self.record()
        if rec is not None and is_alive(rec):
            if self._recorded_fingerprint() == fp:
                return False
            with self.log.open("a") as f:
                f.write(f"\n=== localcluster: configuration changed, restarting {self.name} ===\n")
            terminate(rec)
        self.pids.mkdir(parents=True, exist_ok=True)
        if self.log.exists() and self.log.stat().st_size > LOG_ROTATE_BYTES:
            self.log.replace(self.log.with_name(self.log.name + ".1"))
        with self.log.open("a") as f:
            f.write(f"\n=== localcluster: starting {self.name} at {time.ctime()} ===\n")
            f.write(" ".join([*self.wrapper, *self.argv]) + "\n")
        pid = spawn_detached([*self.wrapper, *self.argv], self.log, env=self.env)
        start_time = None
        for _ in range(300):
            start_time = _proc_start_time(pid)
            if start_time is not None and _proc_argv0(pid) == self.argv[0]:
                break
            time.sleep(0.01)
        else:
            start_time = None
        if start_time is None:
            raise ComponentFailed(self.name, "exited immediately", self.log)
        data = {
            "pid": pid,
            "exe": self.argv[0],
            "start_time": start_time,
            "argv": self.argv,
            "fingerprint": fp,
        }
        self.pidfile.write_text(json.dumps(data, indent=1) + "\n")
        return True

    def _recorded_fingerprint(self) -> str | None:
        try:
            value = json.loads(self.pidfile.read_text()).get("fingerprint")
        except (OSError, ValueError):
            return None
        return value if isinstance(value, str) else None

    def wait_ready(self) -> None:
        if self.ready is None:
            return
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if not self.running():
                raise ComponentFailed(self.name, "exited while starting", self.log)
            try:
                if self.ready():
                    return
            except Exception:  # any probe error means not ready yet
                pass
            if time.monotonic() > deadline:
                raise ComponentFailed(
                    self.name, f"not ready after {self.ready_timeout:.0f}s", self.log
                )
            time.sleep(0.25)

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the recorded process if it is ours and alive. Returns True if one was stopped."""
        rec = self.record()
        stopped = False
        if rec is not None and is_alive(rec):
            stopped = True
            terminate(rec, timeout)
        self.pidfile.unlink(missing_ok=True)
        return stopped


def terminate(rec: ProcessRecord, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_alive(rec):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.05)


def wait_until(
    what: str,
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.5,
    log: Path | None = None,
    component: str = "cluster",
) -> None:
    """Poll ``predicate`` until it is true; raise ComponentFailed naming ``component`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # probe errors mean not yet
            pass
        if time.monotonic() > deadline:
            raise ComponentFailed(
                component, f"timed out after {timeout:.0f}s waiting for {what}", log
            )
        time.sleep(interval)

"""Start, watch and stop local service processes (used by ``fraudops up`` and by the test fixtures).

Each service runs in its own session (process group) so stopping it also stops its children
(Airflow standalone forks a scheduler, api-server, dag-processor and triggerer). A pid file records
pid and process start time so a recycled pid is never mistaken for the service.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fraudops.exceptions import ServiceError


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 2xx within ``timeout``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(200 <= resp.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class ServiceSpec:
    """How to run one service and how to tell it is ready."""

    name: str
    command: Sequence[str]
    url: str
    health: Callable[[], bool]
    log_file: Path
    pid_file: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready_timeout_s: float = 60.0
    port: int | None = None
    #: Run before the process is started (not when it is already running), e.g. a schema migration;
    #: raises ``ServiceError`` to refuse the start.
    prepare: Callable[[], None] | None = None


@dataclass
class ServiceState:
    name: str
    url: str
    pid: int | None
    running: bool
    healthy: bool
    log_file: Path


def _proc_start_time(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def read_pid(pid_file: Path) -> int | None:
    """The recorded pid if that very process is still alive, else None."""
    try:
        data = json.loads(pid_file.read_text())
    except (OSError, ValueError):
        return None
    pid = int(data.get("pid", 0))
    if pid <= 0:
        return None
    started = _proc_start_time(pid)
    if started is None or abs(started - float(data.get("create_time", -1))) > 1.0:
        return None
    return pid


def start(spec: ServiceSpec) -> int:
    """Start ``spec`` detached and wait until healthy. Returns the pid.

    Raises ``ServiceError`` naming the service and its log when it exits or does not become
    healthy within ``ready_timeout_s``; a failed start leaves no process behind.
    """
    existing = read_pid(spec.pid_file)
    if existing is not None:
        if wait_healthy(spec, existing, timeout_s=spec.ready_timeout_s):
            return existing
        raise ServiceError(
            spec.name, f"already running as pid {existing} but not healthy", str(spec.log_file)
        )
    if spec.port is not None and port_in_use(spec.port):
        raise ServiceError(
            spec.name,
            f"port {spec.port} is already in use by another process; stop it or set a different port",
            str(spec.log_file),
        )
    spec.log_file.parent.mkdir(parents=True, exist_ok=True)
    spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
    if spec.prepare is not None:
        spec.prepare()
    env = {**os.environ, **spec.env}
    with open(spec.log_file, "ab") as log:
        log.write(f"\n--- starting {spec.name}: {' '.join(spec.command)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                list(spec.command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(spec.cwd) if spec.cwd else None,
                env=env,
                start_new_session=True,
            )
        except OSError as err:
            raise ServiceError(
                spec.name, f"cannot execute {spec.command[0]}: {err}", str(spec.log_file)
            ) from err
    spec.pid_file.write_text(
        json.dumps(
            {"pid": proc.pid, "create_time": _proc_start_time(proc.pid), "command": list(spec.command)}
        )
    )
    if not wait_healthy(spec, proc.pid, timeout_s=spec.ready_timeout_s, popen=proc):
        code = proc.poll()
        stop(spec)
        why = (
            f"exited with code {code}"
            if code is not None
            else f"not healthy after {spec.ready_timeout_s:.0f}s"
        )
        raise ServiceError(spec.name, why, str(spec.log_file))
    return proc.pid


def wait_healthy(
    spec: ServiceSpec, pid: int, timeout_s: float, popen: subprocess.Popen[bytes] | None = None
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            return False
        if popen is None and _proc_start_time(pid) is None:
            return False
        if spec.health():
            return True
        time.sleep(0.5)
    return False


def stop(spec: ServiceSpec, timeout_s: float = 30.0) -> bool:
    """Stop the service's whole process group. Returns True if something was stopped."""
    pid = read_pid(spec.pid_file)
    spec.pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    return kill_group(pid, timeout_s)


def kill_group(pid: int, timeout_s: float = 30.0) -> bool:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return False
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    time.sleep(0.2)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of our own children count as gone.
    try:
        import psutil

        return any(
            p.info["status"] != psutil.STATUS_ZOMBIE
            for p in psutil.process_iter(["pid", "status"])
            if _pgid(p.info["pid"]) == pgid
        )
    except Exception:
        return True


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def state(spec: ServiceSpec) -> ServiceState:
    pid = read_pid(spec.pid_file)
    running = pid is not None
    healthy = running and spec.health()
    return ServiceState(spec.name, spec.url, pid, running, healthy, spec.log_file)

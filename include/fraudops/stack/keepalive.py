"""``python -m fraudops.stack.keepalive --child-pid-file F -- COMMAND...``: run COMMAND, start it
again whenever it exits, until told to stop (SIGTERM/SIGINT, passed on to the child).

The ``scale`` profile runs each scoring replica and shadow worker under it, the way a process
manager (systemd ``Restart=always``, a Kubernetes pod's restart policy) would: a replica killed
under load comes back on its port and HAProxy's health check lets it rejoin. The child's pid is
written to ``F`` (JSON like the stack's pid files) at every start, so a test or an operator can
kill exactly the child. Restarts back off exponentially (0.5 s doubling to 10 s) and the backoff
resets after a child stayed up for 30 s.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

MIN_BACKOFF_S, MAX_BACKOFF_S, STABLE_S = 0.5, 10.0, 30.0


def _write_pid(path: Path, proc: subprocess.Popen[bytes], restarts: int) -> None:
    import psutil

    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": proc.pid, "create_time": created, "restarts": restarts}))
    tmp.replace(path)


def run(command: list[str], child_pid_file: Path) -> int:
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    backoff, restarts = MIN_BACKOFF_S, 0
    code = 0
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen(command)
        _write_pid(child_pid_file, child, restarts)
        code = child.wait()
        if stopping:
            break
        if time.monotonic() - started > STABLE_S:
            backoff = MIN_BACKOFF_S
        print(
            f"keepalive: {command[0]} exited with code {code}; starting it again in {backoff:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
        backoff = min(backoff * 2, MAX_BACKOFF_S)
        restarts += 1
    child_pid_file.unlink(missing_ok=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fraudops.stack.keepalive")
    parser.add_argument("--child-pid-file", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to keep alive")
    return run(command, args.child_pid_file)


if __name__ == "__main__":
    sys.exit(main())

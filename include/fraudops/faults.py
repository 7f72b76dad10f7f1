"""Fault injection for the retry-safety tests: die at a named point right after a side effect.

``crash_point("promote:after_champion_move")`` kills the current process with SIGKILL (no cleanup,
no ``finally``, exactly like an OOM kill or a lost worker) when the environment variable
``FRAUDOPS_CRASH_AT`` equals that name. Without the variable it is one dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "FRAUDOPS_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process if ``FRAUDOPS_CRASH_AT`` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)

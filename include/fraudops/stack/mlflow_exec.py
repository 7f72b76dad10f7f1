"""``mlflow server`` without its supervising parent.

``mlflow server`` prepares the server's environment (store URIs, the basic-auth admin account,
secrets) and then runs uvicorn as a child, staying alive only to forward signals: ~260 MB resident
that serve no request. This entry point runs the same CLI with the same options, but replaces the
CLI process by uvicorn (``exec``) at the moment MLflow would spawn it, so the service is one
process under the pid ``fraudops up`` recorded. Usage: ``python -m fraudops.stack.mlflow_exec
[mlflow server options]``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any


def _exec_in_place(cmd: Sequence[str], extra_env: Mapping[str, str] | None = None, **_: Any) -> None:
    os.execvpe(cmd[0], list(cmd), {**os.environ, **(extra_env or {})})


def main(argv: Sequence[str]) -> None:
    from mlflow import server
    from mlflow.cli import cli

    # MLflow 3.17 (pinned) starts its web server through this module-level helper.
    if not callable(getattr(server, "_exec_cmd", None)):
        raise SystemExit("mlflow.server._exec_cmd is gone: this MLflow version is not supported")
    setattr(server, "_exec_cmd", _exec_in_place)  # noqa: B010 (a private name)
    cli.main(args=["server", *argv], prog_name="mlflow")


if __name__ == "__main__":
    main(sys.argv[1:])

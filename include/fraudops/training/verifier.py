"""Untrusted bundles are verified in a child process with resource limits (issue #18, finding 4).

Why: a challenger's artifact is untrusted input. Checked inside the scoring service, an ONNX graph
that crashes ONNX Runtime kills production, one that loops for ever stops the alias watcher, one
that allocates gigabytes takes the service's memory. Here ``verify_isolated`` runs
``verify_artifact`` (hashes, spec, NaN/range on the reference rows, single-row latency) and a
warm-up over the batch shapes the service sends in ``python -m fraudops.training.verifier``, a child
that caps its own address space (``RLIMIT_AS``) and CPU time (``RLIMIT_CPU``) before it opens the
bundle, under a wall-clock timeout after which its process group is killed. Whatever happens to
the child, the parent gets an ``ArtifactError`` with the reason (or a ``LatencyBudgetError``, which
the service measures again later).

The child reports the SHA-256 of every file it verified; the service then loads the model from
bytes it read once and hashed (``OnnxScorer.from_dir(expect=...)``), so a file changed between
verification and load is refused instead of served.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudops.exceptions import ArtifactError, LatencyBudgetError
from fraudops.training.package import LATENCY_ROUNDS

#: The batch shapes the service scores (``ScoringService.score_many`` calls at most 32 rows).
WARM_ROWS = (1, 2, 3, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class VerifyLimits:
    """What a verification may use. Defaults: ``FRAUDOPS_VERIFY_MEMORY_MB`` (2048 MiB of address
    space: Python, NumPy, pandas and ONNX Runtime map ~0.9 GiB before a model is opened),
    ``FRAUDOPS_VERIFY_CPU_S`` (60 s of CPU time), ``FRAUDOPS_VERIFY_WALL_S`` (120 s)."""

    memory_mb: int = 2048
    cpu_s: int = 60
    wall_s: float = 120.0

    @classmethod
    def from_env(cls) -> VerifyLimits:
        return cls(
            memory_mb=int(os.environ.get("FRAUDOPS_VERIFY_MEMORY_MB", cls.memory_mb)),
            cpu_s=int(os.environ.get("FRAUDOPS_VERIFY_CPU_S", cls.cpu_s)),
            wall_s=float(os.environ.get("FRAUDOPS_VERIFY_WALL_S", cls.wall_s)),
        )


@dataclass(frozen=True)
class Verified:
    """A bundle that passed: what was measured and the digest of every file that was checked."""

    path: Path
    digests: dict[str, str]
    latency_p50_ms: float
    latency_p99_ms: float
    latency_budget_ms: float
    rounds: int


def verify_isolated(
    path: str | Path,
    *,
    n_latency_calls: int = 500,
    latency_rounds: int = LATENCY_ROUNDS,
    limits: VerifyLimits | None = None,
) -> Verified:
    """Verify ``path`` in a resource-limited child; raise ``ArtifactError`` with the reason."""
    limits = limits or VerifyLimits.from_env()
    root = Path(path).resolve()
    command = [
        sys.executable,
        "-m",
        "fraudops.training.verifier",
        json.dumps(
            {
                "path": str(root),
                "n_latency_calls": n_latency_calls,
                "latency_rounds": latency_rounds,
                "memory_mb": limits.memory_mb,
                "cpu_s": limits.cpu_s,
            }
        ),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # its own process group: a timeout kills whatever it started
    )
    try:
        out, err = proc.communicate(timeout=limits.wall_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise ArtifactError(
            f"verification did not finish within {limits.wall_s:g} s (the model hangs or is far too slow)"
        ) from None
    return _result(root, proc.returncode, out, err, limits)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _result(root: Path, code: int, out: bytes, err: bytes, limits: VerifyLimits) -> Verified:
    if code < 0:
        sig = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        why = {
            "SIGXCPU": f"it used more than {limits.cpu_s} s of CPU time",
            "SIGKILL": "it was killed (out of memory?)",
            "SIGSEGV": "the model crashed ONNX Runtime",
            "SIGABRT": "the model aborted ONNX Runtime",
            "SIGBUS": "the model crashed ONNX Runtime",
        }.get(sig, "")
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise ArtifactError(
            f"verification process died with {sig}"
            + (f": {why}" if why else "")
            + (f" ({' | '.join(tail)})"[:300] if tail else "")
        )
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        doc: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        doc = {}
    if not doc:
        stderr = err.decode(errors="replace").strip()[-400:]
        raise ArtifactError(f"verification process exited with code {code} and no report: {stderr}")
    if not doc.get("ok"):
        if doc.get("error") == "LatencyBudgetError":
            raise LatencyBudgetError(doc["p99_ms"], doc["budget_ms"], doc.get("rounds", 1))
        kind, message = doc.get("error", "Error"), doc.get("message", "")
        if kind == "MemoryError" or "bad_alloc" in message or "Failed to allocate" in message:
            raise ArtifactError(
                f"the model needs more than {limits.memory_mb} MiB to load or run: {message}"[:500]
            )
        if kind == "ArtifactError":
            raise ArtifactError(message)
        raise ArtifactError(f"verification failed: {kind}: {message}"[:500])
    return Verified(
        path=root,
        digests=dict(doc["digests"]),
        latency_p50_ms=float(doc["p50_ms"]),
        latency_p99_ms=float(doc["p99_ms"]),
        latency_budget_ms=float(doc["budget_ms"]),
        rounds=int(doc.get("rounds", 1)),
    )


# -- the child ------------------------------------------------------------------------------------
def _limit_self(memory_mb: int, cpu_s: int) -> None:
    import resource

    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # Soft limit: SIGXCPU (the parent reports it); hard limit a little later: SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child(job: dict[str, Any]) -> dict[str, Any]:
    _limit_self(int(job["memory_mb"]), int(job["cpu_s"]))
    from fraudops.faults import crash_point
    from fraudops.training.package import (
        MANIFEST_FILE,
        OnnxScorer,
        read_manifest,
        sha256_file,
        verify_artifact,
    )

    root = Path(job["path"])
    try:
        crash_point("verifier:start")
        report = verify_artifact(
            root, n_latency_calls=int(job["n_latency_calls"]), latency_rounds=int(job["latency_rounds"])
        )
        scorer = OnnxScorer.from_dir(root)
        for rows in WARM_ROWS:  # the batch shapes the service sends must run too
            scorer.score_batch([[0.0] * scorer.n_features] * rows)
    except LatencyBudgetError as err:
        return {
            "ok": False,
            "error": "LatencyBudgetError",
            "message": str(err),
            "p99_ms": err.p99_ms,
            "budget_ms": err.budget_ms,
            "rounds": err.rounds,
        }
    except Exception as err:  # everything the artifact can make go wrong, reported by type
        return {"ok": False, "error": type(err).__name__, "message": str(err)[:1000]}
    files = [MANIFEST_FILE, *sorted(read_manifest(root).get("files") or {})]
    return {
        "ok": True,
        "digests": {name: sha256_file(root / name) for name in files},
        "p50_ms": report.latency_p50_ms,
        "p99_ms": report.latency_p99_ms,
        "budget_ms": report.latency_budget_ms,
        "rounds": report.rounds,
    }


if __name__ == "__main__":
    result = _child(json.loads(sys.argv[1]))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.exit(0 if result["ok"] else 2)

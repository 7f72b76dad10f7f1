"""The mypyc-compiled online store: used when built from the current sources, and bit-identical to
the pure-Python modules on the same stream (out-of-order and same-timestamp events, labels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fraudops.features.online as online
from fraudops import native
from fraudops.features import FeatureSpec
from fraudops.features.parity import stream_online, synthetic_events


def _stream_bits() -> dict[str, object]:
    """Vectors of one jittered stream (15 % of events up to 6 h late, with labels), as exact
    float64 bit patterns, and the module that computed them."""
    from fraudops.features.offline import times_us

    tx, labels = synthetic_events(2500, seed=5, days=9)
    rng = np.random.default_rng(3)
    late = (rng.random(len(tx)) < 0.15) * rng.uniform(0, 6 * 3600e6, len(tx))
    out = stream_online(tx, labels, FeatureSpec.every(), arrival_order=times_us(tx["event_time"]) + late)
    return {"module": online.__file__, "bits": out.to_numpy().view(np.int64).ravel().tolist()}


#: The same function in a fresh process (the build is chosen at import), printed as JSON.
STREAM = (
    "import importlib.util, json, sys\n"
    "spec = importlib.util.spec_from_file_location('test_native', sys.argv[1])\n"
    "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
    "json.dump(mod._stream_bits(), sys.stdout)\n"
)


def test_the_compiled_store_is_built_and_in_use() -> None:
    """`make setup` builds it; a missing or stale build would silently cost the latency target."""
    assert native.status() == "fresh", "run `make setup` (python -m fraudops.native build)"
    assert Path(online.__file__).suffix == ".so"
    assert Path(online.__file__).is_relative_to(native.NATIVE_DIR)


def test_compiled_and_pure_python_vectors_are_bit_identical() -> None:
    """This process's modules (compiled under `make test`) against a pure-Python process."""
    pure = json.loads(
        subprocess.run(
            [sys.executable, "-c", STREAM, __file__],
            env={**os.environ, "FRAUDOPS_NATIVE": "0"},
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    )
    compiled = _stream_bits()
    assert str(compiled["module"]).endswith(".so") and str(pure["module"]).endswith("online.py")
    assert len(compiled["bits"]) == 2500 * len(FeatureSpec.every())  # type: ignore[arg-type]
    assert compiled["bits"] == pure["bits"]


def test_a_stale_or_missing_build_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stamp = json.loads(native.STAMP_FILE.read_text()) if native.STAMP_FILE.exists() else {}
    monkeypatch.setattr(native, "STAMP_FILE", tmp_path / "STAMP.json")
    assert native.status() == "missing"
    edited = dict(stamp.get("sources", {}))
    edited["fraudops/features/online.py"] = "0" * 64  # online.py changed since the build
    (tmp_path / "STAMP.json").write_text(json.dumps({**stamp, "sources": edited}))
    assert native.status() == "stale"
    monkeypatch.setattr(native, "_state", {})
    path: list[str] = ["/src/fraudops/features"]
    assert native.enable(path) == "stale"
    assert path == ["/src/fraudops/features"]  # the pure-Python modules stay first
    monkeypatch.setenv("FRAUDOPS_NATIVE", "0")
    assert native.status() == "disabled"

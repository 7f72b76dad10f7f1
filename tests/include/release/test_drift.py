"""Evidently 0.7 drift: a shifted column is caught, an unshifted one is not; rows round-trip."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudops.release.drift import DriftResult, drift_rows, feature_drift, score_drift
from fraudops.release.policy import DEFAULT_POLICY, GatePolicy


@pytest.fixture(scope="module")
def evidently_loaded() -> float:
    """Import Evidently once (about 9 s); every test in the session reuses the module."""
    from fraudops.release.drift import _import_evidently, evidently_import_seconds

    _import_evidently()
    seconds = evidently_import_seconds()
    assert seconds is not None
    return seconds


def _frames(n_ref: int = 3000, n_cur: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"amount_z": rng.normal(size=n_ref), "velocity": rng.gamma(2.0, 1.0, size=n_ref)})
    cur = pd.DataFrame(
        {"amount_z": rng.normal(size=n_cur) + 0.8, "velocity": rng.gamma(2.0, 1.0, size=n_cur)}
    )
    return ref, cur


def test_feature_drift_flags_only_the_shifted_column(evidently_loaded: float, tmp_path: Path) -> None:
    ref, cur = _frames()
    html = tmp_path / "drift.html"
    result = feature_drift(ref, cur, ["amount_z", "velocity"], DEFAULT_POLICY, html_path=html)
    assert result.column("amount_z").drifted and result.column("amount_z").method == "wasserstein"
    assert result.column("amount_z").value == pytest.approx(0.8, abs=0.1)  # normed Wasserstein ≈ shift/std
    assert not result.column("velocity").drifted
    assert result.drift_share == 0.5 and not result.dataset_drift  # 50% is not more than 50%
    assert html.stat().st_size > 10_000
    strict = DEFAULT_POLICY.model_copy(update={"max_drifted_feature_share": 0.4})
    assert feature_drift(ref, cur, ["amount_z", "velocity"], strict).dataset_drift
    assert DriftResult.from_dict(result.to_dict()) == result


def test_drift_method_does_not_change_with_sample_size(evidently_loaded: float) -> None:
    ref, cur = _frames(n_ref=300, n_cur=200)  # below Evidently's 1000-row switch to other tests
    small = feature_drift(ref, cur, ["amount_z", "velocity"])
    assert {c.method for c in small.columns} == {"wasserstein"}
    assert small.column("amount_z").drifted and not small.column("velocity").drifted
    ks = feature_drift(
        ref, cur, ["amount_z"], GatePolicy(feature_drift_method="ks", feature_drift_threshold=0.05)
    )
    assert ks.column("amount_z").value < 0.05 and ks.column("amount_z").drifted  # p-value direction


def test_score_drift(evidently_loaded: float) -> None:
    rng = np.random.default_rng(5)
    champion = rng.beta(1, 30, size=4000)
    same = score_drift(champion, rng.beta(1, 30, size=4000))
    assert same.columns[0].method == "psi" and not same.dataset_drift
    shifted = score_drift(champion, rng.beta(3, 10, size=4000))
    assert shifted.dataset_drift and shifted.columns[0].value > DEFAULT_POLICY.max_score_drift


def test_drift_rows_match_table() -> None:
    from fraudops.release.drift import ColumnDrift
    from fraudops.warehouse.schema import DRIFT_METRICS

    result = DriftResult(
        "feature_drift",
        (
            ColumnDrift("a", "wasserstein", 0.3, 0.1, True),
            ColumnDrift("b", "wasserstein", float("nan"), 0.1, True),
        ),
        1.0,
        0.5,
        True,
        10,
        10,
    )
    rows = drift_rows(result, run_id="r1", model_name="m", model_version="2")
    assert [r["column_name"] for r in rows] == ["a", "b", "__dataset__"]
    assert rows[1]["value"] is None and rows[2]["value"] == 1.0 and rows[2]["drifted"] is True
    assert all(set(r) == set(DRIFT_METRICS.column_names) for r in rows)
    assert rows[0]["check"] == "feature_drift"
    assert drift_rows(result, run_id="r1", model_name="m", model_version="2", check="x")[0]["check"] == "x"
    assert isinstance(rows[0]["computed_at"], dt.datetime)


def test_shadow_drift_from_evidence(evidently_loaded: float, tmp_path: Path) -> None:
    from release_synthetic import make_evidence

    from fraudops.release.drift import shadow_drift
    from fraudops.release.gates import decide_promotion

    ev = make_evidence(n=3000, champion={"strength": 1.5}, challenger={"strength": 3.0})
    rng = np.random.default_rng(2)
    # training profile: same first feature distribution, second feature (the label proxy) shifted
    reference = pd.DataFrame(
        {"f_mod": (np.arange(5000) % 97).astype(float), "f_flag": (rng.random(5000) < 0.5).astype(float)}
    )
    score, features = shadow_drift(ev, reference, ["f_mod", "f_flag"], html_dir=tmp_path)
    assert score.check == "score_drift" and features.check == "feature_drift"
    assert features.drifted_columns == ["f_flag"] and not features.dataset_drift
    assert (tmp_path / "score_drift.html").exists() and (tmp_path / "feature_drift.html").exists()
    from release_synthetic import SMALL_POLICY as policy

    decision = decide_promotion(ev, policy, [score, features], expected_fraud_rate=0.05)
    assert {"score_drift", "feature_drift"} <= {c.name for c in decision.checks}
    # Two models with different score distributions: the raw-score drift is shown, never decides.
    assert decision.check("score_drift").passed and decision.check("score_drift").threshold is None
    assert decision.status == "promote", decision.reason
    # With the champion's reference: production's vectors in the same window against it.
    *_, incumbent = shadow_drift(
        ev,
        reference,
        ["f_mod", "f_flag"],
        html_dir=tmp_path,
        incumbent_reference=reference.assign(f_mod=reference["f_mod"] * 3),
        incumbent_feature_names=["f_mod", "f_flag"],
    )
    assert incumbent.check == "incumbent_feature_drift" and "f_mod" in incumbent.drifted_columns
    assert (tmp_path / "incumbent_feature_drift.html").exists()


def test_release_package_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fraudops.release as r, fraudops.release.gates, fraudops.release.drift;"
        "r.GatePolicy; heavy = [m for m in ('pandas', 'numpy', 'sklearn', 'evidently') if m in sys.modules];"
        "print(heavy); assert not heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

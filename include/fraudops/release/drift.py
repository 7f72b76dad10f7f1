"""Feature and score drift with Evidently 0.7, returned as plain data.

Why a fixed method per column: Evidently's default drift test depends on sample size (KS/chi²
below 1000 rows, Wasserstein/Jensen-Shannon above), so the same shift could pass on a small window
and fail on a large one. Here the method and threshold come from the :class:`GatePolicy` and are
passed to Evidently's ``ValueDrift`` metric explicitly; the result records both.

Why plain data: :class:`DriftResult` holds floats and strings only (``to_dict``/``from_dict``), so it
travels through XCom and into ``drift_metrics`` without Evidently objects. The Evidently snapshot
is only used to render the HTML report (``html_path`` / :func:`save_html`).

Evidently takes about 9 s to import, so it is imported inside functions only (first use is
logged with its import time).

Direction of the drift flag: for p-value methods (``ks``, ``anderson``, ...) a column drifted when
the p-value is below the threshold; for distances (``wasserstein`` normed by the reference std,
``psi``, ``jensenshannon``, ...) when the value is at or above it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudops.release.policy import DEFAULT_POLICY, GatePolicy, is_p_value_method

if TYPE_CHECKING:
    import pandas as pd

    from fraudops.release.evidence import ShadowEvidence
    from fraudops.warehouse import Warehouse

log = logging.getLogger(__name__)

_EVIDENTLY_IMPORT_S: float | None = None

#: ``DriftResult.check`` of production's features vs the champion's training reference (the gate's
#: yardstick for ``feature_drift``).
INCUMBENT_FEATURE_DRIFT = "incumbent_feature_drift"


def evidently_import_seconds() -> float | None:
    """How long the first Evidently import took in this process (None before first use)."""
    return _EVIDENTLY_IMPORT_S


def _import_evidently() -> Any:
    global _EVIDENTLY_IMPORT_S
    t0 = time.perf_counter()
    import evidently

    if _EVIDENTLY_IMPORT_S is None:
        _EVIDENTLY_IMPORT_S = time.perf_counter() - t0
        log.info("imported evidently %s in %.1f s", evidently.__version__, _EVIDENTLY_IMPORT_S)
    return evidently


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    value: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """Outcome of one drift check: per-column values and the dataset-level verdict."""

    check: str
    columns: tuple[ColumnDrift, ...]
    #: Share of columns that drifted.
    drift_share: float
    #: Share above which the dataset counts as drifted.
    max_drift_share: float
    dataset_drift: bool
    n_reference: int
    n_current: int
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def column(self, name: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == name:
                return c
        raise KeyError(f"{self.check}: no drift value for column {name!r}")

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["columns"] = [asdict(c) for c in self.columns]
        doc["notes"] = list(self.notes)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DriftResult:
        data = dict(doc)
        data["columns"] = tuple(ColumnDrift(**c) for c in data["columns"])
        data["notes"] = tuple(data.get("notes", ()))
        return cls(**data)


def _is_drifted(method: str, value: float, threshold: float) -> bool:
    return value < threshold if is_p_value_method(method) else value >= threshold


def _sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= n else frame.sample(n=n, random_state=seed)


def _value_drift(
    check: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    *,
    method: str,
    threshold: float,
    max_drift_share: float,
    max_rows: int,
    seed: int,
) -> tuple[DriftResult, Any]:
    """Run one Evidently report with an explicit ``ValueDrift(method, threshold)`` per column."""
    import math

    import pandas as pd

    _import_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    cols = list(columns)
    missing = [c for c in cols if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(f"{check}: columns {missing} missing from reference or current data")
    ref = _sample(reference[cols].apply(pd.to_numeric, errors="coerce").astype("float64"), max_rows, seed)
    cur = _sample(current[cols].apply(pd.to_numeric, errors="coerce").astype("float64"), max_rows, seed)
    if ref.empty or cur.empty:
        raise ValueError(f"{check}: needs rows on both sides (reference={len(ref)}, current={len(cur)})")
    t0 = time.perf_counter()
    definition = DataDefinition(numerical_columns=cols)
    report = Report([ValueDrift(column=c, method=method, threshold=threshold) for c in cols])
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    values: dict[str, float] = {}
    for m in snapshot.dict()["metrics"]:
        values[m["config"]["column"]] = float(m["value"])
    notes: list[str] = []
    results = []
    for c in cols:
        value = values.get(c, math.nan)
        if math.isnan(value):
            notes.append(f"{c}: no drift value (empty or all-NaN column); counted as drifted")
        drifted = True if math.isnan(value) else _is_drifted(method, value, threshold)
        results.append(ColumnDrift(c, method, value, threshold, drifted))
    share = sum(r.drifted for r in results) / len(results)
    result = DriftResult(
        check=check,
        columns=tuple(results),
        drift_share=share,
        max_drift_share=max_drift_share,
        dataset_drift=share > max_drift_share,
        n_reference=len(ref),
        n_current=len(cur),
        seconds=time.perf_counter() - t0,
        notes=tuple(notes),
    )
    return result, snapshot


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    policy: GatePolicy = DEFAULT_POLICY,
    *,
    html_path: str | Path | None = None,
    check: str = "feature_drift",
) -> DriftResult:
    """Per-feature drift of ``current`` (shadow window) vs ``reference`` (training profile).

    Dataset drift when more than ``policy.max_drifted_feature_share`` of the columns drifted.
    """
    result, snapshot = _value_drift(
        check,
        reference,
        current,
        columns,
        method=policy.feature_drift_method,
        threshold=policy.feature_drift_threshold,
        max_drift_share=policy.max_drifted_feature_share,
        max_rows=policy.drift_max_rows,
        seed=policy.bootstrap_seed,
    )
    if html_path is not None:
        save_html(snapshot, html_path)
    return result


def score_drift(
    champion_scores: Sequence[float] | pd.Series,
    challenger_scores: Sequence[float] | pd.Series,
    policy: GatePolicy = DEFAULT_POLICY,
    *,
    html_path: str | Path | None = None,
) -> DriftResult:
    """Drift of the challenger's shadow scores vs the champion's scores (reference) on the same events.

    One column, ``score``; dataset drift = that column drifted beyond ``policy.max_score_drift``.
    """
    import numpy as np
    import pandas as pd

    ref = pd.DataFrame({"score": np.asarray(champion_scores, dtype=np.float64)}).dropna()
    cur = pd.DataFrame({"score": np.asarray(challenger_scores, dtype=np.float64)}).dropna()
    result, snapshot = _value_drift(
        "score_drift",
        ref,
        cur,
        ["score"],
        method=policy.score_drift_method,
        threshold=policy.max_score_drift,
        max_drift_share=0.0,
        max_rows=policy.drift_max_rows,
        seed=policy.bootstrap_seed,
    )
    if html_path is not None:
        save_html(snapshot, html_path)
    return result


def shadow_drift(
    evidence: ShadowEvidence,
    reference: pd.DataFrame,
    feature_names: Sequence[str],
    policy: GatePolicy = DEFAULT_POLICY,
    *,
    html_dir: str | Path | None = None,
    incumbent_reference: pd.DataFrame | None = None,
    incumbent_feature_names: Sequence[str] | None = None,
) -> list[DriftResult]:
    """The drift checks for a shadow window, ready for ``decide_promotion(..., drift=...)``.

    Score drift: candidate vs incumbent scores on the events both scored. Feature drift: the
    candidate's feature vectors in the window vs ``reference`` (the challenger's
    ``reference_profile.parquet``: training rows, one column per feature name).
    With ``incumbent_reference`` also ``incumbent_feature_drift``: production's vectors in the
    same window vs the champion's own training reference. The gate uses it as the yardstick: when
    live traffic has moved away from *both* training sets (an attack wave that triggered the
    retrain), a challenger whose training data is closer to live traffic than the champion's is not
    held back by feature drift.
    """
    from fraudops.release.evidence import features_frame, ok_mask

    frame = evidence.frame
    both = (ok_mask(frame, "candidate") & ok_mask(frame, "incumbent")).to_numpy()
    out = Path(html_dir) if html_dir is not None else None
    scores = score_drift(
        frame.loc[both, "incumbent_score"],
        frame.loc[both, "candidate_score"],
        policy,
        html_path=out / "score_drift.html" if out else None,
    )
    current = features_frame(
        frame.loc[ok_mask(frame, "candidate").to_numpy(), "candidate_features"], list(feature_names)
    )
    features = feature_drift(
        reference,
        current,
        feature_names,
        policy,
        html_path=out / "feature_drift.html" if out else None,
    )
    results = [scores, features]
    if incumbent_reference is not None and incumbent_feature_names:
        names = list(incumbent_feature_names)
        live = features_frame(frame.loc[ok_mask(frame, "incumbent").to_numpy(), "incumbent_features"], names)
        results.append(
            feature_drift(
                incumbent_reference[names],
                live,
                names,
                policy,
                html_path=out / "incumbent_feature_drift.html" if out else None,
                check=INCUMBENT_FEATURE_DRIFT,
            )
        )
    return results


def save_html(report: Any, path: str | Path) -> Path:
    """Write an Evidently snapshot (``Report.run`` result) as a standalone HTML file."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    report.save_html(str(out))
    return out


def drift_rows(
    result: DriftResult,
    *,
    run_id: str,
    model_name: str | None,
    model_version: str | None,
    check: str | None = None,
    window_start: dt.datetime | None = None,
    window_end: dt.datetime | None = None,
    computed_at: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Rows for the ``drift_metrics`` table: one per column plus a ``__dataset__`` summary row.

    The summary row carries the drifted share as value and the allowed share as threshold.
    """
    name = check or result.check
    when = computed_at or dt.datetime.now(dt.UTC)
    common = {
        "run_id": run_id,
        "model_name": model_name,
        "model_version": model_version,
        "check": name,
        "window_start": window_start,
        "window_end": window_end,
        "computed_at": when,
    }
    rows = [
        {
            **common,
            "column_name": c.column,
            "method": c.method,
            "value": None if c.value != c.value else c.value,  # NaN → NULL
            "threshold": c.threshold,
            "drifted": c.drifted,
        }
        for c in result.columns
    ]
    rows.append(
        {
            **common,
            "column_name": "__dataset__",
            "method": "drift_share",
            "value": result.drift_share,
            "threshold": result.max_drift_share,
            "drifted": result.dataset_drift,
        }
    )
    return rows


def record_drift(warehouse: Warehouse, rows: list[dict[str, Any]]) -> int:
    """Idempotent write of :func:`drift_rows` output (key: run_id, check, column_name)."""
    return warehouse.upsert("drift_metrics", rows)

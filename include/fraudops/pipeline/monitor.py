"""Drift monitoring of the live champion: the step behind ``fraud_drift_monitor``.

Compares the feature vectors and scores the champion saw in production over a recent window with
the reference profile packaged in its bundle (training features + scores), using the release
policy's fixed drift methods (Evidently). Values go to ``drift_metrics`` and the HTML reports to an
MLflow run; the result says whether drift passed the policy and whether to *signal* it, which is
what makes the DAG emit the drift Asset that starts ``fraud_retrain``.

One signal per champion version and cooldown: an hourly monitor keeps seeing the same drift while
the retrain it started and that retrain's release are still running, and every further signal would
queue another retrain of the same data. A signal is a ``drift_metrics`` row (check
``live_drift_signal``); drift of the same version within ``cooldown_hours`` of it is recorded but
not signalled. A new champion is judged afresh, but not while a release is in flight (a running
``fraud_release`` run: its shadow test or its probation): that drift is recorded
(``drift_release_in_flight``) and signalled by the first look after the release ends, so two
releases never race for the champion. A failed or finished run does not hold signals back.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudops.config import Settings, load_settings
from fraudops.exceptions import ConfigError
from fraudops.vocabulary import Alias

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorParams:
    """What one monitoring run looks at."""

    #: Length of the live window, ending at ``end`` (by ``served_at``).
    window_hours: float = 6.0
    #: Fewer production predictions than this in the window: no verdict (too little to compare).
    min_events: int = 500
    #: End of the window (ISO 8601, UTC); empty = now.
    end: str = ""
    model_name: str = ""
    #: After a signal, drift of the same champion version is not signalled again for this long
    #: (by window end): the retrain and release it started are on their way.
    cooldown_hours: float = 24.0

    def __post_init__(self) -> None:
        if self.window_hours <= 0 or self.min_events < 1:
            raise ConfigError("window_hours must be > 0 and min_events >= 1")
        if self.cooldown_hours < 0:
            raise ConfigError("cooldown_hours must be >= 0")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> MonitorParams:
        raw = dict(raw or {})
        fields = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**{k: type(getattr(cls, k))(v) for k, v in fields.items()})


def check_live_drift(
    params: MonitorParams,
    run_id: str,
    settings: Settings | None = None,
    releases_in_flight: list[str] | None = None,
) -> dict[str, Any]:
    """Drift of the champion's live inputs and scores vs its training reference; a small dict.

    ``releases_in_flight``: release runs going on now (the DAG passes the running ``fraud_release``
    runs); drift seen meanwhile is recorded, not signalled."""
    import pandas as pd

    from fraudops.pipeline.retrain import parse_time
    from fraudops.registry import download_artifact_dir, get_alias_version
    from fraudops.release.drift import drift_rows, feature_drift, record_drift, score_drift
    from fraudops.release.evidence import features_frame
    from fraudops.warehouse import Warehouse

    s = settings or load_settings()
    name = params.model_name or s.mlflow.model_name
    uri = s.mlflow.tracking_uri
    version = get_alias_version(name, Alias.CHAMPION, tracking_uri=uri)
    if version is None:
        return {"status": "no_champion", "drifted": False, "model_name": name}
    end = parse_time(params.end) if params.end else dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(hours=params.window_hours)
    wh = Warehouse(s.warehouse)
    live = wh.query_df(
        f"SELECT transaction_id, score, features FROM `{wh.table_id('predictions')}` "
        "WHERE model_name = @name AND model_version = @version AND mode = 'production' "
        "AND served_at >= @start AND served_at < @end AND score IS NOT NULL "
        # Explicit dedup: the emulator has no insertId dedup and replays may repeat a row.
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY transaction_id ORDER BY served_at) = 1",
        {"name": name, "version": str(version), "start": start, "end": end},
    )
    base = {
        "model_name": name,
        "model_version": str(version),
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "n_current": len(live),
    }
    if len(live) < params.min_events:
        return {**base, "status": "insufficient_data", "drifted": False}

    bundle = download_artifact_dir(
        name, version, s.artifacts_dir / "monitor" / f"v{version}", tracking_uri=uri
    )
    spec = json.loads((Path(bundle) / "feature_spec.json").read_text())
    names = [f["name"] for f in spec["features"]]
    reference = pd.read_parquet(Path(bundle) / "reference_profile.parquet")
    current = features_frame(live["features"], names)
    reports = s.artifacts_dir / "monitor" / "reports" / run_id
    reports.mkdir(parents=True, exist_ok=True)
    fd = feature_drift(reference[names], current, names, html_path=reports / "feature_drift.html")
    sd = score_drift(reference["score"], live["score"], html_path=reports / "score_drift.html")
    rows = [
        row
        for result, check in ((fd, "live_feature_drift"), (sd, "live_score_drift"))
        for row in drift_rows(
            result,
            run_id=run_id,
            model_name=name,
            model_version=str(version),
            check=check,
            window_start=start,
            window_end=end,
        )
    ]
    record_drift(wh, rows)
    _log_to_mlflow(s, name, str(version), run_id, fd, sd, reports)
    drifted = bool(fd.dataset_drift or sd.dataset_drift)
    earlier = _last_signal(wh, name, str(version), end, params.cooldown_hours, run_id) if drifted else None
    # A release in flight (its shadow test or its probation) is the answer to drift already on its
    # way: a retrain started now would race it for the champion, and whichever decided second would
    # have compared with a champion no longer serving.
    in_flight = sorted(releases_in_flight or [])
    signal = drifted and earlier is None and not in_flight
    if signal:  # keyed by run: a retried run is not held back by its own row and rewrites it
        record_drift(wh, [_signal_row(run_id, name, str(version), fd.drift_share, start, end)])
    log.info(
        "live drift of %s v%s: features %.0f%% drifted, score drift %s -> %s",
        name,
        version,
        100 * fd.drift_share,
        sd.dataset_drift,
        "DRIFT"
        + (f" (already signalled for window end {earlier})" if earlier else "")
        + (f" (not signalled: release in flight: {', '.join(in_flight)})" if in_flight else "")
        if drifted
        else "ok",
    )
    status = "ok"
    if drifted:
        status = "drift" if signal else "drift_release_in_flight" if in_flight else "drift_already_signalled"
    return {
        **base,
        "status": status,
        "release_in_flight": in_flight,
        "drifted": drifted,
        "signal": signal,
        "signalled_before": earlier.isoformat() if earlier else None,
        "feature_drift_share": fd.drift_share,
        "max_drifted_feature_share": fd.max_drift_share,
        "drifted_features": fd.drifted_columns[:20],
        "score_drifted": bool(sd.dataset_drift),
        "score_drift_value": sd.column("score").value,
        "reports": str(reports),
    }


SIGNAL_CHECK = "live_drift_signal"


def _last_signal(
    wh: Any, name: str, version: str, end: dt.datetime, cooldown_hours: float, run_id: str
) -> dt.datetime | None:
    """Window end of this version's latest drift signal within the cooldown (other runs only)."""
    if cooldown_hours <= 0:
        return None
    rows = wh.query(
        f"SELECT MAX(window_end) AS t FROM `{wh.table_id('drift_metrics')}` "
        "WHERE `check` = @check AND model_name = @name AND model_version = @version "
        "AND run_id != @run AND window_end > @since AND window_end <= @end",
        {
            "check": SIGNAL_CHECK,
            "name": name,
            "version": version,
            "run": run_id,
            "since": end - dt.timedelta(hours=cooldown_hours),
            "end": end,
        },
    )
    return rows[0]["t"] if rows and rows[0]["t"] is not None else None


def _signal_row(
    run_id: str, name: str, version: str, share: float, start: dt.datetime, end: dt.datetime
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "model_name": name,
        "model_version": version,
        "check": SIGNAL_CHECK,
        "column_name": "__dataset__",
        "method": "policy",
        "value": share,
        "threshold": None,
        "drifted": True,
        "window_start": start,
        "window_end": end,
        "computed_at": dt.datetime.now(dt.UTC),
    }


def _log_to_mlflow(
    s: Settings, name: str, version: str, run_id: str, fd: Any, sd: Any, reports: Path
) -> None:
    import mlflow

    mlflow.set_tracking_uri(s.mlflow.tracking_uri)
    mlflow.set_experiment(f"{s.mlflow.experiment}-monitoring")
    with mlflow.start_run(run_name=f"drift {name} v{version} {run_id}"):
        mlflow.set_tags({"model_name": name, "model_version": version, "monitor_run": run_id})
        mlflow.log_metrics({"feature_drift_share": fd.drift_share, "score_drift": sd.column("score").value})
        mlflow.log_dict({"feature_drift": fd.to_dict(), "score_drift": sd.to_dict()}, "drift.json")
        mlflow.log_artifacts(str(reports), artifact_path="reports")

"""The retrain pipeline as plain steps: extract → validate → features → train → evaluate → package → register.

``fraud_retrain`` (Airflow) runs each step as a task; ``fraudops train`` runs the same functions in
one process. Steps exchange files in a run folder (``<state>/artifacts/retrain/<run_key>/``) and
return small JSON-able dicts (paths, versions, metrics) — what XCom may carry. Each step is
idempotent: re-running it rewrites its own outputs from its inputs and nothing else.

Time semantics. ``as_of`` is "now" for the run (default: the newest transaction in the warehouse,
since simulated traffic runs in accelerated event time). Labels take time to arrive, so the
training window ends ``label_maturity_days`` before ``as_of``; a transaction is fraud for
training when a fraud label for it is known by ``as_of``. Features are point-in-time: each row
only sees earlier events and labels known by its own time, with ``history_days`` of history (plus
the longest label delay, for the delayed risk features: ``features.delay``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from fraudops.config import Settings, load_settings
from fraudops.exceptions import ConfigError, DataValidationError
from fraudops.features.definitions import HORIZON_DAYS, LOOKBACK_DAYS, RISK_DELAYS
from fraudops.features.semantics import to_us
from fraudops.warehouse import Warehouse

if TYPE_CHECKING:
    from fraudops.features.delay import RiskDelay

log = logging.getLogger(__name__)

MODEL_FAMILIES: tuple[Literal["lightgbm", "logreg"], ...] = ("lightgbm", "logreg")
RISK_DELAY_CHOICES: tuple[str, ...] = ("auto", "none", *RISK_DELAYS)


@dataclass(frozen=True)
class RetrainParams:
    """Everything a retrain run can be asked for (the Airflow trigger form mirrors these fields)."""

    #: Length of the training window (days of labelled, matured transactions).
    window_days: int = 14
    #: Labels need this long to arrive; the window ends this many days before ``as_of``.
    label_maturity_days: float = 7.0
    #: Days of history before the window that features may look back on. Shorter than the longest
    #: feature window (30 d) truncates features of the window's first rows: only for small tests.
    history_days: int = 30
    #: "Now" for the run (ISO 8601, UTC); empty → the newest transaction in the warehouse.
    as_of: str = ""
    #: Candidate family; the other one is trained on the same split as the baseline.
    model_family: str = "lightgbm"
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 50
    early_stopping_rounds: int = 30
    num_threads: int = 2
    seed: int = 42
    #: Time-ordered split (fractions of rows by time): validation for early stopping and the
    #: decision threshold; the later holdout for the reported metrics.
    valid_frac: float = 0.15
    holdout_frac: float = 0.2
    #: Decision threshold = the score at this false-positive rate on the validation set.
    target_fpr: float = 0.005
    #: Share of events the fraud team can flag: holdout capture, precision, money and card
    #: precision are also reported at this operating point (the gate's, ``GatePolicy.alert_budget``).
    alert_budget: float = 0.01
    #: Minutes of hyper-parameter search before training the candidate (0 = none): Optuna over
    #: LightGBM's parameters on forward-chaining folds of the rows before the holdout, each fold's
    #: training rows ending a gap before its validation block (``training.selection``).
    search_minutes: float = 0.0
    search_folds: int = 3
    #: Label delay of the delayed risk features (``features.definitions.RISK_DELAYS``): "auto" reads
    #: the extract's label-delay curve (which delays leave labels in their windows; the smallest by
    #: which ``risk_delay_coverage`` of fraud labels had arrived wins ties; the label maturity when
    #: the curve is too thin) and lets forward folds choose among those and none (``features.delay``);
    #: "none" trains without delayed risk features; a delay forces it.
    risk_delay: str = "auto"
    risk_delay_coverage: float = 0.8
    #: Single-row p99 budget (ms) an artifact must meet in a fresh ONNX Runtime session.
    latency_budget_ms: float = 2.0
    #: Extract contract (Great Expectations).
    min_rows: int = 5_000
    fraud_rate_min: float = 0.0005
    fraud_rate_max: float = 0.25
    model_name: str = ""

    def __post_init__(self) -> None:
        if self.model_family not in MODEL_FAMILIES:
            raise ConfigError(f"model_family must be one of {MODEL_FAMILIES}, got {self.model_family!r}")
        if self.window_days < 1 or self.label_maturity_days < 0:
            raise ConfigError("window_days must be >= 1 and label_maturity_days >= 0")
        if not 0.0 < self.alert_budget < 1.0:
            raise ConfigError(f"alert_budget must be in (0, 1), got {self.alert_budget}")
        if self.search_minutes < 0 or self.search_folds < 1:
            raise ConfigError("search_minutes must be >= 0 and search_folds >= 1")
        if self.risk_delay not in RISK_DELAY_CHOICES:
            raise ConfigError(f"risk_delay must be one of {RISK_DELAY_CHOICES}, got {self.risk_delay!r}")
        if not 0.0 < self.risk_delay_coverage <= 1.0:
            raise ConfigError(f"risk_delay_coverage must be in (0, 1], got {self.risk_delay_coverage}")
        if self.as_of:
            parse_time(self.as_of)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> RetrainParams:
        """Build from Airflow params / JSON, ignoring unknown keys, coercing types."""
        raw = dict(raw or {})
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in raw and raw[f.name] is not None:
                default = getattr(cls, f.name, None)
                value = raw[f.name]
                try:
                    kwargs[f.name] = type(default)(value) if default is not None else value
                except (TypeError, ValueError) as err:
                    raise ConfigError(f"retrain param {f.name}={value!r}: {err}") from err
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(value: str | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise ConfigError(f"not an ISO 8601 timestamp: {value!r}") from err
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass
class RunContext:
    """Where a run keeps its files, and which services it talks to."""

    #: Folder under the artifacts dir that holds this kind of run.
    AREA: ClassVar[str] = "retrain"

    run_key: str
    settings: Settings = field(default_factory=load_settings)
    warehouse: Warehouse | None = None

    @property
    def run_dir(self) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.run_key)
        path = self.settings.artifacts_dir / self.AREA / safe
        path.mkdir(parents=True, exist_ok=True)
        return path

    def wh(self) -> Warehouse:
        if self.warehouse is None:
            self.warehouse = Warehouse(self.settings.warehouse)
        return self.warehouse


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str))


# -- 1. extract ---------------------------------------------------------------------------------
def _window(params: RetrainParams, as_of: dt.datetime) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    """(history_start, window_start, window_end): the window ends ``label_maturity_days`` before
    ``as_of``, and features look back ``history_days`` before it, plus the longest label delay when
    the run may use delayed risk features (their windows end that delay before the event)."""
    window_end = as_of - dt.timedelta(days=params.label_maturity_days)
    window_start = window_end - dt.timedelta(days=params.window_days)
    lag = 0 if params.risk_delay == "none" else LOOKBACK_DAYS - HORIZON_DAYS
    return window_start - dt.timedelta(days=params.history_days + lag), window_start, window_end


def _write_extract(
    ctx: RunContext,
    tx: Any,
    labels: Any,
    as_of: dt.datetime,
    bounds: tuple[dt.datetime, dt.datetime, dt.datetime],
    t0: float,
    **extra: Any,
) -> dict[str, Any]:
    """The extract folder every later step reads (transactions, labels, meta.json); its meta."""
    history_start, window_start, window_end = bounds
    out = ctx.run_dir / "extract"
    out.mkdir(exist_ok=True)
    tx.to_parquet(out / "transactions.parquet", index=False)
    labels.to_parquet(out / "labels.parquet", index=False)
    meta = {
        "extract_dir": str(out),
        **extra,
        "as_of": as_of.isoformat(),
        "history_start": history_start.isoformat(),
        "window_start": window_start.isoformat(),
        "window_end": window_end.isoformat(),
        "transactions": len(tx),
        "labels": len(labels),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write_json(out / "meta.json", meta)
    log.info(
        "extracted %d transactions and %d labels for window %s..%s",
        len(tx),
        len(labels),
        window_start,
        window_end,
    )
    return meta


def extract(ctx: RunContext, params: RetrainParams) -> dict[str, Any]:
    """Pull the window (plus feature history) and the labels known by ``as_of`` from the warehouse."""
    from fraudops.features.offline import load_window

    wh = ctx.wh()
    if params.as_of:
        as_of = parse_time(params.as_of)
    else:
        newest = wh.newest_event_time()
        if newest is None:
            raise DataValidationError("the warehouse holds no transactions to train on")
        as_of = newest
    bounds = _window(params, as_of)
    t0 = time.perf_counter()
    # Labels known by as_of (not just by window_end): that is the maturity the window waited for.
    tx, labels = load_window(wh, bounds[1], bounds[2], params.history_days, labels_known_by=as_of)
    return _write_extract(ctx, tx, labels, as_of, bounds, t0)


def extract_file(
    ctx: RunContext,
    params: RetrainParams,
    path: str | Path,
    mapping: dict[str, str],
    *,
    label_time_col: str | None = None,
    label_delay_days: float = 7.0,
) -> dict[str, Any]:
    """``extract`` from a user's CSV/Parquet instead of the warehouse (``fraudops train --data``).

    The file is checked row by row as ``fraudops import`` checks it (every problem reported, nothing
    used when one row is bad). Files usually say only whether a transaction was fraud, not when
    that became known: without ``label_time_col`` each label is taken as known
    ``label_delay_days`` after its transaction (the file's own label delay, e.g. 7 days for the
    public simulated data set), so the window, its label maturity and every label-based feature
    see labels as they would have arrived. Then the same window as from the warehouse: ``as_of`` =
    the newest transaction (or the param), the window ends ``label_maturity_days`` before it.
    """
    import pandas as pd

    from fraudops.warehouse.importer import read_table
    from fraudops.warehouse.importer import validate as check_rows
    from fraudops.warehouse.schema import TRANSACTION_FIELDS

    if label_delay_days < 0:
        raise ConfigError(f"label_delay_days must be >= 0, got {label_delay_days}")
    if label_time_col is None and params.label_maturity_days < label_delay_days:
        raise ConfigError(
            f"label_maturity_days {params.label_maturity_days:g} is shorter than the file's label delay "
            f"{label_delay_days:g} days: the window's last days would have no fraud labels (and train as "
            f"genuine); set -p label_maturity_days={label_delay_days:g} or more"
        )
    t0 = time.perf_counter()
    tx, labels, errors = check_rows(read_table(path), mapping, label_time_col=label_time_col, source="file")
    if errors:
        shown = "; ".join(str(e) for e in errors[:10])
        raise DataValidationError(f"{path}: {len({e.row for e in errors})} invalid rows: {shown}")
    if labels.empty:
        raise DataValidationError(f"{path}: no labels; map the fraud flag with --map is_fraud=COLUMN")
    if label_time_col is None:
        labels["label_time"] = labels["event_time"] + pd.Timedelta(days=label_delay_days)
    for col in TRANSACTION_FIELDS:
        if col not in tx.columns:
            tx[col] = None
    tx["event_time"] = pd.to_datetime(tx["event_time"], utc=True)
    as_of = parse_time(params.as_of) if params.as_of else tx["event_time"].max().to_pydatetime()
    bounds = _window(params, as_of)
    history_start, _, window_end = bounds
    tx = tx.loc[(tx["event_time"] >= history_start) & (tx["event_time"] < window_end)]
    tx = tx[list(TRANSACTION_FIELDS)].sort_values("event_time", kind="stable").reset_index(drop=True)
    known = (labels["label_time"] <= as_of) & labels["transaction_id"].isin(set(tx["transaction_id"]))
    labels = labels.loc[known].reset_index(drop=True)
    return _write_extract(
        ctx,
        tx,
        labels,
        as_of,
        bounds,
        t0,
        source=str(path),
        label_delay_days=None if label_time_col else label_delay_days,
    )


def _load_extract(extract_dir: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    import pandas as pd

    d = Path(extract_dir)
    meta = json.loads((d / "meta.json").read_text())
    return pd.read_parquet(d / "transactions.parquet"), pd.read_parquet(d / "labels.parquet"), meta


def _training_frame(tx: Any, labels: Any, meta: dict[str, Any]) -> Any:
    """Window rows (not the history) with ``is_fraud`` = a fraud label known by ``as_of``."""
    import pandas as pd

    start = pd.Timestamp(meta["window_start"])
    frame = tx.loc[tx["event_time"] >= start].copy()
    fraud_ids = set(labels.loc[labels["is_fraud"].astype(bool), "transaction_id"])
    frame["is_fraud"] = frame["transaction_id"].isin(fraud_ids)
    return frame


# -- 2. validate --------------------------------------------------------------------------------
def validate(ctx: RunContext, params: RetrainParams, extract_meta: dict[str, Any]) -> dict[str, Any]:
    """Great Expectations on the training window; a failure saves the result and raises."""
    from fraudops.training.validation import ValidationConfig, validate_or_raise

    tx, labels, meta = _load_extract(extract_meta["extract_dir"])
    frame = _training_frame(tx, labels, meta)
    cfg = ValidationConfig(
        window_start=parse_time(meta["window_start"]),
        window_end=parse_time(meta["window_end"]),
        min_rows=params.min_rows,
        fraud_rate_min=params.fraud_rate_min,
        fraud_rate_max=params.fraud_rate_max,
    )
    path = ctx.run_dir / "validation" / "validation_result.json"
    path.parent.mkdir(exist_ok=True)
    result = validate_or_raise(frame, cfg, result_path=path)
    return {
        "validation_path": str(path),
        "success": result.success,
        "summary": result.summary,
        "rows": len(frame),
        "fraud_rate": float(frame["is_fraud"].mean()) if len(frame) else 0.0,
    }


# -- 3. features --------------------------------------------------------------------------------
def build_features(ctx: RunContext, params: RetrainParams, extract_meta: dict[str, Any]) -> dict[str, Any]:
    """Point-in-time features for the window from the feature store's offline builder, with their
    health (``features.health``): features whose source column is missing or single-valued, and
    constant ones, are dropped with a warning naming them; a feature that is not point-in-time
    (its values change when what happened after a cut is removed) fails the run."""
    from fraudops.features import FeatureSpec, build_offline
    from fraudops.features.health import feature_health, point_in_time_leaks

    tx, labels, meta = _load_extract(extract_meta["extract_dir"])
    delay = _risk_delay(params, tx, labels, meta)
    # With a curve reading, the forward folds choose among these (``features.delay``); the features
    # of every candidate are built once and the unchosen ones dropped below.
    candidates = (
        delay.candidates()
        if delay is not None and params.risk_delay == "auto" and delay.source == "curve"
        else []
    )
    offered = [d for d in candidates if d != "none"] or ([delay.delay] if delay and delay.delay else [])
    spec = FeatureSpec.default()
    for d in offered:
        extra = FeatureSpec.default(delay=d).features
        spec = FeatureSpec(spec.features + tuple(f for f in extra if f not in spec.features))
    if delay is not None:
        log.info("delayed risk features: %s", delay.note)
    t0 = time.perf_counter()
    feats = build_offline(tx, labels, spec)
    seconds = time.perf_counter() - t0
    leaks, compared = point_in_time_leaks(tx, labels, spec, full=feats)
    if leaks:
        raise DataValidationError(
            f"features not point-in-time (they change when later transactions and labels are removed, "
            f"{compared:,} events compared): {', '.join(leaks)}"
        )
    frame = _training_frame(tx, labels, meta).drop_duplicates("transaction_id")
    feats = feats.loc[frame["transaction_id"].to_numpy()]
    health = feature_health(feats, tx, spec.names)
    health = replace(health, leakage_rows_checked=compared)
    if len(candidates) > 1:
        assert delay is not None
        delay, chosen = _choose_delay_on_folds(params, delay, candidates, feats, frame, health.kept)
        health = replace(health, features=tuple(f for f in health.features if f.name in chosen))
        spec = FeatureSpec(tuple(f for f in spec.features if f[0] in chosen))
        feats = feats[spec.names]
    if not health.kept:
        raise DataValidationError(f"no informative feature left: {health.summary()}")
    if health.dropped:
        log.warning("feature health: %s", health.summary())
        spec = FeatureSpec(tuple(f for f in spec.features if f[0] in set(health.kept)))
        feats = feats[spec.names]
    out = ctx.run_dir / "features"
    out.mkdir(exist_ok=True)
    _write_json(out / "health.json", health.to_dict())
    table = feats.reset_index(drop=True)
    table["__y"] = frame["is_fraud"].astype("int8").to_numpy()
    table["__event_time"] = frame["event_time"].to_numpy()
    table["__amount"] = frame["amount"].to_numpy()
    table["__card_id"] = frame["card_id"].to_numpy()
    table["__transaction_id"] = frame["transaction_id"].to_numpy()
    table.sort_values("__event_time", kind="stable").to_parquet(out / "features.parquet", index=False)
    _write_json(out / "feature_spec.json", spec.to_dict())
    return {
        "features_path": str(out / "features.parquet"),
        "feature_spec_path": str(out / "feature_spec.json"),
        "feature_set": spec.id,
        "rows": len(table),
        "n_features": len(spec.names),
        "rows_per_s": round(len(tx) / seconds) if seconds > 0 else None,
        "health_path": str(out / "health.json"),
        "feature_health": health.summary(),
        "dropped_features": health.dropped,
        "risk_delay": None if delay is None else delay.to_dict(),
    }


def _lgbm_params(params: RetrainParams) -> Any:
    """The run's LightGBM parameters (training, and the folds that choose the risk delay)."""
    from fraudops.training import LightGBMParams

    return LightGBMParams(
        n_estimators=params.n_estimators,
        learning_rate=params.learning_rate,
        num_leaves=params.num_leaves,
        min_child_samples=params.min_child_samples,
        early_stopping_rounds=params.early_stopping_rounds,
        num_threads=params.num_threads,
        seed=params.seed,
    )


def _choose_delay_on_folds(
    params: RetrainParams,
    delay: RiskDelay,
    candidates: list[str],
    feats: Any,
    frame: Any,
    healthy: list[str],
) -> tuple[RiskDelay, set[str]]:
    """Let forward folds of the rows before the holdout pick among ``candidates`` ("none" and
    delays): LightGBM with the run's parameters on the healthy base features plus each delay's.
    Returns the updated choice and every feature name the run keeps (healthy or not)."""
    import numpy as np

    from fraudops.features.definitions import REGISTRY
    from fraudops.training import SplitConfig, time_split
    from fraudops.training.selection import compare_feature_sets

    def of(d: str | None) -> list[str]:
        return [n for n in feats.columns if REGISTRY.get(n).delay in (None, d)]

    ok = set(healthy)
    sets = {c: [n for n in of(None if c == "none" else c) if n in ok] for c in candidates}
    event_time = frame["event_time"].reset_index(drop=True)
    split = time_split(
        event_time, SplitConfig(valid_frac=params.valid_frac, holdout_frac=params.holdout_frac)
    )
    rows = np.sort(np.concatenate([split.train_idx, split.valid_idx]))
    y = frame["is_fraud"].to_numpy().astype(np.int64)
    X = feats.reset_index(drop=True).astype(np.float32).astype(np.float64)  # as served (float32)
    lgbm = _lgbm_params(params)
    try:
        choice = compare_feature_sets(
            X.iloc[rows],
            y[rows],
            event_time.iloc[rows],
            sets,
            lgbm,
            prefer=str(delay.delay),
            gap_days=min(params.label_maturity_days, params.window_days / 4.0),
            n_folds=params.search_folds,
        )
    except ValueError as err:  # no fold with frauds on both sides: the curve's choice stands
        log.warning("delayed risk features: forward folds unavailable (%s); keeping %s", err, delay.delay)
        return delay, set(of(delay.delay))
    chosen = None if choice.chosen == "none" else choice.chosen
    scores = ", ".join(f"{k} {v:.4f}" for k, v in choice.mean_ap.items())
    updated = replace(
        delay,
        delay=chosen,
        source="folds",
        fold_ap={k: round(v, 6) for k, v in choice.mean_ap.items()},
        note=f"{delay.note}; forward-fold AP ({scores}) chose {choice.chosen}",
    )
    return updated, set(of(chosen))


def _risk_delay(params: RetrainParams, tx: Any, labels: Any, meta: dict[str, Any]) -> RiskDelay | None:
    """The label delay of this run's delayed risk features (``features.delay``), or None."""
    from fraudops.features.delay import choose_risk_delay, fixed_risk_delay
    from fraudops.features.offline import times_us

    if params.risk_delay == "none":
        return None
    fraud = labels.loc[labels["is_fraud"].astype(bool)] if len(labels) else labels
    rate = len(fraud) / len(tx) if len(tx) else None
    if params.risk_delay != "auto":
        return fixed_risk_delay(
            params.risk_delay, coverage=params.risk_delay_coverage, global_fraud_rate=rate
        )
    file_delay = meta.get("label_delay_days")
    return choose_risk_delay(
        times_us(tx["event_time"]) if len(tx) else [],
        times_us(fraud["event_time"]) if len(fraud) else [],
        times_us(fraud["label_time"]) if len(fraud) else [],
        as_of_us=to_us(parse_time(meta["as_of"])),
        coverage=params.risk_delay_coverage,
        fallback_days=float(file_delay) if file_delay is not None else params.label_maturity_days,
    )


def _load_features(features_meta: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any, dict[str, Any]]:
    import numpy as np
    import pandas as pd

    table = pd.read_parquet(features_meta["features_path"])
    spec = json.loads(Path(features_meta["feature_spec_path"]).read_text())
    names = [f["name"] if isinstance(f, dict) else f[0] for f in spec["features"]]
    # Serving feeds ONNX Runtime float32 vectors: train and evaluate on exactly those values, so a
    # tree threshold can never fall between a value and its float32 rounding.
    X = table[names].astype(np.float32).astype(np.float64)
    return (
        X,
        table["__y"].to_numpy(),
        table["__event_time"],
        table["__amount"].to_numpy(),
        table["__card_id"].to_numpy(),
        spec,
    )


def _feature_health(features_meta: dict[str, Any]) -> dict[str, Any] | None:
    path = features_meta.get("health_path")
    return json.loads(Path(path).read_text()) if path and Path(path).exists() else None


# -- 4. train -----------------------------------------------------------------------------------
def train(ctx: RunContext, params: RetrainParams, features_meta: dict[str, Any]) -> dict[str, Any]:
    """Fit the candidate family and the other one as baseline on the same time-ordered split."""
    from fraudops.training import LogRegParams, SplitConfig, time_split, train_model
    from fraudops.training.persist import save_native

    X, y, event_time, _, _, _ = _load_features(features_meta)
    split = time_split(
        event_time, SplitConfig(valid_frac=params.valid_frac, holdout_frac=params.holdout_frac)
    )
    lgbm = _lgbm_params(params)
    out: dict[str, Any] = {"split": split.summary(), "models": {}}
    search = None
    if params.search_minutes > 0 and params.model_family == "lightgbm":
        import numpy as np

        from fraudops.training.selection import search_lightgbm

        # The rows before the holdout, so the holdout stays untouched by the choice. The gap is the
        # label maturity, at most a quarter of the window (a 14-day window with a 7-day maturity
        # would leave the first fold almost nothing to learn from).
        rows = np.sort(np.concatenate([split.train_idx, split.valid_idx]))
        search = search_lightgbm(
            X.iloc[rows],
            y[rows],
            event_time.iloc[rows],
            lgbm,
            budget_s=params.search_minutes * 60.0,
            gap_days=min(params.label_maturity_days, params.window_days / 4.0),
            n_folds=params.search_folds,
            seed=params.seed,
        )
        lgbm = search.params
        out["search"] = search.to_dict()
    for family in MODEL_FAMILIES:
        t0 = time.perf_counter()
        result = train_model(
            X,
            y,
            event_time,
            family=family,
            split=split,
            lightgbm_params=lgbm,
            logreg_params=LogRegParams(seed=params.seed),
        )
        path = save_native(result.model, family, ctx.run_dir / "models" / family)
        role = "candidate" if family == params.model_family else "baseline"
        flat = {k: v for k, v in result.params.items() if isinstance(v, int | float | str)}
        if search is not None and family == "lightgbm":
            flat.update(search.flat())
        flat.update(_risk_delay_params(features_meta.get("risk_delay")))
        out["models"][role] = {
            "family": family,
            "path": str(path),
            "params": flat,
            "train_seconds": round(time.perf_counter() - t0, 2),
        }
    _write_json(ctx.run_dir / "models" / "train.json", out)
    return out


def _risk_delay_params(delay: dict[str, Any] | None) -> dict[str, str]:
    """The delayed risk features' choice as MLflow parameters (logged with the registered model)."""
    if delay is None:
        return {"risk_delay": "none"}
    out = {
        "risk_delay": str(delay["delay"] or "none"),
        "risk_delay_source": str(delay["source"]),
        "risk_delay_curve": str(delay.get("curve_delay")),
    }
    if delay.get("fold_ap"):
        out["risk_delay_fold_ap"] = ",".join(f"{k}:{v:.4f}" for k, v in delay["fold_ap"].items())
    return out


# -- 5. evaluate --------------------------------------------------------------------------------
def evaluate(
    ctx: RunContext, params: RetrainParams, features_meta: dict[str, Any], train_meta: dict[str, Any]
) -> dict[str, Any]:
    """Holdout metrics and plots for candidate and baseline; the threshold comes from validation."""
    import numpy as np

    from fraudops.training import SplitConfig, threshold_at_fpr, time_split
    from fraudops.training import evaluate as evaluate_scores
    from fraudops.training.evaluate import feature_importance
    from fraudops.training.persist import load_native

    X, y, event_time, amount, card_id, _ = _load_features(features_meta)
    split = time_split(
        event_time, SplitConfig(valid_frac=params.valid_frac, holdout_frac=params.holdout_frac)
    )
    Xm = np.asarray(X, dtype=np.float64)
    hold = split.holdout_idx
    out: dict[str, Any] = {}
    for role, info in train_meta["models"].items():
        model, family = load_native(info["path"])
        valid_scores = model.predict_proba(Xm[split.valid_idx])[:, 1]
        threshold = float(threshold_at_fpr(y[split.valid_idx], valid_scores, params.target_fpr))
        scores = model.predict_proba(Xm[hold])[:, 1]
        res = evaluate_scores(
            y[hold],
            scores,
            amount=amount[hold],
            card_id=card_id[hold],
            event_time=event_time.iloc[hold],
            threshold=threshold,
            alert_budget=params.alert_budget,
            plots_dir=ctx.run_dir / "plots" / role,
            title=f"{role} ({family})",
        )
        importance = feature_importance(model, list(X.columns))
        importance_path = ctx.run_dir / "plots" / role / f"feature_importance_{role}.json"
        _write_json(importance_path, importance)
        out[role] = {
            "family": family,
            "threshold": threshold,
            "metrics": {k: float(v) for k, v in res.metrics.items()},
            "plots": [str(p) for p in res.plots.values()] + [str(importance_path)],
            "top_features": dict(list(importance.items())[:10]),
        }
    cand, base = out["candidate"]["metrics"], out["baseline"]["metrics"]
    out["ap_lift_vs_baseline"] = cand["average_precision"] - base["average_precision"]
    _write_json(ctx.run_dir / "evaluation.json", out)
    log.info("holdout AP candidate=%.4f baseline=%.4f", cand["average_precision"], base["average_precision"])
    return out


# -- 6. package ---------------------------------------------------------------------------------
def package(
    ctx: RunContext,
    params: RetrainParams,
    features_meta: dict[str, Any],
    train_meta: dict[str, Any],
    eval_meta: dict[str, Any],
    validate_meta: dict[str, Any],
    extract_meta: dict[str, Any],
) -> dict[str, Any]:
    """ONNX bundle of the candidate (parity-checked), then verified as serving would load it."""
    from fraudops.training import SplitConfig, build_artifact, time_split, verify_artifact
    from fraudops.training.persist import load_native

    X, _, event_time, _, _, spec = _load_features(features_meta)
    split = time_split(
        event_time, SplitConfig(valid_frac=params.valid_frac, holdout_frac=params.holdout_frac)
    )
    model, family = load_native(train_meta["models"]["candidate"]["path"])
    candidate = eval_meta["candidate"]
    metrics = dict(candidate["metrics"])
    metrics.update({f"baseline_{k}": v for k, v in eval_meta["baseline"]["metrics"].items()})
    validation = json.loads(Path(validate_meta["validation_path"]).read_text())
    out_dir = ctx.run_dir / "artifact"
    info = build_artifact(
        model,
        family=family,
        out_dir=out_dir,
        feature_spec=spec,
        X_reference=X.iloc[split.train_idx],
        X_holdout=X.iloc[split.holdout_idx],
        metrics=metrics,
        validation_result=validation,
        decision_threshold=candidate["threshold"],
        latency_budget_ms=params.latency_budget_ms,
        data_window=(extract_meta["window_start"], extract_meta["window_end"]),
        extra_manifest={
            "as_of": extract_meta["as_of"],
            "retrain_params": params.to_dict(),
            "feature_health": _feature_health(features_meta),
            "risk_delay": features_meta.get("risk_delay"),
        },
        seed=params.seed,
    )
    report = verify_artifact(out_dir)
    return {
        "artifact_dir": str(out_dir),
        "feature_set": info.feature_spec_id,
        "parity_max_abs_diff": info.parity_max_abs_diff,
        "latency_p50_ms": report.latency_p50_ms,
        "latency_p99_ms": report.latency_p99_ms,
        "decision_threshold": candidate["threshold"],
    }


# -- 7. register --------------------------------------------------------------------------------
def register(
    ctx: RunContext,
    params: RetrainParams,
    package_meta: dict[str, Any],
    eval_meta: dict[str, Any],
    extract_meta: dict[str, Any],
    train_meta: dict[str, Any],
    run_name: str | None = None,
) -> dict[str, Any]:
    """Register the verified bundle as a new MLflow model version, tagged for traceability."""
    from fraudops.registry import register_artifact

    model_name = params.model_name or ctx.settings.mlflow.model_name
    existing = _version_of_run(ctx, model_name)
    if existing is not None:
        # A retry after the version was created (e.g. the worker died before XCom was written):
        # hand back that version instead of registering the same model twice.
        log.info("run %s already registered %s version %s", ctx.run_key, model_name, existing["version"])
        return existing
    plots = [p for role in ("candidate", "baseline") for p in eval_meta[role]["plots"]]
    cand = train_meta["models"]["candidate"]
    reg = register_artifact(
        package_meta["artifact_dir"],
        tracking_uri=ctx.settings.mlflow.tracking_uri,
        model_name=model_name,
        params={
            **cand["params"],
            "window_days": params.window_days,
            "label_maturity_days": params.label_maturity_days,
        },
        tags={
            "data_window": f"{extract_meta['window_start']}/{extract_meta['window_end']}",
            "as_of": extract_meta["as_of"],
            "retrain_run": ctx.run_key,
            "baseline_ap": f"{eval_meta['baseline']['metrics']['average_precision']:.6f}",
        },
        plots=plots,
        experiment=ctx.settings.mlflow.experiment,
        run_name=run_name or f"retrain {ctx.run_key}",
    )
    return {
        "model_name": reg.name,
        "version": reg.version,
        "run_id": reg.run_id,
        "model_uri": reg.model_uri,
        "average_precision": eval_meta["candidate"]["metrics"]["average_precision"],
        "baseline_average_precision": eval_meta["baseline"]["metrics"]["average_precision"],
        "feature_set": package_meta["feature_set"],
    }


def _version_of_run(ctx: RunContext, model_name: str) -> dict[str, Any] | None:
    """The model version this run registered already, if any (found by its ``retrain_run`` tag)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=ctx.settings.mlflow.tracking_uri)
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except mlflow.exceptions.MlflowException:
        return None
    for mv in versions:
        if mv.tags.get("retrain_run") == ctx.run_key:
            return {
                "model_name": model_name,
                "version": str(mv.version),
                "run_id": mv.run_id,
                "model_uri": f"models:/{model_name}/{mv.version}",
                "average_precision": float(mv.tags.get("ap", "nan")),
                "baseline_average_precision": float(mv.tags.get("baseline_ap", "nan")),
                "feature_set": mv.tags.get("feature_set", ""),
            }
    return None


def run_all(
    ctx: RunContext,
    params: RetrainParams,
    *,
    extract_meta: dict[str, Any] | None = None,
    register_model: bool = True,
) -> dict[str, Any]:
    """All steps in one process (``fraudops train``); returns every step's output. With
    ``extract_meta`` (``extract_file``) the warehouse is not touched; ``register_model=False`` stops
    at the verified bundle (no MLflow needed)."""
    steps: dict[str, Any] = {}
    steps["extract"] = extract_meta if extract_meta is not None else extract(ctx, params)
    steps["validate"] = validate(ctx, params, steps["extract"])
    steps["features"] = build_features(ctx, params, steps["extract"])
    steps["train"] = train(ctx, params, steps["features"])
    steps["evaluate"] = evaluate(ctx, params, steps["features"], steps["train"])
    steps["package"] = package(
        ctx, params, steps["features"], steps["train"], steps["evaluate"], steps["validate"], steps["extract"]
    )
    if register_model:
        steps["register"] = register(
            ctx, params, steps["package"], steps["evaluate"], steps["extract"], steps["train"]
        )
    return steps

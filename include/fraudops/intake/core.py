"""Model intake: an uploaded model becomes a candidate exactly like a retrained one (issue #19).

``run_intake`` takes a file and the registered features the model reads, in order, and:

1. **format**: identifies the file from its bytes (ONNX, LightGBM text, XGBoost JSON/UBJ, skops);
   pickle/joblib and other unsafe or unknown files are refused with how to save the model safely;
2. **features**: resolves the names against the feature registry (unknown, retired or
   version-mismatched features are refused, all named at once);
3. **conversion**: loads the native model (boosters from their own formats; skops with every type
   it would create checked first), checks it is a binary classifier reading that many features,
   and converts it to ONNX (onnxmltools, skl2onnx);
4. **screen**: refuses external data, operators outside the allow-list, subgraphs; gives the
   graph the service's interface (``features`` in, ``probabilities`` [N, 2] out);
5. **sample**: builds the features of the newest ``sample_days`` of warehouse events, point in
   time, as the offline store does for training;
6. **parity**: native and ONNX probabilities on that sample (max difference ≤ ``max_parity_diff``;
   an ONNX upload has no native model: its outputs must be finite probabilities);
7. **threshold**: the score that flags the policy's alert budget of that traffic, with what the
   labels known so far say about it (the evidence the bundle carries);
8. **package** as ``fraud_retrain`` does (manifest with digests, feature spec, reference profile);
9. **verify** in a resource-limited child process: what the scoring service will load, including
   single-row p99 latency against the SLA;
10. **register** in MLflow with the uploader as author (an upload of the same bytes and features
    returns the version registered before), then
11. **emit** the ``fraudops_candidate`` Asset through Airflow's REST API, so ``fraud_release``
    takes it from there (not twice: an event for that version already there is reused).

Any refusal ends the run with the failed check and its reason; nothing is registered before step
10, so a refused upload registers nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudops.config import Settings, load_settings
from fraudops.exceptions import ArtifactError, FeatureSpecError, FraudopsError, IntakeError, PermanentError
from fraudops.intake import formats
from fraudops.intake.onnx_graph import conform, screen

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from fraudops.clients.airflow import AirflowClient
    from fraudops.features.spec import FeatureSpec
    from fraudops.warehouse import Warehouse

log = logging.getLogger(__name__)

CANDIDATE_ASSET = "fraudops_candidate"
#: The checks in the order ``run_intake`` passes them.
STAGES = (
    "format",
    "features",
    "conversion",
    "screen",
    "parity",
    "threshold",
    "package",
    "verify",
    "register",
    "emit",
)
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_FEATURE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:@v?(\d+))?$")
_AUTHOR = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")


@dataclass(frozen=True)
class IntakeRequest:
    """One upload. ``features``: registered feature names in the model's input order (``name`` for
    the active version, ``name@vN`` to pin one)."""

    path: Path
    features: tuple[str, ...]
    author: str
    model_name: str | None = None
    description: str = ""
    #: Days of the newest warehouse events the parity, threshold and reference use.
    sample_days: float = 2.0
    sample_rows: int = 5_000
    #: Single-row p99 budget (the same default as a retrained model's).
    latency_budget_ms: float = 2.0
    #: Share of events the served threshold flags (the release policy's default budget).
    alert_budget: float = 0.01
    max_bytes: int = 256 * 2**20
    max_parity_diff: float = 1e-4
    emit: bool = True


@dataclass
class IntakeCheck:
    name: str
    passed: bool
    detail: str


@dataclass
class IntakeReport:
    """What intake did: every check in order, and on success the registered version."""

    file: str
    author: str
    checks: list[IntakeCheck] = field(default_factory=list)
    format: str | None = None
    sha256: str | None = None
    feature_spec_id: str | None = None
    artifact_dir: str | None = None
    model_name: str | None = None
    version: str | None = None
    asset_event: str | None = None
    error: str | None = None
    #: The failure was a service's (warehouse, MLflow, Airflow), not the upload's: try again later.
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.version is not None

    def passed(self, name: str, detail: str) -> None:
        self.checks.append(IntakeCheck(name, True, detail))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class _Model:
    onx: onnx.ModelProto
    native: Any  # a callable float32 [N, n] → P(fraud) [N], or None for an ONNX upload
    n_features: int
    detail: str


def parse_features(names: tuple[str, ...] | list[str]) -> FeatureSpec:
    """The spec of ``names`` (``name`` or ``name@vN``) against the registry, every problem named."""
    from fraudops.features.definitions import REGISTRY
    from fraudops.features.spec import FeatureSpec, resolve

    if not names:
        raise IntakeError("features", "name the registered features the model reads, in input order")
    pairs: list[tuple[str, int]] = []
    problems: list[str] = []
    for raw in names:
        m = _FEATURE.match(raw.strip())
        if not m:
            problems.append(f"{raw!r} is not a feature name")
            continue
        name, version = m.group(1), m.group(2)
        found = REGISTRY.versions(name)
        if not found:
            problems.append(f"{name}: unknown (no such feature in the registry)")
            continue
        pairs.append((name, int(version) if version else REGISTRY.get(name).version))
    if problems:
        raise IntakeError("features", "; ".join(problems))
    try:
        spec = FeatureSpec(tuple(pairs))
        resolve(spec)
    except FeatureSpecError as err:
        raise IntakeError("features", str(err)) from err
    return spec


def _binary(check: bool, what: str) -> None:
    if not check:
        raise IntakeError("objective", f"{what}: intake takes binary fraud classifiers (P(fraud) per event)")


def _load_lightgbm(path: Path) -> _Model:
    import lightgbm as lgb

    from fraudops.training.package import to_onnx

    try:
        booster = lgb.Booster(model_file=str(path))
    except Exception as err:
        raise IntakeError("format", f"the LightGBM model does not load: {err}") from err
    objective = str(booster.dump_model().get("objective", ""))
    _binary(objective.startswith(("binary", "cross_entropy")), f"objective {objective!r}")
    n = int(booster.num_feature())
    try:
        onx = to_onnx(booster, "lightgbm", n)
    except Exception as err:
        raise IntakeError("conversion", f"LightGBM → ONNX failed: {err}") from err
    return _Model(onx, lambda X: booster.predict(X), n, f"LightGBM booster, {booster.num_trees()} trees")


def _load_xgboost(path: Path) -> _Model:
    import json

    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    from fraudops.training.package import INPUT_NAME

    try:
        booster = xgb.Booster(model_file=str(path))
    except Exception as err:
        raise IntakeError("format", f"the XGBoost model does not load: {err}") from err
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    _binary(objective == "binary:logistic", f"objective {objective!r}")
    n = int(booster.num_features())
    try:
        onx = onnxmltools.convert_xgboost(booster, initial_types=[(INPUT_NAME, FloatTensorType([None, n]))])
    except Exception as err:
        raise IntakeError("conversion", f"XGBoost → ONNX failed: {err}") from err
    names = booster.feature_names

    def native(X: np.ndarray) -> np.ndarray:
        return booster.predict(xgb.DMatrix(X, feature_names=names))

    return _Model(onx, native, n, f"XGBoost booster, {booster.num_boosted_rounds()} rounds")


def _load_skops(path: Path) -> _Model:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    from fraudops.training.package import INPUT_NAME

    model = formats.load_skops(path)
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    classes = list(getattr(model, "classes_", []))
    _binary(
        hasattr(model, "predict_proba") and len(classes) == 2,
        f"{type(model).__name__} with classes {classes}",
    )
    n = getattr(model, "n_features_in_", None)
    if n is None:
        raise IntakeError(
            "conversion", f"{type(model).__name__} does not say how many features it reads (fit it first)"
        )
    try:
        onx = convert_sklearn(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, int(n)]))],
            options={id(final): {"zipmap": False}},
        )
    except Exception as err:
        raise IntakeError(
            "conversion", f"scikit-learn → ONNX failed for {type(model).__name__}: {err}"
        ) from err
    return _Model(
        onx,
        lambda X: model.predict_proba(X.astype("float64"))[:, 1],
        int(n),
        f"scikit-learn {type(model).__name__}",
    )


def _load_onnx(path: Path) -> _Model:
    import onnx

    try:
        onx = onnx.load_model_from_string(path.read_bytes())
    except Exception as err:
        raise IntakeError("format", f"the ONNX file does not parse: {err}") from err
    inputs = [i for i in onx.graph.input if i.name not in {t.name for t in onx.graph.initializer}]
    dims = inputs[0].type.tensor_type.shape.dim if len(inputs) == 1 else []
    n = dims[1].dim_value if len(dims) == 2 and dims[1].HasField("dim_value") else 0
    return _Model(
        onx, None, int(n), f"ONNX, opsets {[(o.domain or 'ai.onnx', o.version) for o in onx.opset_import]}"
    )


_LOADERS = {
    formats.LIGHTGBM: _load_lightgbm,
    formats.XGBOOST: _load_xgboost,
    formats.SKOPS: _load_skops,
    formats.ONNX: _load_onnx,
}


@dataclass
class _Sample:
    X: Any  # DataFrame, spec order, float32-rounded
    y: np.ndarray
    start: dt.datetime
    end: dt.datetime


def _sample(wh: Warehouse, spec: FeatureSpec, days: float, rows: int) -> _Sample:
    import numpy as np

    from fraudops.features.definitions import families_for, lookback_days
    from fraudops.features.offline import build_offline, load_window

    newest = wh.newest_event_time()
    if newest is None:
        raise IntakeError("sample", "the warehouse holds no events to check the model on")
    end = newest + dt.timedelta(microseconds=1)
    start = end - dt.timedelta(days=days)
    tx, labels = load_window(wh, start, end, lookback_days(families_for(spec.names)))
    feats = build_offline(tx, labels, spec)
    recent = tx.loc[tx["event_time"] >= start].sort_values("event_time")["transaction_id"].to_numpy()
    if len(recent) == 0:
        raise IntakeError("sample", f"no events in the {days:g} days before {newest.isoformat()}")
    recent = recent[-rows:]
    X = feats.loc[recent, spec.names].astype(np.float32)
    fraud = set(labels.loc[labels["is_fraud"].astype(bool), "transaction_id"])
    y = np.fromiter((t in fraud for t in recent), dtype=np.int64, count=len(recent))
    return _Sample(X, y, start, newest)


def _threshold_evidence(scores: np.ndarray, y: np.ndarray, budget: float) -> tuple[float, dict[str, Any]]:
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    # The lowest score whose "score >= threshold" flags at most the budget (tied scores move it up).
    ordered = np.sort(scores)
    values = np.unique(ordered)
    share = (len(ordered) - np.searchsorted(ordered, values, side="left")) / len(ordered)
    within = values[share <= budget]
    threshold = float(within[0]) if len(within) else float(np.nextafter(values[-1], np.inf))
    flagged = scores >= threshold
    evidence: dict[str, Any] = {
        "alert_budget": budget,
        "threshold": threshold,
        "events": len(scores),
        "flagged_share": float(flagged.mean()),
        "frauds_known": int(y.sum()),
    }
    if 0 < y.sum() < len(y):
        evidence.update(
            average_precision=float(average_precision_score(y, scores)),
            roc_auc=float(roc_auc_score(y, scores)),
            recall_at_threshold=float((flagged & (y == 1)).sum() / y.sum()),
            precision_at_threshold=float((flagged & (y == 1)).sum() / max(1, flagged.sum())),
        )
    return threshold, evidence


def _registered(uri: str, model_name: str, sha: str, spec_id: str) -> str | None:
    """The version an earlier intake of the same bytes and features registered, if any."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    try:
        versions = client.search_model_versions(f"name = '{model_name}' and tag.upload_sha256 = '{sha}'")
    except mlflow.exceptions.MlflowException:
        return None
    for mv in versions:
        if mv.tags.get("feature_set") == spec_id:
            return str(mv.version)
    return None


def emit_candidate(airflow: AirflowClient, model_name: str, version: str, extra: dict[str, Any]) -> str:
    """Post a ``fraudops_candidate`` Asset event for ``model_name`` v``version`` unless one is there
    already (a retry after a lost answer must not start a second release). Returns its id."""
    assets = airflow.request("GET", "/assets", params={"name_pattern": CANDIDATE_ASSET, "limit": 100})
    ids = [a["id"] for a in assets.get("assets", []) if a.get("name") == CANDIDATE_ASSET]
    if not ids:
        raise IntakeError("emit", f"Airflow has no {CANDIDATE_ASSET} Asset (is fraud_release's DAG parsed?)")
    events = airflow.request(
        "GET", "/assets/events", params={"asset_id": ids[0], "order_by": "-timestamp", "limit": 100}
    )
    for ev in events.get("asset_events", []):
        e = ev.get("extra") or {}
        if str(e.get("model_name")) == model_name and str(e.get("version")) == version:
            return str(ev["id"])
    body = {"asset_id": ids[0], "extra": {"model_name": model_name, "version": version, **extra}}
    created = airflow.request("POST", "/assets/events", json=body)
    return str(created["id"])


def run_intake(
    req: IntakeRequest,
    settings: Settings | None = None,
    *,
    warehouse: Warehouse | None = None,
    airflow: AirflowClient | None = None,
) -> IntakeReport:
    """Take ``req`` through every check; returns the report (``report.ok`` when registered)."""
    import numpy as np

    from fraudops.training.package import new_session, sha256_file, write_bundle

    settings = settings or load_settings()
    report = IntakeReport(file=str(req.path), author=req.author)
    try:
        if not _AUTHOR.match(req.author):
            raise IntakeError("author", f"author {req.author!r} is not a user name")
        if req.model_name is not None and not _MODEL_NAME.match(req.model_name):
            raise IntakeError("model_name", f"{req.model_name!r} is not a registered-model name")
        detected = formats.detect(Path(req.path), req.max_bytes)
        report.format, report.sha256 = detected.format, sha256_file(Path(req.path))
        report.passed("format", f"{detected.detail}, {Path(req.path).stat().st_size:,} bytes")

        spec = parse_features(req.features)
        report.feature_spec_id = spec.id
        report.passed("features", f"{len(spec)} registered features ({spec.id})")

        model = _LOADERS[detected.format](Path(req.path))
        if model.n_features not in (0, len(spec)) or (model.native is not None and model.n_features == 0):
            raise IntakeError(
                "features", f"the model reads {model.n_features} features, the upload names {len(spec)}"
            )
        ops = screen(model.onx)
        onx = conform(model.onx, len(spec))
        report.passed("conversion", f"{model.detail} → ONNX")
        report.passed("screen", f"{sum(ops.values())} operators, all allowed; no external data")

        from fraudops.warehouse import Warehouse

        wh = warehouse or Warehouse(settings.warehouse)
        sample = _sample(wh, spec, req.sample_days, req.sample_rows)
        X32 = sample.X.to_numpy(dtype=np.float32)
        try:
            session = new_session(onx.SerializeToString())
            out = session.run(["probabilities"], {"features": X32})[0]
        except Exception as err:
            raise IntakeError("parity", f"ONNX Runtime cannot run the model: {err}") from err
        if out.shape != (len(X32), 2):
            raise IntakeError(
                "parity", f"the model returned shape {out.shape} for {len(X32)} rows, not [N, 2]"
            )
        scores = np.asarray(out[:, 1], dtype=np.float64)
        if not np.isfinite(scores).all() or scores.min() < 0.0 or scores.max() > 1.0:
            raise IntakeError(
                "parity", "the model returns values that are not probabilities (NaN, ±inf or outside [0, 1])"
            )
        parity: float | None = None
        if model.native is not None:
            native = np.asarray(model.native(X32), dtype=np.float64)
            parity = float(np.max(np.abs(native - scores)))
            if parity > req.max_parity_diff:
                raise IntakeError(
                    "parity",
                    f"ONNX and native probabilities differ by {parity:.3g} (> {req.max_parity_diff:g})",
                )
        report.passed(
            "parity",
            (
                f"max |native − ONNX| {parity:.2e}"
                if parity is not None
                else "ONNX upload: probabilities finite in [0, 1]"
            )
            + f" on {len(X32):,} events of the last {req.sample_days:g} days",
        )

        threshold, evidence = _threshold_evidence(scores, sample.y, req.alert_budget)
        report.passed(
            "threshold",
            f"{threshold:.6g} flags {evidence['flagged_share']:.2%} of recent events "
            f"(budget {req.alert_budget:.2%}); "
            + (
                f"AP {evidence['average_precision']:.3f} on {evidence['frauds_known']} frauds known so far"
                if "average_precision" in evidence
                else "no fraud label known in the sample yet"
            ),
        )

        model_name = req.model_name or settings.mlflow.model_name
        out_dir = settings.state_dir / "artifacts" / "intake" / f"{report.sha256[:16]}-{spec.id}"
        shutil.rmtree(out_dir, ignore_errors=True)
        metrics: dict[str, float] = {
            k: evidence[k] for k in ("average_precision", "roc_auc") if k in evidence
        }
        write_bundle(
            onx,
            family=f"upload-{detected.format}",
            out_dir=out_dir,
            feature_spec=spec.to_dict(),
            X_reference=sample.X,
            parity=parity,
            metrics=metrics,
            decision_threshold=threshold,
            latency_budget_ms=req.latency_budget_ms,
            data_window=(sample.start.isoformat(), sample.end.isoformat()),
            extra_manifest={
                "source": "upload",
                "author": req.author,
                "upload_file": Path(req.path).name,
                "upload_format": detected.format,
                "upload_sha256": report.sha256,
                "description": req.description,
                "threshold_evidence": evidence,
                "operators": ops,
            },
        )
        report.artifact_dir = str(out_dir)
        report.passed("package", f"bundle {out_dir.name}")

        from fraudops.training.verifier import verify_isolated

        try:
            verified = verify_isolated(out_dir)
        except ArtifactError as err:
            raise IntakeError("verify", str(err)) from err
        report.passed(
            "verify",
            f"loads as the scoring service loads it; single-row p99 {verified.latency_p99_ms:.3f} ms "
            f"(SLA {req.latency_budget_ms:g} ms)",
        )

        from fraudops.registry import register_artifact

        uri = settings.mlflow.tracking_uri
        version = _registered(uri, model_name, report.sha256, spec.id)
        if version is None:
            reg = register_artifact(
                out_dir,
                tracking_uri=uri,
                model_name=model_name,
                params={"upload_format": detected.format, "upload_file": Path(req.path).name},
                tags={
                    "source": "upload",
                    "author": req.author,
                    "upload_sha256": report.sha256,
                    "upload_format": detected.format,
                    "description": req.description[:500],
                },
                experiment=settings.mlflow.experiment,
                run_name=f"upload {Path(req.path).name} by {req.author}",
            )
            version = reg.version
            report.passed("register", f"{model_name} version {version} (author {req.author})")
        else:
            report.passed(
                "register", f"{model_name} version {version}: these bytes and features were registered before"
            )
        report.model_name, report.version = model_name, version

        if req.emit:
            if airflow is None:
                raise IntakeError("emit", "no Airflow to emit the candidate Asset to")
            report.asset_event = emit_candidate(
                airflow,
                model_name,
                version,
                {"feature_set": spec.id, "author": req.author, "source": "upload"},
            )
            report.passed(
                "emit", f"{CANDIDATE_ASSET} event {report.asset_event}: fraud_release takes it from here"
            )
    except IntakeError as err:
        report.checks.append(IntakeCheck(err.check, False, err.reason))
        report.error = str(err)
        log.warning("intake of %s refused: %s", req.path, err)
    except FraudopsError as err:
        # A service the step needs failed (warehouse, MLflow, Airflow): not the upload's fault, and
        # worth trying again (what was registered is found again; the event is not posted twice).
        stage = STAGES[min(len(report.checks), len(STAGES) - 1)]
        report.checks.append(IntakeCheck(stage, False, str(err)))
        report.error = f"{stage}: {err}"
        report.retryable = not isinstance(err, PermanentError)
        log.warning("intake of %s failed at %s: %s", req.path, stage, err)
    return report

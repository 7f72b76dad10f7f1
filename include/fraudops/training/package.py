"""Model packaging: one self-describing directory the registry stores and the scoring service loads.

Why a bundle rather than a pickled model: the serving path must never unpickle (a pickle is code,
tied to library versions), and a model is only usable together with the exact features it was
trained on. The bundle holds:

* ``model.onnx``: float input ``features`` of shape [None, n_features], output ``probabilities``
  [None, 2] (zipmap off, so it is a plain tensor);
* ``feature_spec.json``: the feature (name, version) list, in input order, with its id;
* ``input_schema.json``: input/output names, dtype, shape and feature order;
* ``reference_profile.parquet``: a capped sample of training feature rows with their scores, the
  reference later drift checks (Evidently) compare live traffic with;
* ``validation_result.json`` (when given), ``metrics.json``;
* ``manifest.json``: sha256 of every file, creation time, family, opsets, feature-spec id,
  decision threshold and latency budget.

``build_artifact`` refuses to write a bundle whose ONNX probabilities differ from the native model
by more than ``max_parity_diff`` on the holdout. ``verify_artifact`` re-checks a bundle from disk in
a fresh ONNX Runtime session (hashes, spec, outputs, single-row p99 latency) before anyone serves
it. ``OnnxScorer`` is the loader the scoring service uses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudops.exceptions import ArtifactError, LatencyBudgetError

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import pandas as pd

    from fraudops.training.validation import ValidationResult

log = logging.getLogger(__name__)

INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
SCORE_COLUMN = "score"
ARTIFACT_FORMAT = "fraudops-onnx/1"

MODEL_FILE = "model.onnx"
FEATURE_SPEC_FILE = "feature_spec.json"
INPUT_SCHEMA_FILE = "input_schema.json"
REFERENCE_FILE = "reference_profile.parquet"
VALIDATION_FILE = "validation_result.json"
METRICS_FILE = "metrics.json"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class ArtifactInfo:
    """What ``build_artifact`` wrote."""

    path: Path
    family: str
    n_features: int
    feature_spec_id: str
    parity_max_abs_diff: float | None
    onnx_opsets: dict[str, int]
    files: dict[str, str] = field(default_factory=dict)  # name → sha256


@dataclass(frozen=True)
class VerificationReport:
    """What ``verify_artifact`` measured on a bundle that passed every check."""

    path: Path
    n_features: int
    feature_spec_id: str
    reference_rows: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_budget_ms: float
    score_min: float
    score_max: float
    #: Latency rounds measured (the best counts).
    rounds: int = 1


def feature_names_from_spec(feature_spec: Mapping[str, Any]) -> list[str]:
    """Feature column names, in model input order, from a ``FeatureSpec.to_dict()``-style dict."""
    try:
        features = feature_spec["features"]
        return [str(f["name"]) if isinstance(f, Mapping) else str(f[0]) for f in features]
    except (KeyError, TypeError, IndexError) as err:
        raise ArtifactError(f"feature spec must have a 'features' list of (name, version): {err}") from err


def _spec_id(feature_spec: Mapping[str, Any]) -> str:
    spec_id = feature_spec.get("id")
    if not spec_id:
        raise ArtifactError("feature spec has no 'id'")
    return str(spec_id)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def float32_exact_booster(model: Any) -> Any:
    """The LightGBM model with every split threshold moved down to the nearest float32.

    ONNX tree ensembles store thresholds as float32; LightGBM's are doubles, often the midpoint of
    two adjacent float32 feature values, which rounds *up* onto the larger value. For float32
    inputs x, ``x <= t`` equals ``x <= floor32(t)`` exactly, so this keeps LightGBM's decisions on
    the vectors serving sends and makes the float32 ONNX copy take the very same branches. Only
    the best iteration's trees are kept (early stopping leaves later trees in the booster).
    """
    import lightgbm as lgb
    import numpy as np

    booster = getattr(model, "booster_", model)
    best = getattr(model, "best_iteration_", None) or None
    lines = booster.model_to_string(num_iteration=best).split("\n")
    categorical = False
    for i, line in enumerate(lines):
        if line.startswith("Tree="):
            categorical = False
        elif line.startswith("decision_type="):
            categorical = any(int(v) & 1 for v in line.split("=", 1)[1].split())
        elif line.startswith("threshold=") and not categorical:
            values = np.array(line.split("=", 1)[1].split(), dtype=np.float64)
            f32 = values.astype(np.float32)
            up = f32.astype(np.float64) > values
            f32[up] = np.nextafter(f32[up], np.float32(-np.inf))
            lines[i] = "threshold=" + " ".join(repr(float(v)) for v in f32.astype(np.float64))
    # tree_sizes (byte offsets for parallel parsing) no longer match: LightGBM parses without it.
    return lgb.Booster(model_str="\n".join(x for x in lines if not x.startswith("tree_sizes=")))


def to_onnx(model: Any, family: str, n_features: int) -> onnx.ModelProto:
    """Convert a fitted model to ONNX with input ``features`` [None, n] float32 and no zipmap."""
    if family == "lightgbm":
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        model = float32_exact_booster(model)
        onx = onnxmltools.convert_lightgbm(
            model, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))], zipmap=False
        )
    elif family == "logreg":
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType as SklFloatTensorType

        onx = convert_sklearn(
            model,
            initial_types=[(INPUT_NAME, SklFloatTensorType([None, n_features]))],
            options={id(model): {"zipmap": False}},
        )
    else:
        raise ArtifactError(f"cannot export model family {family!r} to ONNX")
    outputs = [o.name for o in onx.graph.output]
    if OUTPUT_NAME not in outputs:
        raise ArtifactError(f"converted model has outputs {outputs}, expected {OUTPUT_NAME!r}")
    proto: onnx.ModelProto = onx
    return proto


def new_session(model: bytes | str | Path, *, intra_op_num_threads: int = 1) -> ort.InferenceSession:
    """A CPU ONNX Runtime session; one intra-op thread suits single-row, latency-bound scoring."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_num_threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # the converters declare a fixed-size 'label' output; ignore that
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def _run_proba(session: ort.InferenceSession, X: np.ndarray) -> np.ndarray:
    import numpy as np

    out = session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})[0]
    return np.asarray(out[:, 1], dtype=np.float64)


def onnx_parity(model: Any, onx: onnx.ModelProto, X: np.ndarray | pd.DataFrame) -> float:
    """Max |ONNX − native| positive-class probability on ``X``.

    Both see the same float32-rounded inputs, which is what serving sends; the difference left
    is the converter's (float32 trees and arithmetic), the thing this check is about.
    """
    import numpy as np

    X32 = np.asarray(X, dtype=np.float32)
    native = np.asarray(model.predict_proba(X32.astype(np.float64))[:, 1], dtype=np.float64)
    converted = _run_proba(new_session(onx.SerializeToString()), X32)
    if np.isnan(converted).any():
        raise ArtifactError("ONNX model returned NaN probabilities")
    return float(np.max(np.abs(converted - native))) if len(X32) else 0.0


def build_artifact(
    model: Any,
    *,
    family: str,
    out_dir: str | Path,
    feature_spec: Mapping[str, Any],
    X_reference: pd.DataFrame | np.ndarray,
    X_holdout: pd.DataFrame | np.ndarray,
    metrics: Mapping[str, float] | None = None,
    validation_result: ValidationResult | Mapping[str, Any] | None = None,
    decision_threshold: float = 0.5,
    latency_budget_ms: float = 5.0,
    max_parity_diff: float = 1e-4,
    reference_rows: int = 20_000,
    data_window: tuple[str, str] | None = None,
    extra_manifest: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> ArtifactInfo:
    """Export ``model`` to ONNX, prove parity on ``X_holdout`` and write the bundle to ``out_dir``.

    ``X_reference`` is usually the training features; a sample of at most ``reference_rows`` rows
    (with their ONNX scores) becomes the drift reference. Raises ``ArtifactError`` on a parity
    failure or a feature mismatch. The manifest is written last (and removed first), so a
    directory without one is an incomplete bundle that ``verify_artifact`` rejects.
    """
    import numpy as np

    names = feature_names_from_spec(feature_spec)
    n = len(names)
    for label, frame in (("X_reference", X_reference), ("X_holdout", X_holdout)):
        cols = list(getattr(frame, "columns", []))
        if np.asarray(frame).shape[1] != n:
            raise ArtifactError(f"{label} has {np.asarray(frame).shape[1]} columns, feature spec has {n}")
        if cols and [str(c) for c in cols] != names:
            raise ArtifactError(f"{label} columns {cols} differ from feature spec order {names}")

    onx = to_onnx(model, family, n)
    parity = onnx_parity(model, onx, X_holdout)
    log.info("ONNX parity on %d holdout rows: max abs diff %.3g", len(np.asarray(X_holdout)), parity)
    if parity > max_parity_diff:
        raise ArtifactError(
            f"ONNX and native {family} probabilities differ by {parity:.3g} (> {max_parity_diff:g})"
        )
    return write_bundle(
        onx,
        family=family,
        out_dir=out_dir,
        feature_spec=feature_spec,
        X_reference=X_reference,
        parity=parity,
        metrics=metrics,
        validation_result=validation_result,
        decision_threshold=decision_threshold,
        latency_budget_ms=latency_budget_ms,
        reference_rows=reference_rows,
        data_window=data_window,
        extra_manifest=extra_manifest,
        seed=seed,
    )


def write_bundle(
    onx: onnx.ModelProto,
    *,
    family: str,
    out_dir: str | Path,
    feature_spec: Mapping[str, Any],
    X_reference: pd.DataFrame | np.ndarray,
    parity: float | None,
    metrics: Mapping[str, float] | None = None,
    validation_result: ValidationResult | Mapping[str, Any] | None = None,
    decision_threshold: float = 0.5,
    latency_budget_ms: float = 5.0,
    reference_rows: int = 20_000,
    data_window: tuple[str, str] | None = None,
    extra_manifest: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> ArtifactInfo:
    """Write the bundle of an ONNX model (input ``features``, output ``probabilities`` [N, 2]) to
    ``out_dir``: the model, its feature spec and input schema, the drift reference (a sample of
    ``X_reference`` with the model's scores), validation result, metrics and, last, the manifest.
    ``parity`` is the max |ONNX − native| difference measured by whoever converted the model
    (None: the model arrived as ONNX, there is no native model to compare with)."""
    import numpy as np
    import pandas as pd

    names = feature_names_from_spec(feature_spec)
    spec_id = _spec_id(feature_spec)
    n = len(names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    (out / MODEL_FILE).write_bytes(onx.SerializeToString())
    _write_json(out / FEATURE_SPEC_FILE, dict(feature_spec))
    input_schema = {
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [None, n]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [None, 2], "positive_class_index": 1},
        "feature_names": names,
        "feature_spec_id": spec_id,
    }
    _write_json(out / INPUT_SCHEMA_FILE, input_schema)

    ref = np.asarray(X_reference, dtype=np.float64)
    if len(ref) > reference_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(ref), reference_rows, replace=False))
        ref = ref[keep]
    profile = pd.DataFrame(ref, columns=names)
    profile[SCORE_COLUMN] = _run_proba(new_session(onx.SerializeToString()), ref)
    profile.to_parquet(out / REFERENCE_FILE, index=False)

    if validation_result is not None:
        if hasattr(validation_result, "save"):
            validation_result.save(out / VALIDATION_FILE)
        else:
            _write_json(out / VALIDATION_FILE, dict(validation_result))
    else:
        (out / VALIDATION_FILE).unlink(missing_ok=True)
    _write_json(out / METRICS_FILE, {k: float(v) for k, v in (metrics or {}).items()})

    files = {
        p.name: sha256_file(p)
        for p in sorted(out.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE and p.suffix in (".onnx", ".json", ".parquet")
    }
    opsets = {(o.domain or "ai.onnx"): int(o.version) for o in onx.opset_import}
    manifest = {
        "format": ARTIFACT_FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "model_family": family,
        "onnx_opset": opsets.get("ai.onnx"),
        "onnx_opsets": opsets,
        "feature_spec_id": spec_id,
        "n_features": n,
        "decision_threshold": float(decision_threshold),
        "latency_budget_ms": float(latency_budget_ms),
        "parity_max_abs_diff": parity,
        "reference_rows": len(profile),
        "data_window": list(data_window) if data_window else None,
        "files": files,
        **dict(extra_manifest or {}),
    }
    _write_json(out / MANIFEST_FILE, manifest)
    return ArtifactInfo(out, family, n, spec_id, parity, opsets, files)


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))


def read_manifest(path: str | Path) -> dict[str, Any]:
    manifest_path = Path(path) / MANIFEST_FILE
    try:
        return dict(json.loads(manifest_path.read_text()))
    except FileNotFoundError as err:
        raise ArtifactError(f"{path} is not a model artifact: no {MANIFEST_FILE}") from err
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{manifest_path} is not valid JSON: {err}") from err


def _check_hashes(root: Path, manifest: Mapping[str, Any]) -> None:
    files = manifest.get("files") or {}
    for required in (MODEL_FILE, FEATURE_SPEC_FILE, INPUT_SCHEMA_FILE, REFERENCE_FILE):
        if required not in files:
            raise ArtifactError(f"manifest lists no {required}")
    for name, expected in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ArtifactError(f"manifest lists {name!r}: only plain file names inside the artifact")
        file = root / name
        if not file.is_file():
            raise ArtifactError(f"{name} is listed in the manifest but missing from {root}")
        actual = sha256_file(file)
        if actual != expected:
            raise ArtifactError(
                f"{name} is corrupt or was modified: sha256 {actual[:12]}… != {expected[:12]}…"
            )


def _load_checked(root: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Manifest, feature spec and input schema, after hash and consistency checks."""
    manifest = read_manifest(root)
    _check_hashes(root, manifest)
    spec = json.loads((root / FEATURE_SPEC_FILE).read_text())
    schema = json.loads((root / INPUT_SCHEMA_FILE).read_text())
    names = feature_names_from_spec(spec)
    if _spec_id(spec) != manifest.get("feature_spec_id"):
        raise ArtifactError(
            f"feature spec id {spec.get('id')!r} != manifest "
            f"feature_spec_id {manifest.get('feature_spec_id')!r}"
        )
    if list(schema.get("feature_names", [])) != names:
        raise ArtifactError("input_schema feature order differs from the feature spec")
    return manifest, spec, schema


def _refuse_external_data(model_file: Path) -> None:
    """A bundle's graph must be self-contained: ONNX "external data" makes ONNX Runtime open
    files named inside the graph (any path, e.g. ``/etc/shadow`` or a device), outside what the
    manifest hashes. Our packaging never writes it (models are far below the 2 GB proto limit)."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    try:
        graph = onnx.load(str(model_file), load_external_data=False)
    except Exception as err:
        raise ArtifactError(f"{MODEL_FILE} is not a valid ONNX model: {err}") from err

    def graphs(g: onnx.GraphProto) -> Any:
        yield g
        for node in g.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from graphs(attr.g)
                for sub in attr.graphs:
                    yield from graphs(sub)

    for g in graphs(graph.graph):
        tensors = list(g.initializer) + [
            a.t for n in g.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR
        ]
        for tensor in tensors:
            if uses_external_data(tensor):
                where = {e.key: e.value for e in tensor.external_data}.get("location", "?")
                raise ArtifactError(
                    f"{MODEL_FILE} keeps tensor {tensor.name!r} in external data ({where!r}): "
                    "bundles must be self-contained"
                )


#: Latency rounds per verification (the best round counts): a check runs on a host that is busy
#: (serving, training, CI), where one preempted stretch inflates a p99; a round within the budget
#: ends it, so a quiet host measures once.
LATENCY_ROUNDS = 3


def verify_artifact(
    path: str | Path,
    *,
    latency_budget_ms: float | None = None,
    n_latency_calls: int = 2_000,
    latency_rounds: int = LATENCY_ROUNDS,
) -> VerificationReport:
    """Check a bundle from disk as serving would load it; raise ``ArtifactError`` with the reason.

    Checks: manifest hashes (corrupt/modified files), feature spec vs model input width and vs the
    schema, probabilities in [0, 1] and not NaN on every reference row, and the single-row p99
    latency over ``n_latency_calls`` calls against ``latency_budget_ms`` (default: the manifest's).

    ``latency_rounds``: measure up to this many times and keep the best round (a round within the
    budget ends it). One preempted stretch on a busy host inflates a p99; a model that is really
    too slow is too slow in every round. The latency failure is a ``LatencyBudgetError``.
    """
    import numpy as np
    import pandas as pd

    root = Path(path)
    manifest, spec, _schema = _load_checked(root)
    names = feature_names_from_spec(spec)
    _refuse_external_data(root / MODEL_FILE)
    try:
        session = new_session(root / MODEL_FILE)
    except Exception as err:  # onnxruntime raises its own types for invalid graphs
        raise ArtifactError(f"{MODEL_FILE} does not load in ONNX Runtime: {err}") from err
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ArtifactError(f"model inputs {[i.name for i in inputs]} != [{INPUT_NAME!r}]")
    width = inputs[0].shape[-1]
    if width != len(names):
        raise ArtifactError(f"model expects {width} features, feature spec lists {len(names)}")
    if OUTPUT_NAME not in [o.name for o in session.get_outputs()]:
        raise ArtifactError(f"model has no {OUTPUT_NAME!r} output")

    reference = pd.read_parquet(root / REFERENCE_FILE)
    missing = [c for c in names if c not in reference.columns]
    if missing:
        raise ArtifactError(f"reference profile lacks features {missing}")
    X = reference[names].to_numpy(dtype=np.float32)
    try:
        scores = _run_proba(session, X)
    except Exception as err:
        raise ArtifactError(f"model failed on the reference rows: {err}") from err
    if np.isnan(scores).any():
        raise ArtifactError(f"model returned NaN for {int(np.isnan(scores).sum())} reference rows")
    if len(scores) and (scores.min() < 0.0 or scores.max() > 1.0):
        raise ArtifactError(f"scores outside [0, 1]: min {scores.min()}, max {scores.max()}")

    budget = float(latency_budget_ms if latency_budget_ms is not None else manifest["latency_budget_ms"])
    p50, p99 = _single_row_latency_ms(session, X, n_latency_calls)
    rounds = 1
    while p99 > budget and rounds < latency_rounds:
        rounds += 1
        p50, p99 = min((p50, p99), _single_row_latency_ms(session, X, n_latency_calls), key=lambda t: t[1])
    if p99 > budget:
        raise LatencyBudgetError(p99, budget, rounds)
    return VerificationReport(
        path=root,
        n_features=len(names),
        feature_spec_id=str(manifest["feature_spec_id"]),
        reference_rows=len(X),
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        latency_budget_ms=budget,
        score_min=float(scores.min()) if len(scores) else 0.0,
        score_max=float(scores.max()) if len(scores) else 0.0,
        rounds=rounds,
    )


def _single_row_latency_ms(
    session: ort.InferenceSession,
    X: np.ndarray,
    n_calls: int,
    max_seconds: float = 3.0,
    min_calls: int = 200,
) -> tuple[float, float]:
    import numpy as np

    rows = X if len(X) else np.zeros((1, session.get_inputs()[0].shape[-1]), dtype=np.float32)
    feeds = [{INPUT_NAME: rows[i % len(rows) : i % len(rows) + 1]} for i in range(min(len(rows), n_calls))]
    for feed in feeds[:50]:  # warm-up: first calls allocate
        session.run([OUTPUT_NAME], feed)
    # Bounded in time too: a slow model (tens of ms a call) would otherwise hold a deploy for
    # minutes; 200 calls still give a p99 (the 2nd-largest) that says whether the budget holds.
    deadline = time.perf_counter() + max_seconds
    timings = np.empty(n_calls)
    done = 0
    for i in range(n_calls):
        feed = feeds[i % len(feeds)]
        start = time.perf_counter()
        session.run([OUTPUT_NAME], feed)
        end = time.perf_counter()
        timings[i] = end - start
        done = i + 1
        if done >= min_calls and end > deadline:
            break
    timings = timings[:done]
    return float(np.percentile(timings, 50) * 1e3), float(np.percentile(timings, 99) * 1e3)


class OnnxScorer:
    """A loaded bundle: ONNX session + feature spec. What the scoring service holds per model."""

    def __init__(
        self,
        session: ort.InferenceSession,
        feature_spec: Mapping[str, Any],
        manifest: Mapping[str, Any],
        path: Path | None = None,
    ) -> None:
        self.session = session
        self.feature_spec = dict(feature_spec)
        self.manifest = dict(manifest)
        self.path = path
        self.feature_names: tuple[str, ...] = tuple(feature_names_from_spec(feature_spec))
        self.n_features = len(self.feature_names)

    @property
    def feature_spec_id(self) -> str:
        return str(self.feature_spec.get("id"))

    @property
    def decision_threshold(self) -> float:
        return float(self.manifest.get("decision_threshold", 0.5))

    @classmethod
    def from_dir(
        cls, path: str | Path, *, intra_op_num_threads: int = 1, expect: Mapping[str, str] | None = None
    ) -> OnnxScorer:
        """Load a bundle (hashes and spec checked; use ``verify_artifact`` for the full gate).

        ``expect``: file name -> SHA-256 as a verifier saw them; the manifest and the model bytes
        (read once, hashed, then loaded from memory) must still be exactly those.
        """
        root = Path(path)
        if expect is not None:
            manifest_digest = sha256_file(root / MANIFEST_FILE)
            if manifest_digest != expect.get(MANIFEST_FILE):
                raise ArtifactError(f"{MANIFEST_FILE} changed after verification")
        manifest, spec, _ = _load_checked(root)
        model: bytes | Path = root / MODEL_FILE
        if expect is not None:
            model = (root / MODEL_FILE).read_bytes()
            if hashlib.sha256(model).hexdigest() != expect.get(MODEL_FILE):
                raise ArtifactError(f"{MODEL_FILE} changed after verification")
        try:
            session = new_session(model, intra_op_num_threads=intra_op_num_threads)
        except Exception as err:
            raise ArtifactError(f"{MODEL_FILE} does not load in ONNX Runtime: {err}") from err
        width = session.get_inputs()[0].shape[-1]
        if width != len(feature_names_from_spec(spec)):
            raise ArtifactError(f"model expects {width} features, feature spec lists {len(spec['features'])}")
        return cls(session, spec, manifest, root)

    def score_batch(self, X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Fraud probabilities for a [rows, n_features] matrix (float64 out)."""
        import numpy as np

        arr = np.asarray(X, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise ValueError(f"expected shape [rows, {self.n_features}], got {list(arr.shape)}")
        return _run_proba(self.session, arr)

    def score_one(self, vector: Sequence[float]) -> float:
        """Fraud probability for one feature vector in spec order."""
        import numpy as np

        arr = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if arr.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {arr.shape[1]}")
        return float(self.session.run([OUTPUT_NAME], {INPUT_NAME: arr})[0][0, 1])


def load_scorer(
    path: str | Path, *, intra_op_num_threads: int = 1, expect: Mapping[str, str] | None = None
) -> OnnxScorer:
    """Load an artifact directory into an ``OnnxScorer`` (``expect``: see ``OnnxScorer.from_dir``)."""
    return OnnxScorer.from_dir(path, intra_op_num_threads=intra_op_num_threads, expect=expect)

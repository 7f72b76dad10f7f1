"""The MLflow model registry as fraudops uses it: register bundles, move aliases, audit every move.

Why aliases: the scoring service and the release DAG never hard-code a version; they resolve
``champion`` / ``challenger-*`` in the registry, so promotion and rollback are a pointer move and
nothing is rebuilt. Every move made through :func:`move_alias` also appends a row to the warehouse
``deployments`` table (who, what, when, why), because MLflow keeps only the current pointer.

A registered version carries two things:

* the ONNX model, logged with ``mlflow.onnx.log_model`` (so ``models:/NAME@ALIAS`` loads anywhere);
* the whole artifact bundle (manifest, feature spec, reference profile, metrics, validation result)
  under the run's ``bundle/`` artifacts, which :func:`download_artifact_dir` fetches and verifies
  for serving. Serving uses the bundle, never a pickle.

``import mlflow`` takes seconds, so it happens inside the functions.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudops.config import REPO_ROOT, load_settings
from fraudops.exceptions import PermanentError, ServiceError
from fraudops.vocabulary import Action, DeploymentState, is_challenger_alias

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from fraudops.warehouse import Warehouse

log = logging.getLogger(__name__)

#: Run artifact folder holding the full bundle next to the logged ONNX model.
BUNDLE_ARTIFACT_PATH = "bundle"
#: Name of the logged model inside the run.
MODEL_ARTIFACT_NAME = "model"
#: Actions the ``deployments`` audit table knows.
ACTIONS: tuple[str, ...] = tuple(Action)
#: Model-version tag with the decision threshold a version is served at (set by the release at
#: promotion: matched to the alert budget on recent traffic); the scoring service prefers it over
#: the bundle manifest's ``decision_threshold``.
SERVED_THRESHOLD_TAG = "served_threshold"
#: With it: the share of events scored exactly at the served threshold that are declined (by a
#: per-event draw, :func:`fraudops.serving.rows.decide`); absent = 1.0, all of them.
SERVED_TIE_SHARE_TAG = "served_tie_share"
#: Registered-model tag ``<prefix><alias>`` holding a challenger's share of live traffic. On the
#: registered model, not the version: every scoring replica's alias watcher reads it with the
#: aliases in the one call it already makes, so a change reaches all of them within a poll.
SAMPLE_RATE_TAG_PREFIX = "fraudops.shadow_sample_rate."


@dataclass(frozen=True)
class RegisteredModel:
    """A new model version (everything XCom needs to pass on)."""

    name: str
    version: str
    run_id: str
    #: ``models:/NAME/VERSION``.
    model_uri: str


@dataclass(frozen=True)
class AliasMove:
    """Outcome of :func:`move_alias`; ``moved`` is False when the alias already pointed there."""

    model_name: str
    alias: str
    version: str
    previous_version: str | None
    moved: bool
    deployment_id: str | None = None


def _tracking_uri(tracking_uri: str | None) -> str:
    return tracking_uri or load_settings().mlflow.tracking_uri


def _client(tracking_uri: str | None) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    uri = _tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def git_revision(repo: Path = REPO_ROOT) -> str:
    """``git rev-parse HEAD`` of the checkout, or "unknown" (no git, not a checkout, timeout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _is_not_found(err: Exception) -> bool:
    code = getattr(err, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or "not found" in str(err).lower()


def _flat_tag_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "/".join(str(v) for v in value)
    return str(value)


def register_artifact(
    artifact_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    model_name: str | None = None,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    plots: Sequence[str | Path] = (),
    experiment: str | None = None,
    run_name: str | None = None,
) -> RegisteredModel:
    """Log a verified bundle as a new version of ``model_name`` and tag it; returns the version.

    ``metrics`` defaults to the bundle's ``metrics.json``. Version tags: ``data_window``,
    ``feature_set``, ``auc``, ``ap``, ``git_revision``, ``model_family``, ``decision_threshold``,
    ``model_sha256`` plus ``tags`` (which win on conflicts).
    """
    import json

    import mlflow
    import mlflow.onnx
    import numpy as np
    import onnx
    from mlflow.models import infer_signature

    from fraudops.training.package import METRICS_FILE, MODEL_FILE, read_manifest

    root = Path(artifact_dir)
    manifest = read_manifest(root)
    settings = load_settings().mlflow
    uri = _tracking_uri(tracking_uri)
    name = model_name or settings.model_name
    if metrics is None:
        metrics_file = root / METRICS_FILE
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    metrics = {k: float(v) for k, v in metrics.items()}

    window = manifest.get("data_window")
    version_tags: dict[str, str] = {
        "data_window": _flat_tag_value(window) if window else "unknown",
        "feature_set": str(manifest["feature_spec_id"]),
        "model_family": str(manifest["model_family"]),
        "decision_threshold": str(manifest["decision_threshold"]),
        "latency_budget_ms": str(manifest["latency_budget_ms"]),
        "model_sha256": str(manifest["files"][MODEL_FILE]),
        "git_revision": git_revision(),
        "bundle_artifact_path": BUNDLE_ARTIFACT_PATH,
    }
    for key, metric in (("auc", "roc_auc"), ("ap", "average_precision")):
        if metric in metrics:
            version_tags[key] = f"{metrics[metric]:.6f}"
    version_tags.update({k: str(v) for k, v in (tags or {}).items()})

    onx = onnx.load(str(root / MODEL_FILE))
    n_features = int(manifest["n_features"])
    # Tensor signature: float32 [-1, n_features] in, [-1, 2] probabilities out.
    signature = infer_signature(np.zeros((1, n_features), np.float32), np.zeros((1, 2), np.float32))

    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        mlflow.set_experiment(experiment or settings.experiment)
        with mlflow.start_run(run_name=run_name) as run:
            mlflow.set_tags({**version_tags, "model_name": name})
            flat_params = {
                "feature_spec_id": manifest["feature_spec_id"],
                "model_family": manifest["model_family"],
                "onnx_opset": manifest.get("onnx_opset"),
                "decision_threshold": manifest["decision_threshold"],
                **{k: v for k, v in (params or {}).items()},
            }
            mlflow.log_params({k: _flat_tag_value(v)[:6000] for k, v in flat_params.items()})
            if metrics:
                mlflow.log_metrics(metrics)
            for plot in plots:
                mlflow.log_artifact(str(plot), artifact_path="plots")
            mlflow.log_artifacts(str(root), artifact_path=BUNDLE_ARTIFACT_PATH)
            info = mlflow.onnx.log_model(
                onx,
                name=MODEL_ARTIFACT_NAME,
                registered_model_name=name,
                signature=signature,
                # MLflow 3 puts these on the logged model and on the new model version alike.
                tags=version_tags,
                # Declared, not inferred: inference re-imports the model in a subprocess (~10 s).
                pip_requirements=_serving_requirements(),
                # One self-contained .onnx file (the bundle is hashed the same way).
                save_as_external_data=False,
            )
            run_id = run.info.run_id
    except Exception as err:
        if _is_connection_error(err):
            raise ServiceError("mlflow", f"cannot reach {uri}: {err}") from err
        raise
    version = str(info.registered_model_version)
    log.info("registered %s version %s (run %s)", name, version, run_id)
    return RegisteredModel(name=name, version=version, run_id=run_id, model_uri=f"models:/{name}/{version}")


def _serving_requirements() -> list[str]:
    """Exact pins of what loading the logged ONNX model needs, from this environment."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("onnx", "onnxruntime", "numpy")]


def _is_connection_error(err: Exception) -> bool:
    from requests import exceptions as rexc

    return isinstance(err, rexc.ConnectionError | ConnectionError) or "Max retries exceeded" in str(err)


def get_alias_version(model_name: str, alias: str, *, tracking_uri: str | None = None) -> str | None:
    """The version ``alias`` points to, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(tracking_uri).get_model_version_by_alias(model_name, alias).version)
    except MlflowException as err:
        if _is_not_found(err):
            return None
        raise


def set_alias(model_name: str, alias: str, version: str | int, *, tracking_uri: str | None = None) -> bool:
    """Point ``alias`` at ``version``; returns False (and changes nothing) if it already does."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    target = str(version)
    if get_alias_version(model_name, alias, tracking_uri=tracking_uri) == target:
        return False
    try:
        client.get_model_version(model_name, target)
    except MlflowException as err:
        if _is_not_found(err):
            raise PermanentError(f"model {model_name!r} has no version {target}") from err
        raise
    client.set_registered_model_alias(model_name, alias, target)
    return True


def delete_alias(model_name: str, alias: str, *, tracking_uri: str | None = None) -> bool:
    """Remove ``alias``; returns False if it did not exist."""
    if get_alias_version(model_name, alias, tracking_uri=tracking_uri) is None:
        return False
    _client(tracking_uri).delete_registered_model_alias(model_name, alias)
    return True


def resolve_version(model_name: str, alias_or_version: str | int, *, tracking_uri: str | None = None) -> str:
    """A version number for ``alias_or_version`` (digits mean a version, anything else an alias)."""
    ref = str(alias_or_version)
    if ref.isdigit():
        return ref
    version = get_alias_version(model_name, ref, tracking_uri=tracking_uri)
    if version is None:
        raise PermanentError(f"model {model_name!r} has no alias {ref!r}")
    return version


def download_artifact_dir(
    model_name: str,
    alias_or_version: str | int,
    dest: str | Path,
    *,
    tracking_uri: str | None = None,
    verify: bool = True,
    latency_budget_ms: float | None = None,
) -> Path:
    """Fetch the bundle of a version (or alias) into ``dest``; verified unless ``verify=False``.

    Returns the bundle directory (``dest/bundle``), ready for ``load_scorer``.
    """
    import mlflow.artifacts

    from fraudops.training.package import verify_artifact

    uri = _tracking_uri(tracking_uri)
    version = resolve_version(model_name, alias_or_version, tracking_uri=uri)
    client = _client(uri)
    mv = client.get_model_version(model_name, version)
    if not mv.run_id:
        raise PermanentError(f"{model_name} version {version} has no run; cannot find its bundle")
    path = (mv.tags or {}).get("bundle_artifact_path", BUNDLE_ARTIFACT_PATH)
    Path(dest).mkdir(parents=True, exist_ok=True)
    # From the run's own artifact location, not ``runs:/<id>/<path>``: MLflow's runs:/ repository
    # swallows the store's error and raises "Failed to download artifacts from path ..."
    # (RESOURCE_DOES_NOT_EXIST) for an unreachable artifact store too, so a registry hiccup would
    # look like a bundle that does not exist.
    root = client.get_run(mv.run_id).info.artifact_uri.rstrip("/")
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"{root}/{path}", dst_path=str(dest), tracking_uri=uri
        )
    )
    if verify:
        verify_artifact(local, latency_budget_ms=latency_budget_ms)
    return local


#: Namespace of deterministic deployment ids (uuid5 of the caller's idempotency key).
_DEPLOYMENT_NS = uuid.UUID("5b0f3a5e-7c1d-4f6a-9b43-2d6c1f0e8a17")
#: ``deployments.state`` values: the intent is recorded before the alias moves, then marked applied.
PENDING, APPLIED = DeploymentState.PENDING, DeploymentState.APPLIED
#: Tables (by id) whose ``state`` column this process has made sure of.
_STATE_COLUMN_OK: set[str] = set()


def deployment_id_for(idempotency_key: str) -> str:
    """The deterministic ``deployment_id`` of a change identified by ``idempotency_key``."""
    return str(uuid.uuid5(_DEPLOYMENT_NS, idempotency_key))


def _ensure_deployments_schema(warehouse: Warehouse) -> None:
    """Add columns a ``deployments`` table created by an older release lacks (``state``), once per
    process and table: the writes below name every column of the spec."""
    from fraudops.warehouse.schema import get_table_spec

    table = warehouse.table_id("deployments")
    if table in _STATE_COLUMN_OK:
        return
    warehouse.ensure_schema([get_table_spec("deployments")])
    _STATE_COLUMN_OK.add(table)


def record_deployment(
    warehouse: Warehouse,
    *,
    model_name: str,
    alias: str,
    version: str | None,
    previous_version: str | None,
    action: str,
    actor: str | None,
    reason: str | None,
    idempotency_key: str | None = None,
    state: str = APPLIED,
) -> str:
    """Write one row to the ``deployments`` audit table; returns its ``deployment_id``.

    With ``idempotency_key`` the id is deterministic (:func:`deployment_id_for`) and the write is an
    upsert by that id: a retried caller writes the same row once. Without it, a new row every call.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown deployment action {action!r}; expected one of {ACTIONS}")
    if state not in (PENDING, APPLIED):
        raise ValueError(f"unknown deployment state {state!r}")
    _ensure_deployments_schema(warehouse)
    deployment_id = deployment_id_for(idempotency_key) if idempotency_key else str(uuid.uuid4())
    warehouse.upsert(
        "deployments",
        [
            {
                "deployment_id": deployment_id,
                "model_name": model_name,
                "alias": alias,
                "model_version": None if version is None else str(version),
                "previous_version": None if previous_version is None else str(previous_version),
                "action": action,
                "actor": actor,
                "reason": reason,
                "deployed_at": dt.datetime.now(dt.UTC),
                "state": state,
            }
        ],
    )
    return deployment_id


def find_deployment(warehouse: Warehouse, deployment_id: str) -> dict[str, Any] | None:
    """The ``deployments`` row with this id (``deployment_id``, versions, state, deployed_at), or None."""
    _ensure_deployments_schema(warehouse)
    rows = warehouse.query(
        f"SELECT deployment_id, model_version, previous_version, state, deployed_at FROM "
        f"`{warehouse.table_id('deployments')}` WHERE deployment_id = @id",
        {"id": deployment_id},
    )
    return rows[0] if rows else None


def _mark_applied(warehouse: Warehouse, deployment_id: str) -> None:
    warehouse.execute(
        f"UPDATE `{warehouse.table_id('deployments')}` SET state = @applied WHERE deployment_id = @id",
        {"applied": APPLIED, "id": deployment_id},
    )


def _drop_intent(warehouse: Warehouse, deployment_id: str) -> None:
    """Best effort: remove a pending row whose move failed (a retry records the intent again)."""
    try:
        warehouse.execute(
            f"DELETE FROM `{warehouse.table_id('deployments')}` WHERE deployment_id = @id AND state = @p",
            {"id": deployment_id, "p": PENDING},
        )
    except Exception as err:  # the pending row is reconciled by the retry, or ignored by readers
        log.warning("could not drop pending deployment %s: %s", deployment_id, err)


def _set_or_delete(model_name: str, alias: str, target: str | None, tracking_uri: str | None) -> None:
    if target is None:
        delete_alias(model_name, alias, tracking_uri=tracking_uri)
    else:
        set_alias(model_name, alias, target, tracking_uri=tracking_uri)


def _idempotent_change(
    warehouse: Warehouse,
    *,
    model_name: str,
    alias: str,
    target: str | None,
    action: str,
    actor: str | None,
    reason: str | None,
    tracking_uri: str | None,
    idempotency_key: str,
) -> tuple[str | None, bool, str | None]:
    """Intent first: (previous version, moved, deployment_id) of pointing ``alias`` at ``target``
    (None: removing it), safe to repeat with the same ``idempotency_key``.

    * no row for the key, alias already there → nothing to do, no row, when the alias's newest
      audit row names it; otherwise (moved outside the platform) an ``applied`` row adopts it;
    * no row → ``pending`` row, alias move, row marked ``applied``;
    * ``pending`` row (a crash between intent and confirmation) → redo the move if the alias is not
      there yet, mark the row ``applied``;
    * ``applied`` row → nothing to do (this change happened already).
    """
    from fraudops.faults import crash_point

    deployment_id = deployment_id_for(idempotency_key)
    row = find_deployment(warehouse, deployment_id)
    current = get_alias_version(model_name, alias, tracking_uri=tracking_uri)
    if row is not None and row.get("state") in (APPLIED, None):
        if current != target:
            log.warning(
                "%s@%s is at %s, not %s, but change %s was applied already; leaving it",
                model_name,
                alias,
                current,
                target,
                idempotency_key,
            )
        return row.get("previous_version"), False, deployment_id
    if row is not None:  # pending: reconcile
        previous = row.get("previous_version")
        if current != target:
            _set_or_delete(model_name, alias, target, tracking_uri)
        _mark_applied(warehouse, deployment_id)
        log.info("%s@%s: reconciled pending %s -> %s (%s)", model_name, alias, previous, target, action)
        return previous, True, deployment_id
    if current == target:
        _, named = audited_version(warehouse, model_name, alias)
        if named == target:
            log.info("%s@%s already at %s; nothing to do", model_name, alias, target)
            return current, False, None
        # The alias got there without a row (moved outside the platform): this change adopts it,
        # so the scoring service (which serves only audited targets) may serve it.
        did = record_deployment(
            warehouse,
            model_name=model_name,
            alias=alias,
            version=target,
            previous_version=named,
            action=action,
            actor=actor,
            reason=f"adopted an unaudited move; {reason or ''}".rstrip("; "),
            idempotency_key=idempotency_key,
        )
        log.warning("%s@%s was at %s without an audit row; recorded it", model_name, alias, target)
        return current, False, did
    record_deployment(
        warehouse,
        model_name=model_name,
        alias=alias,
        version=target,
        previous_version=current,
        action=action,
        actor=actor,
        reason=reason,
        idempotency_key=idempotency_key,
        state=PENDING,
    )
    crash_point(f"{action}:{alias}:after_intent")
    try:
        _set_or_delete(model_name, alias, target, tracking_uri)
    except Exception:
        _drop_intent(warehouse, deployment_id)
        raise
    crash_point(f"{action}:{alias}:after_move")
    _mark_applied(warehouse, deployment_id)
    log.info("%s@%s: %s -> %s (%s by %s)", model_name, alias, current, target, action, actor)
    return current, True, deployment_id


def move_alias(
    warehouse: Warehouse,
    *,
    model_name: str,
    alias: str,
    version: str | int,
    action: str,
    actor: str | None = None,
    reason: str | None = None,
    tracking_uri: str | None = None,
    idempotency_key: str | None = None,
) -> AliasMove:
    """Point ``alias`` at ``version`` and record it; a no-op (no row) if it already points there.

    Always intent first: a ``pending`` row, then the alias moves, then the row is marked
    ``applied``, so the scoring service (which serves only a version the newest audit row of its
    alias names: :func:`audited_version`) never sees a move before its row. With
    ``idempotency_key`` (a retried pipeline step) a retry reconciles a pending row and does nothing
    after an applied one, one row per change (see :func:`_idempotent_change`); without it each call
    is a change of its own (a random key).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown deployment action {action!r}; expected one of {ACTIONS}")
    target = str(version)
    previous, moved, did = _idempotent_change(
        warehouse,
        model_name=model_name,
        alias=alias,
        target=target,
        action=action,
        actor=actor,
        reason=reason,
        tracking_uri=tracking_uri,
        idempotency_key=idempotency_key or f"adhoc:{uuid.uuid4()}",
    )
    return AliasMove(model_name, alias, target, previous, moved=moved, deployment_id=did)


def retire_alias(
    warehouse: Warehouse,
    *,
    model_name: str,
    alias: str,
    actor: str | None = None,
    reason: str | None = None,
    tracking_uri: str | None = None,
    idempotency_key: str | None = None,
) -> str | None:
    """Remove ``alias`` with a ``retire`` audit row; returns the version it pointed to (None: it was
    absent). Intent first, like :func:`move_alias`; a retry of an applied change (same
    ``idempotency_key``) returns the same version again."""
    previous, _, _ = _idempotent_change(
        warehouse,
        model_name=model_name,
        alias=alias,
        target=None,
        action=Action.RETIRE,
        actor=actor,
        reason=reason,
        tracking_uri=tracking_uri,
        idempotency_key=idempotency_key or f"adhoc:{uuid.uuid4()}",
    )
    return previous


def audited_version(warehouse: Warehouse, model_name: str, alias: str) -> tuple[bool, str | None]:
    """What the audit trail says ``alias`` points to: (any row, version of the newest row).

    The newest ``deployments`` row of the alias, ``pending`` (an intent whose move is under way)
    or ``applied``; its ``model_version`` is None after a retire. The scoring service serves a
    version only when this names it: an alias moved behind the platform's back (the MLflow UI or
    API without a recorded intent, or back to an old version) has no such row and is refused.
    """
    _ensure_deployments_schema(warehouse)
    rows = warehouse.query(
        f"SELECT model_version FROM `{warehouse.table_id('deployments')}` "
        "WHERE model_name = @model AND alias = @alias ORDER BY deployed_at DESC LIMIT 1",
        {"model": model_name, "alias": alias},
    )
    if not rows:
        return False, None
    version = rows[0].get("model_version")
    return True, None if version is None else str(version)


def champion_moved(warehouse: Warehouse, model_name: str, champion: str) -> tuple[str | None, str] | None:
    """(the champion now, the reason) once the audit trail (``deployments``: what the scoring
    service serves) names another champion than ``champion``, the one a release compares with;
    None while it still serves, or when the model has no audited champion at all. A shadow wait
    ends then: more evidence against a champion that no longer serves cannot lead to a promotion."""
    audited, serving = audited_version(warehouse, model_name, "champion")
    if not audited or serving == champion:
        return None
    now = f"v{serving}" if serving is not None else "no version"
    return serving, f"champion moved from v{champion} to {now} during the shadow test"


def set_version_tag(
    model_name: str, version: str | int, key: str, value: str, *, tracking_uri: str | None = None
) -> None:
    """Set a model-version tag unless it already has that value (idempotent)."""
    client = _client(tracking_uri)
    mv = client.get_model_version(model_name, str(version))
    if (mv.tags or {}).get(key) != value:
        client.set_model_version_tag(model_name, str(version), key, value)


_BAD_RATE_TAGS: set[tuple[str, str]] = set()


def sample_rates(tags: Mapping[str, str] | None) -> dict[str, float]:
    """Per-alias sample rates from registered-model tags; a tag that is not a rate in (0, 1] is
    ignored with a warning (the challenger keeps the service's default)."""
    rates: dict[str, float] = {}
    for key, value in (tags or {}).items():
        if not key.startswith(SAMPLE_RATE_TAG_PREFIX):
            continue
        alias = key[len(SAMPLE_RATE_TAG_PREFIX) :]
        try:
            rate = float(value)
        except (TypeError, ValueError):
            rate = float("nan")
        if not 0.0 < rate <= 1.0:  # NaN fails too
            if (key, value) not in _BAD_RATE_TAGS:  # once, not at every poll
                _BAD_RATE_TAGS.add((key, value))
                log.warning("ignoring sample-rate tag %s=%r: not a rate in (0, 1]", key, value)
            continue
        rates[alias] = rate
    return rates


@dataclass(frozen=True)
class SampleRateChange:
    """Outcome of :func:`set_sample_rate`: the alias's version, its rate before and after (None:
    the service's default) and whether this call changed anything."""

    alias: str
    version: str
    before: float | None
    after: float | None
    changed: bool
    deployment_id: str | None


def _rate_text(rate: float | None) -> str:
    return "the service default" if rate is None else f"{rate:g}"


def set_sample_rate(
    warehouse: Warehouse,
    *,
    model_name: str,
    alias: str,
    rate: float | None,
    actor: str | None = None,
    reason: str | None = None,
    tracking_uri: str | None = None,
    idempotency_key: str | None = None,
) -> SampleRateChange:
    """Set the share of live traffic mirrored to challenger ``alias`` (None: back to the scoring
    service's default), audited like an alias move.

    Intent first: a ``pending`` ``sample_rate`` row naming the alias's current version (so
    :func:`audited_version` still names it), then the tag, then the row is ``applied``. The same
    ``idempotency_key`` again reconciles a pending row (sets the tag if it is not there yet) and
    does nothing after an applied one; setting the rate the tag already holds writes no row.
    Limits (the shadow pool's policy) are the caller's: this only refuses what is not a rate.
    """
    from fraudops.faults import crash_point

    if not is_challenger_alias(alias):
        raise PermanentError(f"only a challenger's sample rate can be set, not {alias!r}")
    if rate is not None and not 0.0 < rate <= 1.0:
        raise PermanentError(f"a sample rate is in (0, 1], got {rate}")
    client = _client(tracking_uri)
    try:
        model = client.get_registered_model(model_name)
    except Exception as err:
        if _is_not_found(err):
            raise PermanentError(f"no registered model {model_name!r}") from err
        raise
    version = (model.aliases or {}).get(alias)
    if version is None:
        raise PermanentError(f"{model_name} has no challenger {alias!r} (not in shadow)")
    version = str(version)
    before = sample_rates(model.tags).get(alias)
    key = SAMPLE_RATE_TAG_PREFIX + alias
    change_key = idempotency_key or f"adhoc:{uuid.uuid4()}"
    deployment_id = deployment_id_for(change_key)
    row = find_deployment(warehouse, deployment_id)
    if row is not None and row.get("state") in (APPLIED, None):
        return SampleRateChange(alias, version, before, rate, False, deployment_id)
    if row is None:
        if before == rate:
            return SampleRateChange(alias, version, before, rate, False, None)
        record_deployment(
            warehouse,
            model_name=model_name,
            alias=alias,
            version=version,
            previous_version=version,
            action=Action.SAMPLE_RATE,
            actor=actor,
            reason=f"sample rate {_rate_text(before)} -> {_rate_text(rate)}"
            + (f": {reason}" if reason else ""),
            idempotency_key=change_key,
            state=PENDING,
        )
        crash_point("sample_rate:after_intent")
    if before != rate:
        if rate is None:
            client.delete_registered_model_tag(model_name, key)
        else:
            client.set_registered_model_tag(model_name, key, repr(float(rate)))
    crash_point("sample_rate:after_tag")
    _mark_applied(warehouse, deployment_id)
    log.info("%s@%s v%s: sample rate %s -> %s (%s)", model_name, alias, version, before, rate, actor)
    return SampleRateChange(alias, version, before, rate, True, deployment_id)

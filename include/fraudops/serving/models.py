"""Which models serve: the champion, the previous champion kept warm for fallback, the challengers.

Why this shape: a request must never wait for, or fail because of, a model change. The watcher
thread polls the registry aliases (one ``get_registered_model`` call per poll), downloads a new
version's bundle, runs ``verify_artifact`` (hashes, NaN/range on the reference rows, latency) and
only then swaps a single tuple reference ``(current, previous)``; a request reads that tuple once,
so it is answered entirely by the old pair or entirely by the new one. A bundle that fails
verification is rejected, counted and logged, and the champion stays what it was. A version that
could not be fetched because the registry was unreachable is not rejected: it waits and is tried
again with a backoff (``registry_faults``), and the champion stays what it was meanwhile. A version
whose only fault is its measured latency (which depends on how busy the host was) is measured again
after a backoff, and refused only when it is over budget on every attempt.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fraudops.features.spec import FeatureSpec
from fraudops.training.verifier import VerifyLimits
from fraudops.vocabulary import Alias

log = logging.getLogger(__name__)

CHAMPION: str = Alias.CHAMPION.value  # a plain str: it keys dicts that orjson writes


class Scorer(Protocol):
    decision_threshold: float

    def score_batch(self, rows: list[list[float]]) -> Any: ...


@dataclass(frozen=True)
class ModelSlot:
    """One loaded model version."""

    name: str
    version: str
    alias: str
    scorer: Any
    spec: FeatureSpec
    threshold: float
    budget_ms: float
    path: Path | None = None
    loaded_at: float = field(default_factory=time.time)
    #: ``spec.id`` hashes the spec on every access: computed once here (hot path).
    spec_id: str = ""
    #: Share of events scored exactly ``threshold`` that are declined (drawn per transaction id).
    tie_share: float = 1.0

    def __post_init__(self) -> None:
        if not self.spec_id:
            object.__setattr__(self, "spec_id", self.spec.id)


def slot_from_bundle(
    name: str,
    version: str,
    alias: str,
    path: Path,
    budget_ms: float = 0.0,
    threshold: float | None = None,
    expect: dict[str, str] | None = None,
    tie_share: float = 1.0,
) -> ModelSlot:
    """Load a verified bundle directory into a slot (one intra-op thread).

    ``threshold``: the version's served threshold (registry tag ``served_threshold``, set at
    promotion); None = the manifest's ``decision_threshold``; ``tie_share``: its tag
    ``served_tie_share`` (ties at a served threshold). ``expect``: the file digests its
    verification saw; the load refuses a bundle that changed since.
    """
    from fraudops.training.package import load_scorer

    scorer = load_scorer(path, intra_op_num_threads=1, expect=expect)
    # A fresh session's first calls allocate (milliseconds): warm it before it serves, or the
    # first requests after a swap would blow the budget and fall back.
    # The service scores through ``score_batch`` only: one row, and the batch shapes a busy service sends.
    for rows in (1,) * 20 + (2, 3, 4, 8, 16, 32, 64):
        scorer.score_batch([[0.0] * scorer.n_features] * rows)
    spec = FeatureSpec.from_dict(scorer.feature_spec)
    budget = budget_ms or float(scorer.manifest.get("latency_budget_ms", 5.0))
    # The tie share belongs to a served threshold; the manifest's threshold declines all ties.
    served, tie = (
        (float(scorer.decision_threshold), 1.0) if threshold is None else (float(threshold), tie_share)
    )
    return ModelSlot(name, str(version), alias, scorer, spec, served, budget, Path(path), tie_share=tie)


#: Next to a cached bundle: the version's registry tags the service serves by (``served_threshold``),
#: so a restart with MLflow down still serves the threshold the release chose.
SERVED_FILE = "served.json"


class BundleCache:
    """Downloads and verifies a version's bundle once into ``root/<name>/<version>``."""

    def __init__(
        self, root: Path, tracking_uri: str, verify: bool = True, limits: VerifyLimits | None = None
    ) -> None:
        self.root = root
        self.tracking_uri = tracking_uri
        self.verify = verify
        self.limits = limits
        self._digests: dict[tuple[str, str], dict[str, str]] = {}

    def cached(self, name: str, version: str) -> Path | None:
        """The bundle directory of ``version`` if it was downloaded before (no registry call)."""
        bundle = self.root / name / str(version) / "bundle"
        return bundle if (bundle / "manifest.json").exists() else None

    def cached_threshold(self, name: str, version: str) -> float | None:
        """The ``served_threshold`` cached with the bundle (None: none cached), no registry call."""
        from fraudops.registry import SERVED_THRESHOLD_TAG

        got = self._cached_tags(name, version).get(SERVED_THRESHOLD_TAG)
        return None if got is None else float(got)

    def cached_tie_share(self, name: str, version: str) -> float:
        """The ``served_tie_share`` cached with the bundle by the last :meth:`served_threshold`
        (1.0: none, every event at the threshold is declined), no registry call."""
        from fraudops.registry import SERVED_TIE_SHARE_TAG

        got = self._cached_tags(name, version).get(SERVED_TIE_SHARE_TAG)
        return 1.0 if got is None else float(got)

    def _cached_tags(self, name: str, version: str) -> dict[str, Any]:
        import json

        cached = self.root / name / str(version) / SERVED_FILE
        return dict(json.loads(cached.read_text())) if cached.exists() else {}

    def fetch(self, name: str, version: str) -> Path:
        """The verified bundle of ``version`` (downloaded once). Verification runs in a
        resource-limited child process (``verifier.verify_isolated``); the file digests it saw are
        kept for ``expected_digests``, so the load that follows serves exactly what passed."""
        from fraudops.registry import download_artifact_dir

        dest = self.root / name / str(version)
        bundle = dest / "bundle"
        if (bundle / "manifest.json").exists():
            if self.verify:
                self._verify(name, version, bundle, n_latency_calls=200)
            return bundle
        tmp = dest.with_name(f"{version}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            got = download_artifact_dir(name, version, tmp, tracking_uri=self.tracking_uri, verify=False)
            if self.verify:
                # Fewer latency calls than the packaging gate: the service is warm and busy.
                self._verify(name, version, got, n_latency_calls=500)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return bundle

    def _verify(self, name: str, version: str, path: Path, n_latency_calls: int) -> None:
        from fraudops.training.verifier import verify_isolated

        got = verify_isolated(path, n_latency_calls=n_latency_calls, limits=self.limits)
        self._digests[(name, str(version))] = got.digests

    def expected_digests(self, name: str, version: str) -> dict[str, str] | None:
        """File digests of ``version`` as its last verification saw them (None: not verified)."""
        return self._digests.get((name, str(version)))

    def served_threshold(self, name: str, version: str) -> float | None:
        """The version's ``served_threshold`` tag (None: not set, serve the manifest's threshold).

        Read from the registry on every load (the release sets it at promotion, after the bundle
        may have been cached for shadow) and cached next to the bundle; when the registry cannot
        be reached, the cached value is served. Its ``served_tie_share`` is cached with it (read it
        with :meth:`cached_tie_share`).
        """
        import json

        from fraudops.registry import SERVED_THRESHOLD_TAG, SERVED_TIE_SHARE_TAG, _client

        cached = self.root / name / str(version) / SERVED_FILE
        try:
            tags = _client(self.tracking_uri).get_model_version(name, str(version)).tags or {}
            raw = tags.get(SERVED_THRESHOLD_TAG)
            value = None if raw in (None, "") else float(raw)
            raw_tie = tags.get(SERVED_TIE_SHARE_TAG)
        except Exception as err:  # registry down: what was served before
            if cached.exists():
                log.warning("registry unreachable (%s); served threshold of v%s from cache", err, version)
                return self.cached_threshold(name, version)
            log.warning("registry unreachable (%s); v%s served at its manifest threshold", err, version)
            return None
        if value is not None and not 0.0 <= value <= 1.0:
            log.error("ignoring served_threshold %r of %s v%s: not in [0, 1]", raw, name, version)
            value = None
        tie = _number(raw_tie, default=1.0)
        if not 0.0 < tie <= 1.0:
            log.error("ignoring served_tie_share %r of %s v%s: not in (0, 1]", raw_tie, name, version)
            tie = 1.0
        cached.parent.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {SERVED_THRESHOLD_TAG: value}
        if tie < 1.0 and value is not None:
            doc[SERVED_TIE_SHARE_TAG] = tie
        cached.write_text(json.dumps(doc))
        return value


def _number(raw: str | None, default: float) -> float:
    """A tag's number (``default`` when unset, NaN when not a number)."""
    if raw in (None, ""):
        return default
    try:
        return float(str(raw))
    except ValueError:
        return math.nan


class ChampionManager:
    """The ``(current, previous)`` pair behind one atomic reference."""

    def __init__(self) -> None:
        self._pair: tuple[ModelSlot | None, ModelSlot | None] = (None, None)
        self.swaps = 0

    @property
    def pair(self) -> tuple[ModelSlot | None, ModelSlot | None]:
        return self._pair

    @property
    def current(self) -> ModelSlot | None:
        return self._pair[0]

    @property
    def previous(self) -> ModelSlot | None:
        return self._pair[1]

    def promote(self, slot: ModelSlot) -> None:
        """Make ``slot`` the champion; the outgoing one stays loaded as the fallback."""
        current, previous = self._pair
        if current is not None and current.version == slot.version:
            return
        if previous is not None and previous.version == slot.version:
            slot = previous  # a rollback: reuse the loaded session
        self._pair = (slot, current if current is not None else previous)
        self.swaps += 1
        log.info(
            "champion is now %s v%s (fallback: %s)",
            slot.name,
            slot.version,
            None if self._pair[1] is None else f"v{self._pair[1].version}",
        )

    def set_previous(self, slot: ModelSlot) -> None:
        current, _ = self._pair
        self._pair = (current, slot)


class AliasWatcher:
    """Polls the registry aliases (and the registered model's tags: per-challenger sample rates)
    and applies changes; runs ``apply(aliases, tags)`` in its own thread.

    ``on_error`` sees every failed poll (the service counts registry outages); ``due_in`` says how
    soon something wants another look (a load waiting for the registry), so a retry due in 1 s is
    not put off until the next ``poll_s``.
    """

    def __init__(
        self,
        model_name: str,
        tracking_uri: str,
        apply: Callable[[dict[str, str], dict[str, str]], None],
        poll_s: float = 5.0,
        *,
        on_error: Callable[[Exception], None] | None = None,
        due_in: Callable[[], float | None] | None = None,
    ) -> None:
        self.model_name = model_name
        self.tracking_uri = tracking_uri
        self.apply = apply
        self.poll_s = poll_s
        self.on_error = on_error
        self.due_in = due_in
        self.errors = 0
        self.last_error = ""
        #: The last poll failed (``last_error`` keeps the last failure after a good poll too).
        self.failing = False
        self.last_poll = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def aliases(self) -> tuple[dict[str, str], dict[str, str]]:
        """(alias → version, registered-model tags), both empty while the model is not registered."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        try:
            model = client.get_registered_model(self.model_name)
        except MlflowException as err:
            if (
                "RESOURCE_DOES_NOT_EXIST" in str(getattr(err, "error_code", ""))
                or "not found" in str(err).lower()
            ):
                return {}, {}
            raise
        aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
        return aliases, {str(k): str(v) for k, v in (model.tags or {}).items()}

    def poll_once(self) -> None:
        try:
            self.apply(*self.aliases())
        except Exception as err:  # the watcher must outlive registry outages and bad bundles
            self.errors += 1
            self.last_error = f"{type(err).__name__}: {err}"[:500]
            log.warning("alias poll failed: %s", self.last_error)
            if self.on_error is not None:
                self.on_error(err)
            self.failing = True
        else:
            self.failing = False
        self.last_poll = time.time()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alias-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            due = None if self.due_in is None else self.due_in()
            self._wake.wait(self.poll_s if due is None else min(self.poll_s, max(due, 0.05)))
            self._wake.clear()

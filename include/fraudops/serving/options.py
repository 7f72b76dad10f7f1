"""Scoring-service knobs read from the environment (defaults suit the local stack).

They live here rather than in ``fraudops.config`` because only the scoring service reads them;
the shared settings (host, port, deploy token, shadow sample rate) stay in ``config.ScoringConfig``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from fraudops.config import Settings, load_settings
from fraudops.exceptions import ConfigError
from fraudops.features.online import DEFAULT_MAX_ENTITIES


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError as err:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from err


#: Per clock: (max seconds ahead, max seconds behind). Production: 5 minutes of clock skew ahead,
#: one day behind (the online store's lateness allowance: an older event would see a truncated
#: history). Simulated: event time runs ~1 600x faster and a stream restarts on the next simulated
#: day, so a gap of up to two simulated days is normal; three are allowed ahead.
EVENT_CLOCK_DEFAULTS: dict[str, tuple[float, float]] = {
    "server": (300.0, 86_400.0),
    "simulated": (3 * 86_400.0, 86_400.0),
}


def _optional_float(name: str) -> float | None:
    return _float(name, -1.0) if os.environ.get(name, "") else None


SHADOW_TRANSPORTS = ("process", "stream")


@dataclass(frozen=True)
class ServingOptions:
    """Everything the scoring service needs besides ``Settings``."""

    settings: Settings = field(default_factory=load_settings)
    #: Seconds between two looks at the registry aliases (FRAUDOPS_ALIAS_POLL_S).
    alias_poll_s: float = 5.0
    #: Days of warehouse history the online store is warmed with at start (FRAUDOPS_WARM_DAYS);
    #: 0 starts cold (tests).
    warm_days: float = 30.0
    #: Seconds between two reads of new fraud labels from the warehouse into the online store
    #: (FRAUDOPS_LABEL_SYNC_S; 0: only the warm-up's labels). Runs when the store was warmed.
    label_sync_s: float = 5.0
    #: Per-request model budget in ms; 0 → the artifact manifest's ``latency_budget_ms``.
    budget_ms: float = 0.0
    #: Scores in [threshold - review_band, threshold) get ``review``; 0 disables the band.
    review_band: float = 0.0
    shadow_sample_rate: float = 0.1
    #: Per-challenger bounded queue (items beyond are shed and counted).
    shadow_queue_size: int = 1000
    #: Resident-memory guard per shadow worker: RLIMIT_AS in MB (address space; ONNX Runtime and
    #: numpy reserve far more address space than they touch, so this is well above the RSS).
    shadow_address_space_mb: int = 2048
    shadow_nice: int = 10
    #: A worker whose heartbeat is older than this is considered hung, killed and restarted.
    shadow_hang_timeout_s: float = 5.0
    #: A worker whose mean latency exceeds this is throttled (its sample rate halved).
    shadow_slow_ms: float = 25.0
    #: Prediction logging micro-batches. Each batch is a load job plus a MERGE: at 1 s the local
    #: emulator spent 2-3x the CPU it needs at 3 s (measured at 500 req/s), and a load costs it
    #: ~0.04 s plus ~18 us per row (timed Warehouse.upsert loops: 3,000-row batches 30 us/row,
    #: 10,000 18-22 us/row). Against real BigQuery use 10 s or more (load jobs per project per day
    #: are limited).
    log_batch_size: int = 10_000
    log_flush_interval_s: float = 3.0
    #: After a failed warehouse write, wait this long before trying BigQuery again (spool meanwhile).
    log_retry_interval_s: float = 5.0
    #: Where downloaded bundles and the prediction spool live (default: under the state dir).
    work_dir: Path | None = None
    #: Log predictions to the warehouse (off only in unit tests).
    log_predictions: bool = True
    #: Answer ``POST /score`` in uvicorn's protocol callback (``fastpath.py``); FRAUDOPS_FAST_PATH=0
    #: serves it through plain ASGI instead (the benchmark compares both).
    fast_path: bool = True
    #: The clock event times are bounded against (FRAUDOPS_EVENT_CLOCK): ``server`` (production:
    #: the server's wall clock) or ``simulated`` (the newest event time accepted so far, starting
    #: from the warm start's newest warehouse transaction: the simulator streams accelerated event
    #: time, which runs days ahead of the wall clock; ``fraudops up`` runs the service so).
    event_clock: str = "server"
    #: How far ahead of / behind that clock an event time may be (FRAUDOPS_MAX_FUTURE_S /
    #: FRAUDOPS_MAX_PAST_S); None: the clock's default (``EVENT_CLOCK_DEFAULTS``). Further out: 422.
    max_future_s: float | None = None
    max_past_s: float | None = None
    #: Cap on the embedded online store's entities per family (FRAUDOPS_FEATURE_MAX_ENTITIES):
    #: past it the least recent entity is evicted (counted in /metrics; it restarts cold). Idle
    #: entities are evicted anyway once past their longest window (``features.online.TTL_US``).
    feature_max_entities: int = DEFAULT_MAX_ENTITIES
    #: How challengers get their sample (FRAUDOPS_SHADOW_TRANSPORT): ``process``, the in-process
    #: pool of supervised worker processes (``shadow.py``), or ``stream``, Redis Streams read by
    #: separate shadow workers (``streams.py``; the ``scale`` profile's default).
    shadow_transport: str = "process"

    def __post_init__(self) -> None:
        if self.shadow_transport not in SHADOW_TRANSPORTS:
            raise ConfigError(
                f"FRAUDOPS_SHADOW_TRANSPORT must be one of {list(SHADOW_TRANSPORTS)}, "
                f"got {self.shadow_transport!r}"
            )
        if self.shadow_transport == "stream" and not self.settings.redis_url:
            raise ConfigError("FRAUDOPS_SHADOW_TRANSPORT=stream needs Redis (FRAUDOPS_REDIS_URL)")
        if self.event_clock not in EVENT_CLOCK_DEFAULTS:
            known = sorted(EVENT_CLOCK_DEFAULTS)
            raise ConfigError(f"FRAUDOPS_EVENT_CLOCK must be one of {known}, got {self.event_clock!r}")
        for name in ("max_future_s", "max_past_s"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1e10:
                raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if self.feature_max_entities < 1:
            raise ConfigError(f"FRAUDOPS_FEATURE_MAX_ENTITIES must be >= 1, got {self.feature_max_entities}")

    @property
    def event_time_bounds_s(self) -> tuple[float, float]:
        """(seconds an event may be ahead of the clock, seconds it may be behind it)."""
        future, past = EVENT_CLOCK_DEFAULTS[self.event_clock]
        return (
            future if self.max_future_s is None else self.max_future_s,
            past if self.max_past_s is None else self.max_past_s,
        )

    @property
    def root(self) -> Path:
        path = self.work_dir or self.settings.state_dir / "serving"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @classmethod
    def from_env(cls, settings: Settings | None = None, **overrides: object) -> ServingOptions:
        s = settings or load_settings()
        base = cls(
            settings=s,
            alias_poll_s=_float("FRAUDOPS_ALIAS_POLL_S", 5.0),
            warm_days=_float("FRAUDOPS_WARM_DAYS", 30.0),
            label_sync_s=_float("FRAUDOPS_LABEL_SYNC_S", 5.0),
            budget_ms=_float("FRAUDOPS_SCORE_BUDGET_MS", 0.0),
            review_band=_float("FRAUDOPS_REVIEW_BAND", 0.0),
            shadow_sample_rate=s.scoring.shadow_sample_rate,
            shadow_queue_size=int(_float("FRAUDOPS_SHADOW_QUEUE_SIZE", 1000)),
            shadow_address_space_mb=int(_float("FRAUDOPS_SHADOW_MEM_MB", 2048)),
            shadow_hang_timeout_s=_float("FRAUDOPS_SHADOW_HANG_S", 5.0),
            shadow_slow_ms=_float("FRAUDOPS_SHADOW_SLOW_MS", 25.0),
            log_predictions=os.environ.get("FRAUDOPS_LOG_PREDICTIONS", "1") not in ("0", "false", "no"),
            log_batch_size=int(_float("FRAUDOPS_LOG_BATCH_SIZE", 10_000)),
            log_flush_interval_s=_float("FRAUDOPS_LOG_FLUSH_S", 3.0),
            fast_path=os.environ.get("FRAUDOPS_FAST_PATH", "1") not in ("0", "false", "no"),
            event_clock=s.event_clock,
            max_future_s=_optional_float("FRAUDOPS_MAX_FUTURE_S"),
            max_past_s=_optional_float("FRAUDOPS_MAX_PAST_S"),
            feature_max_entities=int(_float("FRAUDOPS_FEATURE_MAX_ENTITIES", DEFAULT_MAX_ENTITIES)),
            shadow_transport=os.environ.get("FRAUDOPS_SHADOW_TRANSPORT", "")
            or ("stream" if s.profile == "scale" else "process"),
            work_dir=Path(os.environ["FRAUDOPS_SERVING_DIR"])
            if os.environ.get("FRAUDOPS_SERVING_DIR")
            else None,
        )
        return base if not overrides else _replace(base, overrides)


def _replace(opts: ServingOptions, overrides: dict[str, object]) -> ServingOptions:
    from dataclasses import replace

    return replace(opts, **overrides)  # type: ignore[arg-type]


def deploy_token(settings: Settings) -> str:
    """The control API's bearer token: ``FRAUDOPS_DEPLOY_TOKEN``, else one generated locally.

    The generated token is written once to ``<state>/run/deploy_token`` (mode 0600) so the service
    and ``fraudops deploy`` on the same machine agree without anyone committing a secret.
    """
    if settings.scoring.deploy_token:
        return settings.scoring.deploy_token
    path = settings.run_dir / "deploy_token"
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token

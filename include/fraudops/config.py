"""Every endpoint, port, path and name fraudops uses, read from the environment with local defaults.

The defaults describe the embedded local stack (`fraudops up`): a BigQuery emulator on
127.0.0.1:9050, MLflow on 127.0.0.1:5000, Airflow on 127.0.0.1:8080 and the scoring service on
127.0.0.1:8000. Pointing the same code at managed services is a matter of environment variables:

* ``FRAUDOPS_BQ_ENDPOINT=""`` (empty) plus ``FRAUDOPS_BQ_PROJECT`` → real BigQuery with Application
  Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS`` or workload identity).
* ``MLFLOW_TRACKING_URI`` (or ``FRAUDOPS_MLFLOW_TRACKING_URI``) → a remote MLflow server, with
  its credentials in ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (or
  ``MLFLOW_TRACKING_TOKEN``), which MLflow's client reads. The local MLflow runs MLflow's
  basic-auth app; its credentials are created by ``fraudops up`` in
  ``.state/mlflow/auth/credentials.json`` (0600) and read from there by :func:`load_settings`.

No credentials live in this module or anywhere in the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fraudops.exceptions import ConfigError

#: Repository root when the package is installed editable from a checkout (include/fraudops/..).
REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None else value


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from err


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as err:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from err


def local_mlflow_credentials_file(state_dir: Path) -> Path:
    """Where the local stack keeps the credentials of the MLflow server it runs."""
    return state_dir / "mlflow" / "auth" / "credentials.json"


def wants_local_mlflow_credentials(tracking_uri: str) -> bool:
    """True when MLflow clients should use the local stack's credentials: none are set in the
    environment (where MLflow's client reads them) and the tracking server is on this machine
    (local credentials are never sent elsewhere)."""
    from urllib.parse import urlsplit

    if os.environ.get("MLFLOW_TRACKING_USERNAME") or os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return False
    return urlsplit(tracking_uri).hostname in ("127.0.0.1", "localhost", "::1")


def _use_local_mlflow_credentials(state_dir: Path, tracking_uri: str) -> None:
    """Put the local MLflow's credentials where MLflow's client looks for them (the environment
    only), when :func:`wants_local_mlflow_credentials`."""
    import json

    if not wants_local_mlflow_credentials(tracking_uri):
        return
    path = local_mlflow_credentials_file(state_dir)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the local MLflow credentials {path}: {err}") from err
    os.environ["MLFLOW_TRACKING_USERNAME"] = str(doc["username"])
    os.environ["MLFLOW_TRACKING_PASSWORD"] = str(doc["password"])


#: The clocks ``Settings.event_clock`` knows.
EVENT_CLOCKS = ("server", "simulated")


def profile_file(state_dir: Path) -> Path:
    """Where ``fraudops up --profile`` records the profile it started (``down``/``status`` read it)."""
    return state_dir / "run" / "profile"


def recorded_profile(state_dir: Path) -> str:
    """The profile ``fraudops up`` last started in ``state_dir`` (``local`` when none)."""
    try:
        return profile_file(state_dir).read_text().strip() or "local"
    except OSError:
        return "local"


def _default_state_dir() -> Path:
    return Path(_env("FRAUDOPS_STATE_DIR", str(REPO_ROOT / ".state"))).resolve()


@dataclass(frozen=True)
class WarehouseConfig:
    """Where the warehouse lives. An empty ``endpoint`` means real BigQuery."""

    project: str = "fraudops-local"
    dataset: str = "fraud"
    location: str = "US"
    #: REST endpoint of a BigQuery-API emulator; empty string → Google's API with ADC.
    endpoint: str = "http://127.0.0.1:9050"
    emulator_grpc_port: int = 9060
    #: Seconds a single API call may take before it is abandoned (the client's default is 600 s
    #: of retries, far too long to notice an outage).
    timeout_s: float = 60.0

    @property
    def is_emulator(self) -> bool:
        return bool(self.endpoint)

    def table_id(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str = "http://127.0.0.1:5000"
    host: str = "127.0.0.1"
    port: int = 5000
    model_name: str = "fraud-detector"
    experiment: str = "fraudops"


@dataclass(frozen=True)
class AirflowConfig:
    host: str = "127.0.0.1"
    port: int = 8080

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class ScoringConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    #: Bearer token for the control API (POST /deploy). Locally generated into the state folder
    #: when unset; in production it comes from a secret store.
    deploy_token: str = ""
    #: Scoped control-API tokens (JSON, ``fraudops.serving.deploy.parse_grants``).
    deploy_tokens: str = ""
    #: Share of live traffic mirrored to a challenger that has no rate of its own (a booking, the
    #: console or ``POST /deploy`` set one per challenger, within the limits below).
    shadow_sample_rate: float = 0.1
    #: The shadow pool's policy for per-challenger rates: fewer than ``min`` would starve a release
    #: of evidence for weeks, more than ``max`` would take the pool's capacity from the others.
    shadow_sample_rate_min: float = 0.01
    shadow_sample_rate_max: float = 0.5

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def sample_rate_refusal(self, rate: float) -> str | None:
        """Why a challenger may not sample ``rate`` of live traffic (None: it may)."""
        lo, hi = self.shadow_sample_rate_min, self.shadow_sample_rate_max
        if not lo <= rate <= hi:
            return (
                f"sample rate {rate:g} is outside the shadow pool's limits [{lo:g}, {hi:g}] "
                "(FRAUDOPS_SHADOW_SAMPLE_RATE_MIN / _MAX)"
            )
        return None


#: The stack profiles ``fraudops up --profile`` knows: ``local`` (one scoring process, embedded
#: online state, in-process shadow pool, LocalExecutor on SQLite) and ``scale`` (replicas behind
#: HAProxy, online state in Redis, shadow traffic through Redis Streams to separate shadow workers).
PROFILES = ("local", "scale")


@dataclass(frozen=True)
class ScaleConfig:
    """The ``scale`` profile's shape (``FRAUDOPS_SCALE_*``); unused by the ``local`` profile."""

    #: Scoring replicas behind the load balancer (FRAUDOPS_SCALE_REPLICAS).
    replicas: int = 3
    #: Shadow workers consuming the mirrored stream (FRAUDOPS_SCALE_SHADOW_WORKERS).
    shadow_workers: int = 2
    #: The profile's own redis-server (FRAUDOPS_SCALE_REDIS_PORT): online state, shadow streams.
    redis_port: int = 6390
    #: Replica ``i`` (1-based) listens on ``replica_base_port + i``; HAProxy on the scoring port.
    replica_base_port: int = 8100
    #: HAProxy's statistics page (CSV at ``/stats;csv``), loopback only.
    haproxy_stats_port: int = 8404
    #: A mirrored event delivered this many times without being answered goes to the dead letters.
    dead_letter_after: int = 3
    #: Airflow's metadata database: the profile's own PostgreSQL (FRAUDOPS_SCALE_POSTGRES_PORT).
    postgres_port: int = 5442
    #: Airflow Celery workers (FRAUDOPS_SCALE_CELERY_WORKERS), each running this many tasks at once
    #: (FRAUDOPS_SCALE_CELERY_CONCURRENCY).
    celery_workers: int = 2
    celery_concurrency: int = 1

    def replica_ports(self) -> list[int]:
        return [self.replica_base_port + i for i in range(1, self.replicas + 1)]


@dataclass(frozen=True)
class Settings:
    state_dir: Path = field(default_factory=_default_state_dir)
    warehouse: WarehouseConfig = field(default_factory=WarehouseConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    airflow: AirflowConfig = field(default_factory=AirflowConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    redis_url: str = ""
    #: ``local`` or ``scale`` (FRAUDOPS_PROFILE, else what ``fraudops up --profile`` recorded).
    profile: str = "local"
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    #: What "now" is in event time (FRAUDOPS_EVENT_CLOCK): ``server``, the server's wall clock
    #: (production: never a value read from data someone could have written), or ``simulated``,
    #: the newest event the simulator's accelerated stream produced (read from the warehouse /
    #: the scoring service's newest accepted event). Default: ``simulated`` on the BigQuery
    #: emulator (only the local stack and the tests run it), ``server`` on real BigQuery.
    event_clock: str = "server"

    # Folders inside the state dir: everything local and git-ignored.
    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def bq_data_dir(self) -> Path:
        return self.state_dir / "bigquery"

    @property
    def mlflow_dir(self) -> Path:
        return self.state_dir / "mlflow"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"


def load_settings() -> Settings:
    """Read settings from the environment (call again after changing os.environ)."""
    mlflow_host = _env("FRAUDOPS_MLFLOW_HOST", "127.0.0.1")
    mlflow_port = _env_int("FRAUDOPS_MLFLOW_PORT", 5000)
    tracking = _env(
        "FRAUDOPS_MLFLOW_TRACKING_URI",
        _env("MLFLOW_TRACKING_URI", f"http://{mlflow_host}:{mlflow_port}"),
    )
    bq_port = _env_int("FRAUDOPS_BQ_PORT", 9050)
    endpoint = _env("FRAUDOPS_BQ_ENDPOINT", f"http://127.0.0.1:{bq_port}")
    state_dir = _default_state_dir()
    profile = _env("FRAUDOPS_PROFILE", "") or recorded_profile(state_dir)
    if profile not in PROFILES:
        raise ConfigError(f"FRAUDOPS_PROFILE must be one of {list(PROFILES)}, got {profile!r}")
    scale = ScaleConfig(
        replicas=_env_int("FRAUDOPS_SCALE_REPLICAS", 3),
        shadow_workers=_env_int("FRAUDOPS_SCALE_SHADOW_WORKERS", 2),
        redis_port=_env_int("FRAUDOPS_SCALE_REDIS_PORT", 6390),
        replica_base_port=_env_int("FRAUDOPS_SCALE_REPLICA_BASE_PORT", 8100),
        haproxy_stats_port=_env_int("FRAUDOPS_SCALE_HAPROXY_STATS_PORT", 8404),
        dead_letter_after=_env_int("FRAUDOPS_SCALE_DEAD_LETTER_AFTER", 3),
        postgres_port=_env_int("FRAUDOPS_SCALE_POSTGRES_PORT", 5442),
        celery_workers=_env_int("FRAUDOPS_SCALE_CELERY_WORKERS", 2),
        celery_concurrency=_env_int("FRAUDOPS_SCALE_CELERY_CONCURRENCY", 1),
    )
    counts = (scale.replicas, scale.shadow_workers, scale.celery_workers, scale.celery_concurrency)
    if not (all(1 <= n <= 64 for n in counts) and scale.dead_letter_after >= 1):
        raise ConfigError(
            "FRAUDOPS_SCALE_REPLICAS, _SHADOW_WORKERS, _CELERY_WORKERS and _CELERY_CONCURRENCY must be "
            f"within [1, 64] and FRAUDOPS_SCALE_DEAD_LETTER_AFTER >= 1, got {counts} and "
            f"{scale.dead_letter_after}"
        )
    redis_default = f"redis://127.0.0.1:{scale.redis_port}/0" if profile == "scale" else ""
    settings = Settings(
        state_dir=state_dir,
        warehouse=WarehouseConfig(
            project=_env("FRAUDOPS_BQ_PROJECT", "fraudops-local"),
            dataset=_env("FRAUDOPS_BQ_DATASET", "fraud"),
            location=_env("FRAUDOPS_BQ_LOCATION", "US"),
            endpoint=endpoint,
            emulator_grpc_port=_env_int("FRAUDOPS_BQ_GRPC_PORT", 9060),
            timeout_s=_env_float("FRAUDOPS_BQ_TIMEOUT_S", 60.0),
        ),
        mlflow=MlflowConfig(
            tracking_uri=tracking,
            host=mlflow_host,
            port=mlflow_port,
            model_name=_env("FRAUDOPS_MODEL_NAME", "fraud-detector"),
            experiment=_env("FRAUDOPS_MLFLOW_EXPERIMENT", "fraudops"),
        ),
        airflow=AirflowConfig(
            host=_env("FRAUDOPS_AIRFLOW_HOST", "127.0.0.1"),
            port=_env_int("FRAUDOPS_AIRFLOW_PORT", 8080),
        ),
        scoring=ScoringConfig(
            host=_env("FRAUDOPS_SCORING_HOST", "127.0.0.1"),
            port=_env_int("FRAUDOPS_SCORING_PORT", 8000),
            deploy_token=_env("FRAUDOPS_DEPLOY_TOKEN", ""),
            deploy_tokens=_env("FRAUDOPS_DEPLOY_TOKENS", ""),
            shadow_sample_rate=_env_float("FRAUDOPS_SHADOW_SAMPLE_RATE", 0.1),
            shadow_sample_rate_min=_env_float("FRAUDOPS_SHADOW_SAMPLE_RATE_MIN", 0.01),
            shadow_sample_rate_max=_env_float("FRAUDOPS_SHADOW_SAMPLE_RATE_MAX", 0.5),
        ),
        redis_url=_env("FRAUDOPS_REDIS_URL", redis_default),
        profile=profile,
        scale=scale,
        event_clock=_env("FRAUDOPS_EVENT_CLOCK", "") or ("simulated" if endpoint else "server"),
    )
    if settings.event_clock not in EVENT_CLOCKS:
        raise ConfigError(
            f"FRAUDOPS_EVENT_CLOCK must be one of {list(EVENT_CLOCKS)}, got {settings.event_clock!r}"
        )
    rate = settings.scoring.shadow_sample_rate
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"FRAUDOPS_SHADOW_SAMPLE_RATE must be within [0, 1], got {rate}")
    lo, hi = settings.scoring.shadow_sample_rate_min, settings.scoring.shadow_sample_rate_max
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(
            f"FRAUDOPS_SHADOW_SAMPLE_RATE_MIN and _MAX must satisfy 0 < min <= max <= 1, got {lo} and {hi}"
        )
    _use_local_mlflow_credentials(settings.state_dir, tracking)
    return settings

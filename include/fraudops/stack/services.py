"""The local stack: BigQuery emulator, MLflow server, scoring service and Airflow's four components
(API server, scheduler, DAG processor, triggerer, each its own service).

``up`` starts them in dependency order, waits for each to be healthy, creates the warehouse schema
and applies ``airflow_settings.yaml``; ``down`` stops exactly what ``up`` started (pid files in the
state folder); ``status`` reports each service truthfully.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fraudops.config import (
    REPO_ROOT,
    Settings,
    load_settings,
    local_mlflow_credentials_file,
    wants_local_mlflow_credentials,
)
from fraudops.exceptions import ServiceError
from fraudops.stack import process
from fraudops.stack.process import ServiceSpec, ServiceState, http_ok

if TYPE_CHECKING:
    from fraudops.clients.airflow import AirflowClient

BIN = Path(sys.executable).parent
DUCKDB_VERSION = "v1.5.5"


def venv_bin(name: str) -> str:
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise ServiceError(name, f"executable {name!r} not found (run `make setup`)")
    return found


def provision_duckdb_spatial(home: Path) -> Path:
    """Copy DuckDB's spatial extension from its pip wheel into ``home``/.duckdb.

    bqemulator runs ``INSTALL spatial`` at start, which would download it; with the file already
    in DuckDB's extension folder no download happens (no internet needed).
    """
    import duckdb_extension_spatial  # shipped by the duckdb-extension-spatial wheel

    src = (
        Path(duckdb_extension_spatial.__file__).parent
        / "extensions"
        / DUCKDB_VERSION
        / "spatial.duckdb_extension"
    )
    if not src.exists():
        raise ServiceError("bigquery-emulator", f"DuckDB spatial extension missing at {src}")
    dest_dir = home / ".duckdb" / "extensions" / DUCKDB_VERSION / "linux_amd64"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    if not dest.exists() or dest.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dest)
    return dest


def bqemulator_spec(
    data_dir: Path, log_dir: Path, run_dir: Path, project: str, port: int, grpc_port: int
) -> ServiceSpec:
    home = data_dir / "home"
    provision_duckdb_spatial(home)
    (data_dir / "db").mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    return ServiceSpec(
        name="bigquery-emulator",
        command=[
            sys.executable,
            "-m",
            "fraudops.stack.bqemu",  # bqemulator's CLI with a bounded DuckDB memory
            "start",
            "--persistent",
            "--data-dir",
            str(data_dir / "db"),
            "--project",
            project,
            "--rest-host",
            "127.0.0.1",
            "--rest-port",
            str(port),
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            str(grpc_port),
            "--log-format",
            "json",
            "--log-level",
            "warning",
        ],
        url=url,
        health=lambda: http_ok(f"{url}/bigquery/v2/projects/{project}/datasets"),
        log_file=log_dir / "bigquery-emulator.log",
        pid_file=run_dir / "bigquery-emulator.pid",
        env={
            # DuckDB looks for extensions under $HOME/.duckdb: keep the user's home untouched.
            "HOME": str(home),
            # Every write keeps a time-travel snapshot of the table (7 days by default) and every
            # query result is cached for a day: under a stream of small MERGEs both grow without
            # bound (measured: the emulator reached 21 GB and was OOM-killed after ~25 minutes).
            # Nothing here uses time travel or needs a result cache.
            "BQEMU_TIME_TRAVEL_RETENTION_DAYS": os.environ.get("BQEMU_TIME_TRAVEL_RETENTION_DAYS", "0"),
            "BQEMU_QUERY_CACHE_TTL_SECONDS": os.environ.get("BQEMU_QUERY_CACHE_TTL_SECONDS", "0"),
        },
        cwd=data_dir,
        ready_timeout_s=90.0,
        port=port,
    )


@dataclass(frozen=True)
class MlflowAuth:
    """The admin account of a local MLflow server (MLflow's basic-auth app) and the secret key its
    forms' CSRF protection signs with. The platform's clients use this account."""

    username: str
    password: str
    secret_key: str

    def client_env(self) -> dict[str, str]:
        """What MLflow's client reads its credentials from."""
        return {"MLFLOW_TRACKING_USERNAME": self.username, "MLFLOW_TRACKING_PASSWORD": self.password}


def mlflow_auth(path: Path) -> MlflowAuth:
    """The credentials in ``path``; created there (mode 0600) on first use, from
    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` when both are set (so a user picks
    their own), else a random password for user ``fraudops``. The server creates the account from
    them the first time it starts on an empty auth database, and ignores them afterwards."""
    import secrets

    try:
        doc = json.loads(path.read_text())
        return MlflowAuth(str(doc["username"]), str(doc["password"]), str(doc["secret_key"]))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError) as err:
        raise ServiceError("mlflow", f"unreadable credentials file {path}: {err}") from err
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    auth = MlflowAuth(
        username=user if user and password else "fraudops",
        password=password if user and password else secrets.token_urlsafe(18),
        secret_key=secrets.token_hex(32),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"username": auth.username, "password": auth.password, "secret_key": auth.secret_key}, f)
    os.replace(tmp, path)
    return auth


def local_mlflow_auth(settings: Settings) -> MlflowAuth:
    """The local stack's MLflow credentials (``.state/mlflow/auth/credentials.json``)."""
    return mlflow_auth(local_mlflow_credentials_file(settings.state_dir))


def _basic_auth_ini(auth_dir: Path, auth: MlflowAuth) -> Path:
    """The basic-auth app's configuration: its own user database next to the server's state;
    authenticated users may read what they did not create; checked credentials cached 60 s (a
    PBKDF2 check per request would cost every registry call)."""
    auth_dir.mkdir(parents=True, exist_ok=True)
    ini = auth_dir / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{auth_dir / 'basic_auth.db'}\n"
        f"admin_username = {auth.username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    return ini


def mlflow_spec(
    mlflow_dir: Path,
    log_dir: Path,
    run_dir: Path,
    host: str,
    port: int,
    *,
    auth: MlflowAuth,
    name: str = "mlflow",
    store_args: list[str] | None = None,
) -> ServiceSpec:
    """One MLflow server with authentication (MLflow's basic-auth app: every API call needs
    ``auth``'s account, only ``/health`` is open): by default tracking + registry in
    ``mlflow_dir/mlflow.db`` serving its own artifacts; ``store_args`` replaces those store options
    (e.g. an artifacts-only server)."""
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    ini = _basic_auth_ini(mlflow_dir / "auth", auth)
    if store_args is None:
        (mlflow_dir / "artifacts").mkdir(exist_ok=True)
        store_args = [
            "--backend-store-uri",
            f"sqlite:///{mlflow_dir / 'mlflow.db'}",
            "--artifacts-destination",
            str(mlflow_dir / "artifacts"),
            "--serve-artifacts",
        ]
    url = f"http://{host}:{port}"
    return ServiceSpec(
        name=name,
        command=[
            sys.executable,
            "-m",
            "fraudops.stack.mlflow_exec",  # `mlflow server`, exec'ing uvicorn instead of supervising it
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
            "--app-name",
            "basic-auth",
            *store_args,
        ],
        url=url,
        health=lambda: http_ok(f"{url}/health"),
        log_file=log_dir / f"{name}.log",
        pid_file=run_dir / f"{name}.pid",
        env={
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            # The server's job runner (GenAI scorers) forks a scheduler and ~5 huey consumers,
            # ~0.9 GB resident that the registry and tracking never use.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": auth.password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": auth.secret_key,
        },
        cwd=mlflow_dir,
        ready_timeout_s=120.0,
        port=port,
    )


def redis_ping(port: int, host: str = "127.0.0.1") -> bool:
    """True when a Redis server answers PING on ``host:port`` (no client library needed)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_spec(
    data_dir: Path, log_dir: Path, run_dir: Path, port: int, *, persistent: bool = False
) -> ServiceSpec:
    """A private redis-server (Debian package) on loopback for shared online feature state; with
    ``persistent`` an append-only file in ``data_dir`` (fsync every second: a restart keeps the
    state), else nothing on disk."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise ServiceError(
            "redis", "redis-server is not installed: run `make setup` (apt-get install redis-server)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / "redis.log"
    return ServiceSpec(
        name="redis",
        command=[
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if persistent else "no",
            "--appendfsync",
            "everysec",
            "--dir",
            str(data_dir),
            "--logfile",
            str(log_file),
        ],
        url=f"redis://127.0.0.1:{port}/0",
        health=lambda: redis_ping(port),
        log_file=log_file,
        pid_file=run_dir / "redis.pid",
        cwd=data_dir,
        ready_timeout_s=60.0,  # a persistent one replays its append-only file first
        port=port,
    )


def mlflow_client_env(settings: Settings) -> dict[str, str]:
    """MLflow credentials for a service's clients: the local server's when
    ``wants_local_mlflow_credentials`` (else those of the environment, which services inherit)."""
    if not wants_local_mlflow_credentials(settings.mlflow.tracking_uri):
        return {}
    return local_mlflow_auth(settings).client_env()


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment for every Airflow process: this repo's DAGs/plugins, examples off, loopback only."""
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__API__HOST": settings.airflow.host,
        "AIRFLOW__API__PORT": str(settings.airflow.port),
        "AIRFLOW__API__BASE_URL": settings.airflow.url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow.url}/execution/",
        # Airflow's users and roles (viewer, user, op, admin); the model console derives its roles
        # from them (viewer; user = data scientist; op/admin = release manager).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": os.environ.get("FRAUDOPS_AIRFLOW_USERS", "admin:admin"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # A 2-core machine: the LocalExecutor keeps one worker process per parallel slot (~135 MB
        # each, forked at start; 32 slots by default: measured 6.5 GB for Airflow alone during the
        # demo) and the API server one process per worker. Two task slots (deferrable sensors hold
        # none) and one API worker.
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "2"),
        "AIRFLOW__API__WORKERS": os.environ.get("AIRFLOW__API__WORKERS", "1"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Airflow runs tasks with `airflow` from PATH: the venv's bin must come first.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # Domain code in tasks reads the same settings as the CLI.
        "FRAUDOPS_STATE_DIR": str(settings.state_dir),
        "FRAUDOPS_BQ_PROJECT": settings.warehouse.project,
        "FRAUDOPS_BQ_DATASET": settings.warehouse.dataset,
        "FRAUDOPS_BQ_ENDPOINT": settings.warehouse.endpoint,
        "FRAUDOPS_MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        **mlflow_client_env(settings),
        "FRAUDOPS_SCORING_HOST": settings.scoring.host,
        "FRAUDOPS_SCORING_PORT": str(settings.scoring.port),
        "PYTHONUNBUFFERED": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        **_scale_airflow_env(settings),
    }


def _scale_airflow_env(settings: Settings) -> dict[str, str]:
    """The scale profile's Airflow: CeleryExecutor, PostgreSQL (``stack/scale.py``)."""
    if settings.profile != "scale":
        return {}
    from fraudops.stack.scale import airflow_scale_env

    return airflow_scale_env(settings)


def _airflow_health(url: str) -> dict[str, object]:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=3) as resp:
            return dict(json.loads(resp.read()))
    except Exception:
        return {}


#: Airflow's components as ``/api/v2/monitor/health`` names them (besides the metadata database).
AIRFLOW_COMPONENTS = ("scheduler", "dag_processor", "triggerer")


def airflow_healthy(url: str, components: tuple[str, ...] = ("metadatabase", *AIRFLOW_COMPONENTS)) -> bool:
    """Whether the API server at ``url`` answers and reports each of ``components`` healthy
    (the scheduler, DAG processor and triggerer by their heartbeats in the metadata database)."""
    body = _airflow_health(url)
    return all(isinstance(c := body.get(k), dict) and c.get("status") == "healthy" for k in components)


def scoring_spec(settings: Settings) -> ServiceSpec:
    """How ``fraudops up`` runs the scoring service (after MLflow). ``--ensure-champion`` bootstraps a
    first champion on an empty registry before serving (``stack/bootstrap.py``), so the readiness
    timeout covers a short backfill and training; ``/health`` is 200 only once a champion is
    loaded, which is what ``up`` waits for."""
    url = settings.scoring.url
    return ServiceSpec(
        name="scoring",
        command=[sys.executable, "-m", "fraudops.serving", "--ensure-champion", "--log-level", "warning"],
        url=url,
        health=lambda: http_ok(f"{url}/health"),
        log_file=settings.log_dir / "scoring.log",
        pid_file=settings.run_dir / "scoring.pid",
        env={
            "FRAUDOPS_STATE_DIR": str(settings.state_dir),
            "FRAUDOPS_MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
            "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
            **mlflow_client_env(settings),
            "FRAUDOPS_BQ_ENDPOINT": settings.warehouse.endpoint,
            # The local stack serves the simulator's accelerated event time (``fraudops demo``):
            # event times are bounded against the newest one accepted, not the wall clock.
            "FRAUDOPS_EVENT_CLOCK": "simulated",
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        },
        cwd=settings.state_dir,
        ready_timeout_s=900.0,
        port=settings.scoring.port,
    )


def _run_with_airflow_env(
    settings: Settings, command: list[str], what: str, timeout_s: float, cwd: Path | None = None
) -> str:
    """Run ``command`` in a child with the stack's Airflow environment; its stdout, or
    ``ServiceError`` naming ``what`` with the end of its stderr."""
    result = subprocess.run(
        command,
        env={**os.environ, **airflow_env(settings)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError("airflow", f"{what} failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip()


def migrate_airflow_db(settings: Settings) -> None:
    """``airflow db migrate`` with the stack's Airflow environment: creates or upgrades the
    metadata database before the API server starts (what ``airflow standalone`` did first)."""
    if settings.profile == "scale":
        from fraudops.stack.scale import ensure_airflow_database

        ensure_airflow_database(settings)
    command = [venv_bin("airflow"), "db", "migrate"]
    _run_with_airflow_env(settings, command, "airflow db migrate", 600, cwd=settings.airflow_home)


def airflow_specs(settings: Settings) -> list[ServiceSpec]:
    """Airflow's components, each a service of its own, in start order: the API server (service
    ``airflow``: the UI and REST API; it migrates the metadata database first and creates the admin
    password), then the scheduler (LocalExecutor), the DAG processor and the triggerer, each healthy
    once the API server reports its heartbeat. The same processes ``airflow standalone`` runs, without
    its supervising parent and without the scheduler's and triggerer's log servers: every component
    writes task logs to the same local folder, which the API server reads directly (~450 MB less)."""
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    url = settings.airflow.url
    env = airflow_env(settings)

    def component(name: str, command: list[str], health_key: str) -> ServiceSpec:
        return ServiceSpec(
            name=f"airflow-{name}",
            command=[venv_bin("airflow"), *command],
            url=url,
            health=lambda: airflow_healthy(url, (health_key,)),
            log_file=settings.log_dir / f"airflow-{name}.log",
            pid_file=settings.run_dir / f"airflow-{name}.pid",
            env=env,
            cwd=settings.airflow_home,
            ready_timeout_s=180.0,
        )

    api = ServiceSpec(
        name="airflow",
        command=[venv_bin("airflow"), "api-server", "--port", str(settings.airflow.port)],
        url=url,
        health=lambda: airflow_healthy(url, ("metadatabase",)),
        log_file=settings.log_dir / "airflow.log",
        pid_file=settings.run_dir / "airflow.pid",
        env=env,
        cwd=settings.airflow_home,
        ready_timeout_s=240.0,
        port=settings.airflow.port,
        prepare=lambda: migrate_airflow_db(settings),
    )
    specs = [
        api,
        component("scheduler", ["scheduler", "--skip-serve-logs"], "scheduler"),
        component("dag-processor", ["dag-processor"], "dag_processor"),
        component("triggerer", ["triggerer", "--skip-serve-logs"], "triggerer"),
    ]
    if settings.profile == "scale":  # the scheduler hands tasks to Celery workers
        from fraudops.stack.scale import celery_worker_specs

        specs.extend(celery_worker_specs(settings, env))
    return specs


def airflow_password(settings: Settings) -> str | None:
    path = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    try:
        return str(json.loads(path.read_text()).get("admin"))
    except (OSError, ValueError):
        return None


def apply_airflow_settings(settings: Settings, settings_file: Path | None = None) -> str:
    """Apply airflow_settings.yaml (connections, variables, pools) in a child with Airflow's env."""
    settings_file = settings_file or REPO_ROOT / "airflow_settings.yaml"
    command = [sys.executable, "-m", "fraudops.stack.airflow_settings", str(settings_file)]
    return _run_with_airflow_env(settings, command, f"applying {settings_file.name}", 300)


def platform_airflow_client(settings: Settings) -> AirflowClient:
    """Airflow's REST client with the platform's account: ``FRAUDOPS_AIRFLOW_USERNAME``/``_PASSWORD``,
    else the local stack's admin (its generated password); ``ServiceError`` when there is neither."""
    from fraudops.clients.airflow import AirflowClient

    user = os.environ.get("FRAUDOPS_AIRFLOW_USERNAME")
    password = os.environ.get("FRAUDOPS_AIRFLOW_PASSWORD")
    if not (user and password):
        user, password = "admin", airflow_password(settings)
    if not password:
        raise ServiceError(
            "airflow",
            "no Airflow account: set FRAUDOPS_AIRFLOW_USERNAME/PASSWORD or start the stack (`fraudops up`)",
        )
    return AirflowClient(settings.airflow.url, user, password)


@dataclass
class Stack:
    settings: Settings

    @classmethod
    def from_env(cls) -> Stack:
        return cls(load_settings())

    def specs(self) -> list[ServiceSpec]:
        s = self.settings
        specs: list[ServiceSpec] = []
        if s.warehouse.is_emulator:
            port = int(s.warehouse.endpoint.rsplit(":", 1)[-1].strip("/"))
            specs.append(
                bqemulator_spec(
                    s.bq_data_dir,
                    s.log_dir,
                    s.run_dir,
                    s.warehouse.project,
                    port,
                    s.warehouse.emulator_grpc_port,
                )
            )
        if s.mlflow.tracking_uri.startswith(f"http://{s.mlflow.host}:{s.mlflow.port}") and s.mlflow.host in (
            "127.0.0.1",
            "localhost",
        ):
            auth = local_mlflow_auth(s)
            ml = s.mlflow
            specs.append(mlflow_spec(s.mlflow_dir, s.log_dir, s.run_dir, ml.host, ml.port, auth=auth))
        if s.profile == "scale":  # Redis, replicas behind HAProxy, stream shadow workers
            from fraudops.stack.scale import scale_specs

            specs.extend(scale_specs(s))
        else:  # scoring service (issue 6): bootstraps a champion on an empty registry, then serves.
            specs.append(scoring_spec(s))
        if s.profile == "scale":  # Airflow's metadata database
            from fraudops.stack.scale import postgres_spec

            specs.append(postgres_spec(s))
        specs.extend(airflow_specs(s))
        return specs

    def up(self, echo: bool = True) -> list[ServiceState]:
        from fraudops.warehouse import Warehouse

        def say(msg: str) -> None:
            if echo:
                print(msg, flush=True)

        for spec in self.specs():
            say(f"starting {spec.name} ...")
            process.start(spec)
            say(f"  {spec.name} healthy at {spec.url}")
            if spec.name == "bigquery-emulator":
                changes = Warehouse(self.settings.warehouse).ensure_schema()
                say(f"  warehouse schema: {', '.join(changes) if changes else 'up to date'}")
            if spec.name == "airflow-triggerer":  # the last of Airflow's components
                say(f"  {apply_airflow_settings(self.settings)}")
        return self.status()

    def down(self) -> list[str]:
        stopped = []
        for spec in reversed(self.specs()):
            if process.stop(spec):
                stopped.append(spec.name)
        return stopped

    def status(self) -> list[ServiceState]:
        return [process.state(spec) for spec in self.specs()]

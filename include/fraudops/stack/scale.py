"""The ``scale`` profile's services (``fraudops up --profile scale``).

Instead of one scoring process: a private ``redis-server`` (online feature state shared by the
replicas, and the shadow streams; append-only file so a restart keeps the state), N scoring
replicas (``FRAUDOPS_SCALE_REPLICAS``) each under ``keepalive`` (started again when killed) on
ports ``replica_base_port + i``, **HAProxy** on the scoring port in front of them (health checks,
retries of failed requests on another replica, a replica that stops is drained: new connections go
elsewhere while it finishes what it holds), and M stream shadow workers
(``FRAUDOPS_SCALE_SHADOW_WORKERS``) each under ``keepalive``. The URL clients use does not change:
HAProxy listens where the single scoring service did.

Scoring is idempotent, which is what makes the balancer's retries safe: the online state records
an event as a sorted-set member keyed by its transaction id (a retried event is not counted twice)
and the prediction row is written with a keyed MERGE.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from fraudops.config import Settings
from fraudops.exceptions import ServiceError
from fraudops.stack import services
from fraudops.stack.process import ServiceSpec, http_ok


def redis_spec(settings: Settings) -> ServiceSpec:
    """The profile's redis-server: loopback, its own folder, append-only file (fsync every second)."""
    s = settings
    return services.redis_spec(
        s.state_dir / "redis", s.log_dir, s.run_dir, s.scale.redis_port, persistent=True
    )


def child_pid_file(settings: Settings, name: str) -> Path:
    """Where ``keepalive`` records the pid of the process it runs for service ``name``."""
    return settings.run_dir / f"{name}.child.pid"


def _keepalive(settings: Settings, name: str, command: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fraudops.stack.keepalive",
        "--child-pid-file",
        str(child_pid_file(settings, name)),
        "--",
        *command,
    ]


def _service_env(settings: Settings) -> dict[str, str]:
    return {
        "FRAUDOPS_STATE_DIR": str(settings.state_dir),
        "FRAUDOPS_PROFILE": "scale",
        "FRAUDOPS_REDIS_URL": settings.redis_url,
        "FRAUDOPS_MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        **services.mlflow_client_env(settings),
        "FRAUDOPS_BQ_ENDPOINT": settings.warehouse.endpoint,
        "FRAUDOPS_BQ_PROJECT": settings.warehouse.project,
        "FRAUDOPS_BQ_DATASET": settings.warehouse.dataset,
        "FRAUDOPS_EVENT_CLOCK": settings.event_clock,
        "PYTHONUNBUFFERED": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def bootstrap(settings: Settings) -> None:
    """A first champion on an empty registry (what ``--ensure-champion`` does for one service),
    once, before the replicas start: N replicas must not race to train it."""
    env = {**os.environ, **_service_env(settings)}
    result = subprocess.run(
        [sys.executable, "-m", "fraudops.stack.bootstrap"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode != 0:
        raise ServiceError("scoring-1", f"bootstrapping a first champion failed:\n{result.stderr[-2000:]}")


def replica_specs(settings: Settings) -> list[ServiceSpec]:
    """Scoring replicas ``scoring-1`` .. ``scoring-N``, each under keepalive with its own work folder
    (bundle cache, prediction spool: a spool belongs to one process)."""
    specs = []
    for i, port in enumerate(settings.scale.replica_ports(), 1):
        name = f"scoring-{i}"
        url = f"http://127.0.0.1:{port}"
        specs.append(
            ServiceSpec(
                name=name,
                command=_keepalive(
                    settings,
                    name,
                    [sys.executable, "-m", "fraudops.serving", "--port", str(port), "--log-level", "warning"],
                ),
                url=url,
                health=lambda url=url: http_ok(f"{url}/health"),  # type: ignore[misc]
                log_file=settings.log_dir / f"{name}.log",
                pid_file=settings.run_dir / f"{name}.pid",
                env={
                    **_service_env(settings),
                    "FRAUDOPS_SCORING_PORT": str(port),
                    "FRAUDOPS_SERVING_DIR": str(settings.state_dir / "serving" / name),
                },
                cwd=settings.state_dir,
                ready_timeout_s=900.0,
                port=port,
                prepare=(lambda: bootstrap(settings)) if i == 1 else None,
            )
        )
    return specs


def haproxy_config(settings: Settings) -> str:
    """HAProxy's configuration for the replicas (see the module docstring)."""
    servers = "\n".join(
        f"    server scoring-{i} 127.0.0.1:{port} check"
        for i, port in enumerate(settings.scale.replica_ports(), 1)
    )
    run = settings.run_dir
    return f"""# Written by fraudops (stack/scale.py) at every start: edit FRAUDOPS_SCALE_* instead.
global
    log stderr format raw local0 notice
    pidfile {run / "haproxy.haproxy-pid"}
    stats socket {run / "haproxy.sock"} mode 600 level admin
    maxconn 4096
    # A request is retried only if it is whole in one buffer (16 KiB by default): a /score
    # request is ~1 KiB; a batch request over 64 KiB is not retried.
    tune.bufsize 65536

defaults
    mode http
    log global
    option dontlognull
    timeout connect 1s
    timeout client 30s
    timeout server 10s
    timeout http-request 10s
    timeout http-keep-alive 30s
    # A request whose replica refused the connection, closed it without an answer (killed), or
    # answered 503 (not ready) is sent again, to another replica (redispatch), up to 3 times.
    # HAProxy retries POSTs too: scoring is idempotent (online state and prediction rows are
    # keyed by transaction id), so a replayed request changes nothing. The body is read whole
    # before the first attempt (http-buffer-request): otherwise HAProxy cannot replay it.
    option http-buffer-request
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout 503

frontend scoring
    bind {settings.scoring.host}:{settings.scoring.port}
    default_backend replicas

backend replicas
    balance roundrobin
    # Health checks every 500 ms: a replica is out after 2 failures (a killed one within ~1 s;
    # its in-flight requests are retried above) and back after 2 successes.
    option httpchk
    http-check send meth GET uri /health
    http-check expect status 200
    default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 2
{servers}

frontend stats
    bind 127.0.0.1:{settings.scale.haproxy_stats_port}
    stats enable
    stats uri /stats
    stats refresh 5s
"""


def haproxy_spec(settings: Settings) -> ServiceSpec:
    exe = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if exe is None:
        raise ServiceError("haproxy", "haproxy is not installed: run `make setup` (apt-get install haproxy)")
    folder = settings.state_dir / "haproxy"
    cfg = folder / "haproxy.cfg"
    stats = f"http://127.0.0.1:{settings.scale.haproxy_stats_port}/stats"

    def write_config() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        cfg.write_text(haproxy_config(settings))
        check = subprocess.run([exe, "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise ServiceError("haproxy", f"configuration refused:\n{check.stderr[-2000:]}")

    return ServiceSpec(
        name="haproxy",
        command=[exe, "-db", "-f", str(cfg)],  # -db: foreground, no daemon (the stack supervises)
        url=settings.scoring.url,
        health=lambda: http_ok(f"{settings.scoring.url}/health") and http_ok(stats),
        log_file=settings.log_dir / "haproxy.log",
        pid_file=settings.run_dir / "haproxy.pid",
        cwd=folder,
        ready_timeout_s=30.0,
        port=settings.scoring.port,
        prepare=write_config,
    )


def shadow_worker_specs(settings: Settings) -> list[ServiceSpec]:
    """Stream shadow workers ``shadow-1`` .. ``shadow-M`` under keepalive; healthy once their
    heartbeat is in Redis."""
    specs = []
    for i in range(1, settings.scale.shadow_workers + 1):
        name = f"shadow-{i}"
        specs.append(
            ServiceSpec(
                name=name,
                command=_keepalive(
                    settings,
                    name,
                    [sys.executable, "-m", "fraudops.serving.shadow_worker", "--consumer", name],
                ),
                url=settings.redis_url,
                health=lambda name=name: worker_alive(settings, name),  # type: ignore[misc]
                log_file=settings.log_dir / f"{name}.log",
                pid_file=settings.run_dir / f"{name}.pid",
                env=_service_env(settings),
                cwd=settings.state_dir,
                ready_timeout_s=120.0,
            )
        )
    return specs


def worker_alive(settings: Settings, name: str) -> bool:
    """True when shadow worker ``name`` wrote a heartbeat in the last 10 s."""
    import redis

    from fraudops.serving.streams import WORKER_STALE_S, worker_status

    try:
        r = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=1.0)
        try:
            doc = worker_status(r).get(name)
        finally:
            r.close()
    except redis.RedisError:
        return False
    return doc is not None and float(doc["age_s"]) < WORKER_STALE_S


def scale_specs(settings: Settings) -> list[ServiceSpec]:
    """The profile's serving services in start order (replace the single ``scoring`` service)."""
    return [
        redis_spec(settings),
        *replica_specs(settings),
        haproxy_spec(settings),
        *shadow_worker_specs(settings),
    ]


# -- Airflow on PostgreSQL with Celery workers ------------------------------------------------------
def postgres_bin(name: str) -> str:
    """A PostgreSQL server program (Debian keeps them under /usr/lib/postgresql/<major>/bin)."""
    import glob

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    exe = found[0] if found else shutil.which(name)
    if not exe:
        raise ServiceError(
            "postgres", "PostgreSQL is not installed: run `make setup` (apt-get install postgresql)"
        )
    return exe


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user the Debian package
    creates (``setpriv`` execs in place, so the recorded pid is the server's own)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def postgres_password(settings: Settings) -> str:
    """The password of the profile's PostgreSQL role ``airflow`` (generated once, mode 0600)."""
    import secrets

    path = settings.run_dir / "postgres_password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def postgres_dir(settings: Settings) -> Path:
    return settings.state_dir / "postgres"


def _initdb(settings: Settings) -> None:
    """Create the cluster once (role ``airflow`` with the generated password, scram on TCP)."""
    folder = postgres_dir(settings)
    data = folder / "data"
    if (data / "PG_VERSION").exists():
        return
    (folder / "run").mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    pwfile = folder / "pwfile"
    pwfile.write_text(postgres_password(settings) + "\n")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        for p in (data, folder / "run", pwfile):
            shutil.chown(p, "postgres", "postgres")
    data.chmod(0o700)
    pwfile.chmod(0o600)
    result = subprocess.run(
        [
            *_as_postgres_user(),
            postgres_bin("initdb"),
            "-D",
            str(data),
            "-U",
            "airflow",
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise ServiceError(
            "postgres",
            f"initdb failed (every folder above {data} must be traversable by the postgres user):\n"
            f"{result.stderr[-2000:]}",
        )


def postgres_spec(settings: Settings) -> ServiceSpec:
    """The profile's PostgreSQL 15 (Debian package): loopback, its own cluster and socket folder."""
    folder = postgres_dir(settings)
    port = settings.scale.postgres_port
    return ServiceSpec(
        name="postgres",
        command=[
            *_as_postgres_user(),
            postgres_bin("postgres"),
            "-D",
            str(folder / "data"),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={folder / 'run'}",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=64MB",
        ],
        url=f"postgresql://127.0.0.1:{port}/airflow",
        health=lambda: (
            subprocess.run(
                [postgres_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], check=False
            ).returncode
            == 0
        ),
        log_file=settings.log_dir / "postgres.log",
        pid_file=settings.run_dir / "postgres.pid",
        cwd=folder,
        ready_timeout_s=60.0,
        port=port,
        prepare=lambda: _initdb(settings),
    )


def airflow_database_url(settings: Settings, driver: str = "psycopg2") -> str:
    return (
        f"postgresql+{driver}://airflow:{postgres_password(settings)}@127.0.0.1:"
        f"{settings.scale.postgres_port}/airflow"
    )


def ensure_airflow_database(settings: Settings) -> None:
    """Create the ``airflow`` database if the cluster does not have it yet."""
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1",
        port=settings.scale.postgres_port,
        user="airflow",
        password=postgres_password(settings),
        dbname="postgres",
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'")
            if cur.fetchone() is None:
                cur.execute("CREATE DATABASE airflow")
    finally:
        conn.close()


def airflow_scale_env(settings: Settings) -> dict[str, str]:
    """What the scale profile changes in every Airflow process's environment."""
    redis_base = settings.redis_url.rsplit("/", 1)[0]
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_database_url(settings),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": airflow_database_url(settings, "asyncpg"),
        # Database 1 of the profile's Redis (0 holds the online state and the shadow streams).
        "AIRFLOW__CELERY__BROKER_URL": f"{redis_base}/1",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{airflow_database_url(settings)}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(settings.scale.celery_concurrency),
        "AIRFLOW__CORE__PARALLELISM": str(settings.scale.celery_workers * settings.scale.celery_concurrency),
        # Each worker forks a stale-bundle cleaner (~140 MB) that local DAG folders never need.
        "AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL": "0",
    }


def celery_ping(settings: Settings, hostname: str) -> bool:
    """True when Celery worker ``hostname`` answers a ping through the broker."""
    try:
        from celery import Celery

        app = Celery(broker=airflow_scale_env(settings)["AIRFLOW__CELERY__BROKER_URL"])
        try:
            replies = app.control.ping(destination=[hostname], timeout=1.0)
        finally:
            app.close()
    except Exception:
        return False
    return any(hostname in r for r in replies or [])


def celery_worker_specs(settings: Settings, env: dict[str, str]) -> list[ServiceSpec]:
    """Airflow's Celery workers ``airflow-worker-1`` .. ``-K``: each its own Celery hostname, no log
    server (task logs go to the shared local folder the API server reads)."""
    import socket

    specs = []
    for i in range(1, settings.scale.celery_workers + 1):
        hostname = f"worker{i}@{socket.gethostname()}"
        specs.append(
            ServiceSpec(
                name=f"airflow-worker-{i}",
                command=[
                    services.venv_bin("airflow"),
                    "celery",
                    "worker",
                    "--celery-hostname",
                    hostname,
                    "--concurrency",
                    str(settings.scale.celery_concurrency),
                    "--queues",
                    "default",
                    "--skip-serve-logs",
                ],
                url=airflow_scale_env(settings)["AIRFLOW__CELERY__BROKER_URL"],
                health=lambda hostname=hostname: celery_ping(settings, hostname),  # type: ignore[misc]
                log_file=settings.log_dir / f"airflow-worker-{i}.log",
                pid_file=settings.run_dir / f"airflow-worker-{i}.pid",
                env=env,
                cwd=settings.airflow_home,
                ready_timeout_s=180.0,
            )
        )
    return specs

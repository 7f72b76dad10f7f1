"""Per-challenger sample rates (issue #19) against real MLflow and the BigQuery emulator, over real
HTTP: each challenger gets its own share of live traffic (set through ``POST /deploy``, stored as a
registry tag every replica reads, audited), the samples nest, every production row names the
versions it was offered to, and each challenger's evidence pairs with exactly its own sample (no
event offered to another challenger counts as this one's missing score). The rate change is
killed after each side effect and retried: one audit row, the tag set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import LiveServer, make_service, point, register, tx, wait_for

from fraudops.config import load_settings
from fraudops.serving.app import create_app

pytestmark = pytest.mark.integration
TOKEN = "test-token-rates"
SHADOW_ONLY = "shadow-only-token-rates-1"
PROD_ONLY = "production-only-token-rates"
SCOPED = json.dumps(
    {
        "ci-bot": {"token": SHADOW_ONLY, "scopes": ["shadow"]},
        "promoter": {"token": PROD_ONLY, "scopes": ["production"]},
    }
)
N_EVENTS = 1500


def _deploy(client: httpx.Client, token: str, **body: Any) -> httpx.Response:
    doc = {"modelId": body.pop("model", None), "deploymentMode": "sample_rate", **body}
    return client.post("/deploy", json=doc, headers={"Authorization": f"Bearer {token}"} if token else {})


def _rates(client: httpx.Client) -> dict[str, float]:
    return {a: w["sample_rate"] for a, w in client.get("/version").json()["challengers"].items()}


def test_each_challenger_samples_its_own_rate_and_its_evidence_pairs_with_its_own_sample(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], live: list[LiveServer], tmp_path: Path
) -> None:
    from fraudops.registry import SAMPLE_RATE_TAG_PREFIX
    from fraudops.release.evidence import collect_shadow_evidence

    uri = load_settings().mlflow.tracking_uri
    name = "serve-rates"
    va, vb, vc = (register(bundles[k], uri, name) for k in ("a", "b", "b"))
    hi, lo = f"challenger-{vb}", f"challenger-{vc}"
    point(warehouse, name, "champion", va, uri)
    point(warehouse, name, hi, vb, uri)
    point(warehouse, name, lo, vc, uri)
    service = make_service(tmp_path, name, warehouse, shadow=True, shadow_sample_rate=0.1)
    server = LiveServer(create_app(service, deploy_token=TOKEN, deploy_tokens=SCOPED))
    live.append(server)
    client = httpx.Client(base_url=server.url, timeout=30)
    wait_for(lambda: client.get("/health").status_code == 200, 90, "champion loaded")
    wait_for(lambda: _rates(client) == {hi: 0.1, lo: 0.1}, 120, "both challengers at the default rate")

    # Who may: a shadow-scoped token may size a sample; a production-only one may not; no token, no.
    assert _deploy(client, "", model=name, alias=lo, sampleRate=0.05).status_code == 401
    r = _deploy(client, PROD_ONLY, model=name, alias=lo, sampleRate=0.05)
    assert r.status_code == 403 and "may not deploy in sample_rate mode" in r.text, r.text
    r = _deploy(client, SHADOW_ONLY, model=name, alias=lo, sampleRate=0.05, reason="fewer please")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["version"], doc["sampleRate"], doc["previousSampleRate"], doc["moved"]) == (
        vc,
        0.05,
        None,
        True,
    )
    r = _deploy(client, TOKEN, model=name, version=vb, sampleRate=0.5, actor="rita")
    assert r.status_code == 200 and r.json()["alias"] == hi, r.text
    # What is refused, and why.
    for body, status, why in (
        ({"alias": hi, "sampleRate": 0.9}, 422, "outside the shadow pool's limits [0.01, 0.5]"),
        ({"alias": hi, "sampleRate": 0.001}, 422, "outside the shadow pool's limits"),
        ({"alias": hi, "sampleRate": 0}, 422, "sampleRate"),
        ({"alias": hi, "sampleRate": 1.5}, 422, "sampleRate"),
        ({"alias": hi}, 422, "required in sample_rate mode"),
        ({"sampleRate": 0.2}, 422, "name the challenger"),
        ({"alias": "challenger-999", "sampleRate": 0.2}, 404, "has no challenger"),
        ({"alias": "champion", "sampleRate": 0.2}, 422, "alias"),
    ):
        r = _deploy(client, TOKEN, model=name, **body)
        assert r.status_code == status and why in r.text, (body, r.text)
    wait_for(lambda: _rates(client) == {hi: 0.5, lo: 0.05}, 30, "the rates applied")
    assert f'fraudops_shadow_sample_rate{{alias="{hi}"}} 0.5' in client.get("/metrics").text

    # The same rate again writes nothing; the audit has one row per change, naming its actor.
    assert _deploy(client, TOKEN, model=name, alias=hi, sampleRate=0.5).json()["moved"] is False
    rows = warehouse.query(
        "SELECT alias, model_version, action, actor, reason, state FROM deployments "
        "WHERE model_name = @n AND action = 'sample_rate' ORDER BY deployed_at",
        {"n": name},
    )
    assert [(r["alias"], r["model_version"], r["actor"], r["state"]) for r in rows] == [
        (lo, vc, "token:ci-bot", "applied"),
        (hi, vb, "rita", "applied"),
    ], rows
    assert rows[0]["reason"] == "sample rate the service default -> 0.05: fewer please"
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(tracking_uri=uri).get_registered_model(name).tags
    assert tags[SAMPLE_RATE_TAG_PREFIX + hi] == "0.5" and tags[SAMPLE_RATE_TAG_PREFIX + lo] == "0.05"

    # Traffic: each challenger gets its own share, the low sample nested in the high one.
    started = time.time()
    for i in range(N_EVENTS):
        assert client.post("/score", json=tx(i)).status_code == 200
    assert service.writer is not None
    service.writer.flush()

    def counts() -> dict[str, int]:
        row = warehouse.query(
            "SELECT COUNTIF(mode = 'production') AS prod, "
            "COUNTIF(mode = 'shadow' AND model_version = @b) AS hi, "
            "COUNTIF(mode = 'shadow' AND model_version = @c) AS lo, "
            "COUNTIF(mode = 'production' AND STRPOS(sampled_for, @kb) > 0) AS offered_hi, "
            "COUNTIF(mode = 'production' AND STRPOS(sampled_for, @kc) > 0) AS offered_lo, "
            "COUNTIF(mode = 'production' AND STRPOS(sampled_for, @kc) > 0 AND STRPOS(sampled_for, @kb) = 0) "
            "  AS lo_not_hi, "
            "COUNTIF(mode = 'production' AND sampled AND sampled_for IS NULL) AS unnamed "
            "FROM predictions WHERE model_name = @n",
            {"n": name, "b": vb, "c": vc, "kb": f",{vb},", "kc": f",{vc},"},
        )[0]
        return {k: int(v) for k, v in row.items()}

    wait_for(
        lambda: (
            lambda c: c["prod"] == N_EVENTS and c["hi"] == c["offered_hi"] and c["lo"] == c["offered_lo"]
        )(counts()),
        60,
        "every offered event logged once by its challenger",
    )
    c = counts()
    # Binomial(1500, p): 5 standard deviations either side.
    for n, p in ((c["offered_hi"], 0.5), (c["offered_lo"], 0.05)):
        sd = (N_EVENTS * p * (1 - p)) ** 0.5
        assert abs(n - N_EVENTS * p) < 5 * sd, (c, p)
    assert c["lo_not_hi"] == 0 and c["unnamed"] == 0, c

    # Evidence: each challenger is paired with its own offered events only; none is missing.
    import datetime as dt

    far = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    for version, offered in ((vb, c["offered_hi"]), (vc, c["offered_lo"])):
        ev = collect_shadow_evidence(
            warehouse,
            model_name=name,
            challenger_version=version,
            champion_version=va,
            since=None,
            until=None,
            label_as_of=far,
            served_since=dt.datetime.fromtimestamp(started - 60, dt.UTC),
        )
        frame = ev.frame
        assert len(frame) == offered, (version, len(frame), offered)
        assert bool(frame["candidate_present"].all()), version


#: A child process setting one sample rate with an idempotency key (``python -c CHILD '<json>'``).
CHILD = """
import json, sys
from fraudops.config import WarehouseConfig
from fraudops.registry import set_sample_rate
from fraudops.warehouse import Warehouse
job = json.loads(sys.argv[1])
change = set_sample_rate(
    Warehouse(WarehouseConfig(**job["warehouse"])), model_name=job["name"], alias=job["alias"],
    rate=job["rate"], actor="fraud_release", reason="booking", tracking_uri=job["uri"],
    idempotency_key=job["key"],
)
print(json.dumps({"changed": change.changed, "after": change.after}))
"""


@pytest.mark.retry_safety
@pytest.mark.parametrize("crash_at", ["sample_rate:after_intent", "sample_rate:after_tag"])
def test_a_rate_change_killed_after_each_side_effect_then_retried_ends_like_one_clean_change(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], crash_at: str
) -> None:
    from mlflow.tracking import MlflowClient

    from fraudops.registry import SAMPLE_RATE_TAG_PREFIX

    uri = load_settings().mlflow.tracking_uri
    name = f"rates-retry-{crash_at.rsplit('_', 1)[-1]}"
    va, vb = register(bundles["a"], uri, name), register(bundles["b"], uri, name)
    point(warehouse, name, "champion", va, uri)
    alias = f"challenger-{vb}"
    point(warehouse, name, alias, vb, uri)
    job = {
        "warehouse": dataclasses.asdict(warehouse.cfg),
        "name": name,
        "alias": alias,
        "rate": 0.25,
        "uri": uri,
        "key": "run-1|deploy_shadow|sample_rate",
    }

    def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(job)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=180,
        )

    killed = run({"FRAUDOPS_CRASH_AT": crash_at})
    assert killed.returncode == -9, killed.stderr[-2000:]
    first, second = run({}), run({})
    assert first.returncode == 0 and second.returncode == 0, (first.stderr[-2000:], second.stderr[-2000:])
    assert json.loads(first.stdout)["changed"] is True  # the retry finished the change
    assert json.loads(second.stdout)["changed"] is False  # ... once
    rows = warehouse.query(
        "SELECT state FROM deployments WHERE model_name = @n AND action = 'sample_rate'", {"n": name}
    )
    assert rows == [{"state": "applied"}], rows
    tags = MlflowClient(tracking_uri=uri).get_registered_model(name).tags
    assert tags[SAMPLE_RATE_TAG_PREFIX + alias] == "0.25", tags

"""The reliability suite's fuzzing (issue #18): schemathesis generates requests from the service's
own OpenAPI document (``GET /openapi.json``), valid and invalid, against the real service process,
while legitimate traffic runs at twice the demo's rate. Every generated request gets an answer
below 500, the service never crashes, and production's p99 with the fuzzing is printed next to the
clean phases around it (the README's reliability table quotes the figures)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import point, register, service_process, tx
from test_reliability_load import RATE, Load, pooled_p99_ms

from fraudops.config import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

TOKEN = "fuzz-token-0123456789"
#: Generated cases per operation and mode (positive / negative; /deploy with and without token).
EXAMPLES = 150
#: Requests per second of the corpus replay (and of the legitimate replay in the clean phases).
REPLAY_RATE = 50.0


def test_openapi_document_matches_what_the_service_validates() -> None:
    from fraudops.serving.openapi import openapi_document

    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    assert set(schemas["ScoreRequest"]["required"]) == {
        "transaction_id",
        "card_id",
        "terminal_id",
        "amount",
        "timestamp",
    }
    assert set(schemas["DeployRequest"]["properties"]) >= {"modelId", "deploymentMode", "version"}
    assert set(doc["paths"]) == {"/score", "/health", "/version", "/metrics", "/deploy", "/openapi.json"}


class Replay:
    """Sends ``records`` (prepared requests) at ``rate`` per second from one thread, once each;
    records each answer's status by label, and every 5xx or transport failure."""

    def __init__(self, records: list[dict[str, Any]], rate: float) -> None:
        self.records, self.rate = records, rate
        self.statuses: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.unsendable = 0
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        due = time.perf_counter()
        with httpx.Client(timeout=10) as client:
            for rec in self.records:
                due += 1.0 / self.rate
                try:
                    r = client.request(
                        rec["method"],
                        rec["url"],
                        headers=rec["headers"],
                        content=base64.b64decode(rec["body"]),
                    )
                except (httpx.LocalProtocolError, UnicodeError):  # httpx refuses to send it: raw bytes
                    self.unsendable += 1
                    status = _raw_status(rec)
                    if status is None or status >= 500:
                        self.failures.append({"label": rec["label"], "raw": True, "status": status})
                    else:
                        self.statuses[f"{rec['label']} {status}"] += 1
                except httpx.HTTPError as err:  # reset, timeout: the service failed this request
                    self.failures.append({"label": rec["label"], "error": f"{type(err).__name__}: {err}"})
                else:
                    self.statuses[f"{rec['label']} {r.status_code}"] += 1
                    if r.status_code >= 500:
                        self.failures.append(
                            {"label": rec["label"], "status": r.status_code, "answer": r.text[:300]}
                        )
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)

    def __enter__(self) -> Replay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(120)


def _raw_status(rec: dict[str, Any]) -> int | None:
    """Send ``rec`` over a plain socket (header names and values as UTF-8 bytes, whatever they
    hold) and return the status of the answer; None when the service answered nothing."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(rec["url"])
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = base64.b64decode(rec["body"])
    head = [f"{rec['method']} {target} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in rec["headers"].items() if k.lower() not in ("host", "connection")]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(raw)
            answer = sock.recv(64)
    except OSError:  # reset or timeout: the service failed this request
        return None
    try:
        return int(answer.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def _legitimate(url: str, n: int, start: int) -> list[dict[str, Any]]:
    """``n`` valid ``/score`` requests as replay records (the clean phases' second sender)."""
    return [
        {
            "label": "POST /score legitimate",
            "method": "POST",
            "url": f"{url}/score",
            "headers": {"Content-Type": "application/json"},
            "body": base64.b64encode(json.dumps(tx(start + i)).encode()).decode(),
        }
        for i in range(n)
    ]


def test_schemathesis_finds_no_5xx_and_production_keeps_its_latency(
    fraudops_env: Path, warehouse: Any, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """The corpus is generated first (schemathesis in a child process, nothing sent), then
    replayed at ``REPLAY_RATE`` next to legitimate load at twice the demo's rate. Clean phases send
    as many legitimate requests from the same replayer instead, so the two conditions differ only
    in the content of those requests; three of each alternate and each condition's p99 is pooled."""
    from fraudops.stack import process

    uri = load_settings().mlflow.tracking_uri
    name = "rel-fuzz"
    va = register(bundles["a"], uri, name)
    point(warehouse, name, "champion", va, uri)
    spec = service_process(tmp_path, warehouse, name, FRAUDOPS_DEPLOY_TOKEN=TOKEN)
    process.start(spec)
    try:
        pid = process.read_pid(spec.pid_file)
        corpus_file = tmp_path / "corpus.jsonl"
        gen = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("openapi_fuzz.py")),
                spec.url,
                TOKEN,
                str(EXAMPLES),
                "2026-06-01T00:30:00Z",  # inside the legitimate traffic's (simulated) clock
                str(corpus_file),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert gen.returncode == 0, gen.stderr[-3000:]
        corpus = [json.loads(line) for line in corpus_file.read_text().splitlines()]
        chunks = [corpus[k::3] for k in range(3)]
        with Load(spec.url, start=0):  # warm-up (and the simulated clock set by legitimate events)
            time.sleep(3.0)
        clean: list[Load] = []
        fuzzed: list[Load] = []
        replays: list[Replay] = []
        for k, chunk in enumerate(chunks):
            with (
                Load(spec.url, start=(2 * k + 1) * 1_000_000) as load,
                Replay(
                    _legitimate(spec.url, len(chunk), (2 * k + 1) * 1_000_000 + 500_000), REPLAY_RATE
                ) as legit,
            ):
                time.sleep(len(chunk) / REPLAY_RATE)
            clean.append(load)
            assert legit.failures == [] and set(legit.statuses) == {"POST /score legitimate 200"}, (
                legit.statuses
            )
            with Load(spec.url, start=(2 * k + 2) * 1_000_000) as load, Replay(chunk, REPLAY_RATE) as hostile:
                time.sleep(len(chunk) / REPLAY_RATE)
            fuzzed.append(load)
            replays.append(hostile)
        statuses: Counter[str] = Counter()
        for r in replays:
            statuses.update(r.statuses)
        failures = [f for r in replays for f in r.failures]
        unsendable = sum(r.unsendable for r in replays)
        clean_p99, fuzz_p99 = pooled_p99_ms(clean), pooled_p99_ms(fuzzed)
        legit_statuses = [s for load in clean + fuzzed for _, s, _, _ in load.results]
        by_status: Counter[str] = Counter()
        for key, n in statuses.items():
            by_status[key.rsplit(" ", 1)[1]] += n
        phases = ", ".join(f"{c.p99_ms():.1f}/{f.p99_ms():.1f}" for c, f in zip(clean, fuzzed, strict=True))
        answers = dict(sorted(by_status.items()))
        pairs = len({r["label"] for r in corpus})
        print(
            f"\nschemathesis corpus: {len(corpus)} requests over {pairs} operation/mode pairs, "
            f"replayed at {REPLAY_RATE:.0f}/s: answers {answers}, {len(failures)} 5xx or transport "
            f"failures ({unsendable} sent as raw bytes: headers httpx refuses to send)"
        )
        print(
            f"production at {RATE:.0f} req/s over 3 alternating phases each: p99 {clean_p99:.2f} ms "
            f"with legitimate replays vs {fuzz_p99:.2f} ms with the corpus "
            f"({fuzz_p99 / clean_p99 - 1:+.1%}); per phase {phases} ms"
        )
        for key, n in sorted(statuses.items()):
            print(f"  {key}: {n}")
        assert failures == [], failures[:5]
        assert len(corpus) > 500
        scored = sum(
            n
            for key, n in statuses.items()
            if key.startswith("POST /score positive") and key.endswith(" 200")
        )
        assert scored > 50, statuses  # hostile but valid bodies went through features, model and log
        assert set(legit_statuses) == {200}, Counter(legit_statuses)
        assert process.read_pid(spec.pid_file) == pid  # never crashed (nor restarted)
        assert httpx.get(f"{spec.url}/health").status_code == 200
        # A shared 2-core machine: a loose bound here, the measured ratio is the figure.
        assert fuzz_p99 < clean_p99 * 3 + 10.0
    finally:
        process.stop(spec)

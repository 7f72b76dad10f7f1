"""The hot-path metric families expose exactly what ``prometheus_client``'s own would."""

from __future__ import annotations

import random
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from fraudops.serving.metrics import BUCKETS, ServingMetrics


def _series(text: bytes, prefix: str) -> list[str]:
    return sorted(
        line for line in text.decode().splitlines() if line.startswith(prefix) and "_created" not in line
    )


def test_hot_histograms_and_counters_match_prometheus_client() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-8, 1.5) for _ in range(5000)] + list(BUCKETS) + [0.0, 2.0]
    ours = ServingMetrics()
    ref = CollectorRegistry()
    hist = Histogram(
        "fraudops_model_latency_seconds", "x", ["model_version", "mode"], registry=ref, buckets=BUCKETS
    )
    count = Counter("fraudops_requests", "x", ["status"], registry=ref)
    for i, v in enumerate(values):
        version, status = ("3", "200") if i % 3 else ("4", "503")
        ours.model_latency.labels(version, "production").observe(v)
        hist.labels(version, "production").observe(v)
        ours.requests.labels(status).inc()
        count.labels(status).inc()
    text = ours.render()[0]
    want = generate_latest(ref)
    for prefix in ("fraudops_model_latency_seconds_bucket", "fraudops_model_latency_seconds_count"):
        assert _series(text, prefix) == _series(want, prefix)
    assert _series(text, "fraudops_requests_total") == _series(want, "fraudops_requests_total")
    ours_sum = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in _series(text, "fraudops_model_latency_seconds_sum")
    }
    want_sum = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in _series(want, "fraudops_model_latency_seconds_sum")
    }
    assert ours_sum.keys() == want_sum.keys()
    assert all(abs(ours_sum[k] - want_sum[k]) < 1e-9 for k in ours_sum)
    assert ours.requests.value("503") == len(values[::3])


def test_one_writer_per_series_loses_nothing_while_scraped() -> None:
    """Production and shadow series written from two threads at once, scraped meanwhile."""
    m = ServingMetrics()
    n = 50_000

    def write(mode: str) -> None:
        child = m.model_latency.labels("1", mode)
        for _ in range(n):
            child.observe(0.0003)

    threads = [threading.Thread(target=write, args=(mode,)) for mode in ("production", "shadow")]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        m.render()
    for t in threads:
        t.join()
    assert m.model_latency.value("1", "production") == n
    assert m.model_latency.value("1", "shadow") == n
    assert (
        f'fraudops_model_latency_seconds_count{{mode="shadow",model_version="1"}} {float(n)}'
        in m.render()[0].decode()
    )

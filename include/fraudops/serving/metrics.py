"""Prometheus metrics of the scoring service (one private registry per service instance).

A private ``CollectorRegistry`` rather than the global one: tests and the benchmark run several
services in one process, and ``/metrics`` must show exactly this service's numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

#: Latency buckets in seconds: fine below 5 ms, where the SLO lives.
BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


class ServingMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.request_latency = Histogram(
            "fraudops_request_latency_seconds",
            "Server-side /score handling time (parse, features, model, response).",
            registry=r,
            buckets=BUCKETS,
        )
        self.model_latency = Histogram(
            "fraudops_model_latency_seconds",
            "Features + inference time per model version and mode (production or shadow).",
            ["model_version", "mode"],
            registry=r,
            buckets=BUCKETS,
        )
        self.requests = Counter("fraudops_requests", "Score requests by HTTP status.", ["status"], registry=r)
        self.decisions = Counter("fraudops_decisions", "Production decisions.", ["decision"], registry=r)
        self.errors = Counter(
            "fraudops_model_errors",
            "Model failures by version, mode and kind.",
            ["model_version", "mode", "kind"],
            registry=r,
        )
        self.fallbacks = Counter(
            "fraudops_fallbacks",
            "Requests answered by the previous champion, by failing version and reason.",
            ["model_version", "reason"],
            registry=r,
        )
        self.swaps = Counter("fraudops_model_swaps", "Champion hot swaps.", registry=r)
        self.load_failures = Counter(
            "fraudops_model_load_failures",
            "Versions rejected at load (verification failed).",
            ["alias"],
            registry=r,
        )
        self.mirrored = Counter(
            "fraudops_shadow_mirrored", "Events put on a shadow queue.", ["alias"], registry=r
        )
        self.shed = Counter(
            "fraudops_shadow_shed",
            "Mirrored events dropped (queue full, worker down or throttled).",
            ["alias", "reason"],
            registry=r,
        )
        self.shadow_restarts = Counter(
            "fraudops_shadow_restarts", "Shadow worker restarts.", ["alias", "reason"], registry=r
        )
        self.shadow_throttle = Gauge(
            "fraudops_shadow_throttle", "Share of the sample a worker receives.", ["alias"], registry=r
        )
        self.shadow_up = Gauge(
            "fraudops_shadow_worker_up", "1 when the worker is alive and heartbeating.", ["alias"], registry=r
        )
        self.champion = Gauge("fraudops_champion_version", "Champion version being served.", registry=r)
        self.log_gauges = Gauge(
            "fraudops_prediction_log",
            "Prediction logging (accepted, written, spooled, replayed, pending files).",
            ["stat"],
            registry=r,
        )
        self._before_scrape: list[Callable[[], None]] = []
        # labels() hashes and locks on every call: hot-path children are cached by key.
        self._children: dict[tuple[str, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def on_scrape(self, fn: Callable[[], None]) -> None:
        self._before_scrape.append(fn)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        for fn in self._before_scrape:
            with contextlib.suppress(Exception):  # a broken probe must not break /metrics
                fn()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def set_log_stats(self, stats: Any) -> None:
        for name in ("accepted", "written", "spooled_rows", "replayed_rows", "pending_files", "buffered"):
            self.log_gauges.labels(name).set(getattr(stats, name, 0))

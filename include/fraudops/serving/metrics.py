"""Prometheus metrics of the scoring service (one private registry per service instance).

A private ``CollectorRegistry`` rather than the global one: tests and the benchmark run several
services in one process, and ``/metrics`` must show exactly this service's numbers.

The series every request touches (request and model latency, batch sizes, requests by status,
decisions, mirrored events) are ``HotHistogram``/``HotCounter`` families: a child is a plain list or number,
updated without a lock, and a ``prometheus_client`` collector turns them into the usual families at
scrape time. ``prometheus_client``'s own children take a lock and check observability on every
call: measured in the running service (wrk, one core) those calls cost 5-10 % of its throughput.
The rule that makes the missing lock safe: each child has one writing thread (production series
the event loop, shadow series the shadow collector thread), and CPython runs one thread's
``+=`` without another writer interleaving. A scrape copies the counts, so it may see a histogram
one observation behind its sum, never a lost or torn count. Rare series (errors, fallbacks, swaps,
gauges) stay ordinary ``prometheus_client`` metrics.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Callable, Iterator
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

BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


class HotHistogram:
    """One histogram series: ``counts[i]`` observations in bucket ``i`` (the last one is +Inf)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # first bound >= value ("le")
        self.sum += value


class HotCounter:
    """One counter series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HotFamily:
    """A histogram or counter family with children by label values (``labels`` is a dict lookup)."""

    def __init__(
        self, name: str, doc: str, labelnames: tuple[str, ...] = (), buckets: tuple[float, ...] | None = None
    ) -> None:
        self.name, self.doc, self.labelnames, self.buckets = name, doc, labelnames, buckets
        self.children: dict[tuple[str, ...], Any] = {}
        if not labelnames:
            self.children[()] = self._new()

    def _new(self) -> Any:
        return HotCounter() if self.buckets is None else HotHistogram(self.buckets)

    def labels(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children.setdefault(values, self._new())
        return child

    def observe(self, value: float) -> None:  # unlabelled histogram
        self.children[()].observe(value)

    def inc(self, amount: float = 1.0) -> None:  # unlabelled counter
        self.children[()].inc(amount)

    def value(self, *values: str) -> float:
        """A counter's value, or a histogram's count (tests, introspection)."""
        child = self.children.get(values)
        if child is None:
            return 0.0
        return child.value if self.buckets is None else float(sum(child.counts))


class _HotCollector:
    """Exposes ``HotFamily`` series as ordinary Prometheus families."""

    def __init__(self, families: list[HotFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        for fam in self.families:
            items = list(fam.children.items())
            if fam.buckets is None:
                counter = CounterMetricFamily(fam.name, fam.doc, labels=fam.labelnames)
                for values, child in items:
                    counter.add_metric(list(values), child.value)
                yield counter
                continue
            hist = HistogramMetricFamily(fam.name, fam.doc, labels=fam.labelnames)
            for values, child in items:
                counts, total = list(child.counts), child.sum
                cumulative, buckets = 0, []
                for bound, n in zip((*fam.buckets, float("inf")), counts, strict=True):
                    cumulative += n
                    buckets.append((_le(bound), cumulative))
                hist.add_metric(list(values), buckets, total)
            yield hist


def _le(bound: float) -> str:
    from prometheus_client.utils import floatToGoString

    return str(floatToGoString(bound))


class ServingMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        r = self.registry
        self.request_latency = HotFamily(
            "fraudops_request_latency_seconds",
            "Server-side /score handling time (parse, features, model, response).",
            buckets=BUCKETS,
        )
        self.model_latency = HotFamily(
            "fraudops_model_latency_seconds",
            "Features + inference time per model version and mode (production or shadow).",
            ("model_version", "mode"),
            buckets=BUCKETS,
        )
        self.batch_size = HotFamily(
            "fraudops_score_batch_size",
            "Requests scored together in one model call (whatever one event-loop turn read).",
            buckets=BATCH_BUCKETS,
        )
        self.requests = HotFamily("fraudops_requests", "Score requests by HTTP status.", ("status",))
        self.decisions = HotFamily("fraudops_decisions", "Production decisions.", ("decision",))
        self.mirrored = HotFamily("fraudops_shadow_mirrored", "Events put on a shadow queue.", ("alias",))
        r.register(
            _HotCollector(
                [
                    self.request_latency,
                    self.model_latency,
                    self.batch_size,
                    self.requests,
                    self.decisions,
                    self.mirrored,
                ]
            )
        )
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
        self.unaudited = Counter(
            "fraudops_unaudited_alias_moves",
            "Alias targets refused because no audit row (deployments) names them: moved outside "
            "the platform; the service keeps what it serves.",
            ["alias"],
            registry=r,
        )
        self.load_retries = Counter(
            "fraudops_model_load_retries",
            "Loads measured over the latency budget on a busy host, to be measured again later.",
            ["alias"],
            registry=r,
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
        self.shadow_sample_rate = Gauge(
            "fraudops_shadow_sample_rate",
            "Share of live traffic offered to a challenger (its own rate, else the default).",
            ["alias"],
            registry=r,
        )
        self.shadow_throttle = Gauge(
            "fraudops_shadow_throttle", "Share of the sample a worker receives.", ["alias"], registry=r
        )
        self.shadow_up = Gauge(
            "fraudops_shadow_worker_up", "1 when the worker is alive and heartbeating.", ["alias"], registry=r
        )
        # The scale profile: shadow traffic through Redis Streams, online state in Redis.
        self.stream_lag = Gauge(
            "fraudops_shadow_stream_lag",
            "Mirrored events of a challenger's stream not yet delivered to any shadow worker.",
            ["alias"],
            registry=r,
        )
        self.stream_pending = Gauge(
            "fraudops_shadow_stream_pending",
            "Mirrored events delivered to a shadow worker and not yet acknowledged.",
            ["alias"],
            registry=r,
        )
        self.stream_dead_letters = Gauge(
            "fraudops_shadow_dead_letters",
            "Mirrored events dead-lettered (delivered the configured number of times, never answered).",
            ["alias"],
            registry=r,
        )
        self.stream_workers = Gauge(
            "fraudops_shadow_stream_workers", "Shadow workers heartbeating in the last 10 s.", registry=r
        )
        self.state_degraded = Gauge(
            "fraudops_feature_state_degraded",
            "1 while the shared online state (Redis) is unreachable and features are computed from "
            "this replica's local fallback state.",
            registry=r,
        )
        self.state_degraded_events = Counter(
            "fraudops_feature_state_degraded_events",
            "Events scored with degraded features (the shared online state unreachable).",
            registry=r,
        )
        self.state_replayed = Counter(
            "fraudops_feature_state_replayed_events",
            "Events recorded during an online-state outage, written to it once it answered again.",
            registry=r,
        )
        self.registry_unavailable = Counter(
            "fraudops_registry_unavailable",
            "Registry (MLflow) calls that found it unreachable, by operation (alias_poll, load, "
            "deploy, reconcile) and reason class (connection, timeout, server_error); retried later.",
            ["operation", "reason"],
            registry=r,
        )
        self.registry_waiting = Gauge(
            "fraudops_registry_waiting_versions",
            "Versions wanted by an alias but not loaded yet because the registry was unreachable.",
            registry=r,
        )
        self.labels_synced = Counter(
            "fraudops_labels_synced",
            "Fraud labels read from the warehouse into the online store after the warm-up.",
            registry=r,
        )
        self.label_sync_errors = Counter(
            "fraudops_label_sync_errors",
            "Failed label reads (the warehouse away): retried at the next interval.",
            registry=r,
        )
        self.champion = Gauge("fraudops_champion_version", "Champion version being served.", registry=r)
        self.log_gauges = Gauge(
            "fraudops_prediction_log",
            "Prediction logging (accepted, written, spooled, replayed, pending files).",
            ["stat"],
            registry=r,
        )
        self.log_events = Counter(
            "fraudops_prediction_log_events",
            "Prediction log: rows spooled (on disk before the answer), shipped to the warehouse, "
            "replayed, recovered from a torn segment, quarantined (rows, files); failed shipping "
            "attempts (retried), shipper restarts by the supervisor, failed spool writes, rows lost.",
            ["event"],
            registry=r,
        )
        self._log_seen: dict[str, int] = {}
        self.feature_entities = Gauge(
            "fraudops_feature_entities",
            "Entities held by the embedded online feature store, by family.",
            ["family"],
            registry=r,
        )
        self.feature_evictions = Counter(
            "fraudops_feature_evictions",
            "Online feature state evicted, by family and reason: ttl (idle past the longest window; "
            "cannot change any feature) or cap (FRAUDOPS_FEATURE_MAX_ENTITIES; the entity restarts cold).",
            ["family", "reason"],
            registry=r,
        )
        self._evictions_seen: dict[tuple[str, str], int] = {}
        self._before_scrape: list[Callable[[], None]] = []

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
        # The writer keeps cumulative totals; the counters advance by what is new since last time.
        for event, name in _LOG_EVENTS.items():
            value = int(getattr(stats, name, 0) or 0)
            seen = self._log_seen.get(event)
            if seen is None:
                self.log_events.labels(event)  # every series exists from the first scrape
                seen = 0
            if value > seen:
                self.log_events.labels(event).inc(value - seen)
            self._log_seen[event] = max(value, seen)

    def set_feature_stats(self, stats: Any) -> None:
        """Online store ``StateStats`` (None for Redis, which expires keys itself)."""
        if stats is None:
            return
        for family, n in stats.entities.items():
            self.feature_entities.labels(family).set(n)
        for key, value in stats.evictions.items():  # cumulative in the store: advance by the news
            seen = self._evictions_seen.get(key, 0)
            child = self.feature_evictions.labels(*key)
            if value > seen:
                child.inc(value - seen)
                self._evictions_seen[key] = value


#: ``fraudops_prediction_log_events_total{event}`` -> the ``SpoolStats`` total it follows.
_LOG_EVENTS = {
    "spooled": "spooled_rows",
    "shipped": "written",
    "replayed": "replayed_rows",
    "recovered": "recovered_rows",
    "retried": "retried",
    "quarantined_rows": "quarantined_rows",
    "quarantined_files": "quarantined_files",
    "writer_restarts": "writer_restarts",
    "spool_errors": "spool_errors",
    "lost": "lost_rows",
}

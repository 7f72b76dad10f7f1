"""A shadow worker of the ``scale`` profile: scores challenger streams (``serving/streams.py``).

``python -m fraudops.serving.shadow_worker --consumer NAME`` reads every challenger stream through
the consumer group ``shadow`` and, per batch: loads the challenger's bundle once (fetched from the
registry and verified in a resource-limited child, as the scoring service does), scores the batch
with ONNX Runtime, writes one ``mode = shadow`` row per event to its own prediction spool (keyed
MERGE into the warehouse: a redelivered event is not inserted twice), then acknowledges and
deletes the entries. Workers scale on their own: any number may share the group.

Crashes and hangs: entries a worker took and did not acknowledge stay pending under its name;
every worker claims entries idle for ``claim_idle_ms`` (``XAUTOCLAIM``), so a killed worker's
events are scored by another. An entry delivered more than ``dead_letter_after`` times (it kills
every worker that scores it) is dead-lettered instead: a ``shed:dead_letter`` row (counted as the
challenger's error by the gate) and a counter per stream. A worker whose scoring loop makes no
progress for ``hang_s`` exits (its keepalive starts it again). The same limits as the in-process
pool's workers apply (``nice``, address-space cap).

Every second the worker writes its status to ``fraudops:shadow:workers`` (processed, errors,
dead letters, claims, RSS), which the replicas show in ``/version`` and ``/metrics``.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from fraudops.serving.streams import GROUP, PREFIX, dead_key, ensure_group, meta_key

log = logging.getLogger(__name__)

#: Environment variable of test-only fault injection, comma-separated: ``crash_on:<transaction_id>``
#: exits the worker when that event is in its batch (a poison event), ``slow:<ms>`` sleeps per batch.
FAULT_ENV = "FRAUDOPS_SHADOW_WORKER_FAULT"


class _Challenger:
    def __init__(self, stream: str, meta: dict[str, str]) -> None:
        self.stream = stream
        self.model_name = meta["model_name"]
        self.alias = meta["alias"]
        self.version = meta["version"]
        self.spec_id = meta["spec_id"]
        self.threshold = float(meta["threshold"])
        self.scorer: Any = None
        self.broken: str | None = None  # the bundle was refused: every event is that error
        self.next_try = 0.0
        self.last_entry = time.monotonic()  # when an entry of this stream was last scored


#: A loaded challenger whose stream stayed empty this long is unloaded (a retired challenger's
#: model does not stay resident); an entry arriving later loads it again.
IDLE_UNLOAD_S = 600.0


class StreamShadowWorker:
    def __init__(
        self,
        consumer: str,
        *,
        redis_url: str,
        work_dir: Path,
        tracking_uri: str,
        warehouse_cfg: Any,
        review_band: float = 0.0,
        claim_idle_ms: int = 5000,
        dead_letter_after: int = 3,
        batch: int = 64,
        block_ms: int = 200,
        hang_s: float = 30.0,
        prefix: str = PREFIX,
        log_flush_interval_s: float = 3.0,
    ) -> None:
        import redis

        from fraudops.serving.models import BundleCache
        from fraudops.serving.predlog import PredictionLog

        self.consumer = consumer
        self.prefix = prefix
        # Bytes in, bytes out: frames are decoded by orjson (typed Any: redis-py's stubs type
        # replies as the union of every RESP type).
        self.r: Any = redis.Redis.from_url(redis_url, decode_responses=False, socket_timeout=5.0)
        self.cache = BundleCache(work_dir / "bundles", tracking_uri)
        self.writer = PredictionLog(
            warehouse_cfg, work_dir / "spool" / "predictions", flush_interval_s=log_flush_interval_s
        )
        self.review_band = review_band
        self.claim_idle_ms = claim_idle_ms
        self.dead_letter_after = dead_letter_after
        self.batch = batch
        self.block_ms = block_ms
        self.hang_s = hang_s
        self.fault = os.environ.get(FAULT_ENV, "")
        self.challengers: dict[str, _Challenger] = {}
        self.stop_event = threading.Event()
        self.busy_since: float | None = None
        self.counts = {"processed": 0, "errors": 0, "dead_lettered": 0, "claimed": 0, "redis_errors": 0}
        #: Milliseconds from each entry's XADD (its id's time part) to its row in the spool: how far
        #: shadow scoring trails production (the newest 5,000 events).
        self.delays_ms: collections.deque[int] = collections.deque(maxlen=5000)
        self._last_streams = 0.0
        self._last_claim = 0.0

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> None:
        self.writer.start()
        threading.Thread(target=self._watchdog, name="shadow-watchdog", daemon=True).start()
        try:
            while not self.stop_event.is_set():
                try:
                    self.step()
                except Exception as err:  # Redis away: try again shortly; nothing was acknowledged
                    self.busy_since = None  # not a hang: the watchdog must not count this wait
                    self.counts["redis_errors"] += 1
                    log.warning("shadow worker %s: %s", self.consumer, f"{type(err).__name__}: {err}"[:300])
                    self.stop_event.wait(1.0)
        finally:
            self.writer.close()

    def step(self) -> int:
        """One round: refresh streams, claim abandoned entries, read new ones, score; returns the
        number of entries handled."""
        now = time.monotonic()
        if now - self._last_streams > 2.0:
            self._refresh_streams()
            self._heartbeat()
            self._last_streams = now
        handled = 0
        if now - self._last_claim > min(1.0, self.claim_idle_ms / 2e3):
            handled += self._claim()
            self._last_claim = now
        ready = [c for c in self.challengers.values() if self._wanted(c) and self._loaded(c)]
        if not ready:
            self.stop_event.wait(self.block_ms / 1e3)
            return handled
        got = self.r.xreadgroup(
            GROUP, self.consumer, {c.stream: ">" for c in ready}, count=self.batch, block=self.block_ms
        )
        for stream, entries in got or []:
            c = self.challengers[stream.decode()]
            self._score(c, [(eid.decode(), fields) for eid, fields in entries])
            handled += len(entries)
        return handled

    def _refresh_streams(self) -> None:
        now = time.monotonic()
        for c in self.challengers.values():
            if c.scorer is not None and now - c.last_entry > IDLE_UNLOAD_S and not self.r.xlen(c.stream):
                log.info("shadow worker %s: unloading idle v%s (%s)", self.consumer, c.version, c.alias)
                c.scorer = None
        for raw in self.r.smembers(f"{self.prefix}:streams"):
            stream = raw.decode()
            if stream in self.challengers:
                continue
            meta = {k.decode(): v.decode() for k, v in self.r.hgetall(meta_key(stream, self.prefix)).items()}
            if not {"model_name", "alias", "version", "spec_id", "threshold"} <= meta.keys():
                continue
            ensure_group(self.r, stream)
            self.challengers[stream] = _Challenger(stream, meta)
            log.info("shadow worker %s: reading %s", self.consumer, stream)

    def _wanted(self, c: _Challenger) -> bool:
        """Loaded already, or its stream holds entries (an idle unloaded challenger is not)."""
        return c.scorer is not None or c.broken is not None or bool(self.r.xlen(c.stream))

    def _loaded(self, c: _Challenger) -> bool:
        """Load ``c``'s bundle once; a registry outage is retried every 5 s (its entries wait in
        the stream), a refused bundle makes every event of the stream an error row."""
        if c.scorer is not None or c.broken is not None:
            return True
        if time.monotonic() < c.next_try:
            return False
        from fraudops.serving.registry_faults import unavailable_reason
        from fraudops.training.package import load_scorer

        try:
            path = self.cache.fetch(c.model_name, c.version)
            c.scorer = load_scorer(
                path, intra_op_num_threads=1, expect=self.cache.expected_digests(c.model_name, c.version)
            )
            log.info(
                "shadow worker %s: loaded %s v%s for %s", self.consumer, c.model_name, c.version, c.alias
            )
        except Exception as err:
            if unavailable_reason(err) is not None:
                c.next_try = time.monotonic() + 5.0
                log.warning(
                    "shadow worker %s: registry unreachable for v%s: %s", self.consumer, c.version, err
                )
                return False
            c.broken = f"error:{type(err).__name__}"
            log.error("shadow worker %s: refusing v%s (%s): %s", self.consumer, c.version, c.alias, err)
        return True

    # -- scoring ------------------------------------------------------------------------------
    def _score(self, c: _Challenger, entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
        if not entries:
            return
        self.busy_since = c.last_entry = time.monotonic()
        events = [orjson.loads(fields[b"e"]) for _eid, fields in entries]
        self._inject(events)
        t0 = time.perf_counter()
        scores: list[tuple[float | None, str | None]]
        if c.broken is not None:
            scores = [(None, c.broken)] * len(events)
        else:
            scores = self._score_rows(c, [e[2] for e in events])
        per_row_ms = (time.perf_counter() - t0) * 1e3 / len(events)
        for (rid, txid, vector, amount, event_time), (score, error) in zip(events, scores, strict=True):
            self.counts["processed"] += 1
            self.counts["errors"] += error is not None
            self._write(c, rid, txid, amount, event_time, score, error, per_row_ms, vector)
        now_ms = int(time.time() * 1e3)
        self.delays_ms.extend(now_ms - int(eid.split("-", 1)[0]) for eid, _ in entries)
        self._ack(c.stream, [eid for eid, _ in entries])
        self.busy_since = None

    def _score_rows(self, c: _Challenger, rows: list[list[float]]) -> list[tuple[float | None, str | None]]:
        """One model call for the batch; if it raises, row by row (one bad row fails alone)."""
        values: list[float | str]  # a score, or the type of the error scoring that row raised
        try:
            values = [float(v) for v in c.scorer.score_batch(rows)]
            if len(values) != len(rows):
                raise ValueError(f"{len(values)} scores for {len(rows)} rows")
        except Exception:
            values = []
            for row in rows:
                try:
                    values.append(float(c.scorer.score_one(row)))
                except Exception as err:
                    values.append(type(err).__name__)
        out: list[tuple[float | None, str | None]] = []
        for v in values:
            if isinstance(v, str):
                out.append((None, f"error:{v}"))
            elif v != v:
                out.append((None, "nan"))
            elif not 0.0 <= v <= 1.0:
                out.append((None, "out_of_range"))
            else:
                out.append((v, None))
        return out

    def _write(
        self,
        c: _Challenger,
        rid: str,
        txid: str,
        amount: Any,
        event_time: Any,
        score: float | None,
        error: str | None,
        latency_ms: float | None,
        vector: list[float] | None,
    ) -> None:
        import datetime as dt

        from fraudops.serving.rows import shadow_row

        self.writer.write(
            shadow_row(
                {
                    "request_id": rid,
                    "transaction_id": txid,
                    "model_version": c.version,
                    "alias": c.alias,
                    "score": score,
                    "latency_ms": latency_ms,
                    "error": error,
                    "features": vector,
                    "amount": amount,
                    "event_time": dt.datetime.fromisoformat(event_time)
                    if isinstance(event_time, str)
                    else event_time,
                    "feature_set": c.spec_id,
                    "threshold": c.threshold,
                },
                c.model_name,
                self.review_band,
            )
        )

    def _ack(self, stream: str, ids: list[str]) -> None:
        """Acknowledge and delete handled entries (after their rows are in the spool)."""
        from fraudops.faults import crash_point

        crash_point("shadow_worker:after_spool")
        pipe = self.r.pipeline(transaction=False)
        pipe.xack(stream, GROUP, *ids)
        pipe.xdel(stream, *ids)
        pipe.execute()

    # -- abandoned entries --------------------------------------------------------------------
    def _claim(self) -> int:
        """Take over entries idle for ``claim_idle_ms`` (a dead or hung worker's) one at a time:
        a poison entry then kills its worker alone, and the entries it was read with are not
        charged its deliveries. Those delivered more than ``dead_letter_after`` times are
        dead-lettered; the rest are scored."""
        handled = 0
        for c in list(self.challengers.values()):
            if not (self._wanted(c) and self._loaded(c)):
                continue
            start = "0-0"
            while True:
                cursor, entries, *_ = self.r.xautoclaim(
                    c.stream, GROUP, self.consumer, self.claim_idle_ms, start_id=start, count=1
                )
                claimed = [(eid.decode(), fields) for eid, fields in entries if fields]
                if claimed:
                    self.counts["claimed"] += len(claimed)
                    handled += len(claimed)
                    self._score(c, self._dead_letter_over_limit(c, claimed))
                start = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
                if start == "0-0":
                    break
        return handled

    def _dead_letter_over_limit(
        self, c: _Challenger, entries: list[tuple[str, dict[bytes, bytes]]]
    ) -> list[tuple[str, dict[bytes, bytes]]]:
        fresh: list[tuple[str, dict[bytes, bytes]]] = []
        dead: list[tuple[str, dict[bytes, bytes]]] = []
        for eid, fields in entries:
            info = self.r.xpending_range(c.stream, GROUP, min=eid, max=eid, count=1)
            times = int(info[0]["times_delivered"]) if info else 1
            (dead if times > self.dead_letter_after else fresh).append((eid, fields))
        for _eid, fields in dead:
            rid, txid, _vector, amount, event_time = orjson.loads(fields[b"e"])
            self._write(c, rid, txid, amount, event_time, None, "shed:dead_letter", None, None)
            self.counts["dead_lettered"] += 1
            log.error(
                "shadow worker %s: event %s of %s delivered more than %d times: dead-lettered",
                self.consumer,
                txid,
                c.stream,
                self.dead_letter_after,
            )
        if dead:
            self.r.incrby(dead_key(c.stream, self.prefix), len(dead))
            self._ack(c.stream, [eid for eid, _ in dead])
        return fresh

    # -- health -------------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        from fraudops.serving.shadow import _rss_mb

        delays = sorted(self.delays_ms)
        status = {
            **self.counts,
            "delay_ms_p50": delays[len(delays) // 2] if delays else None,
            "delay_ms_p99": delays[min(len(delays) - 1, int(len(delays) * 0.99))] if delays else None,
            "pid": os.getpid(),
            "streams": sorted(self.challengers),
            "rss_mb": _rss_mb(os.getpid()),
            "spooled": self.writer.snapshot().accepted if self.writer is not None else None,
            "at": time.time(),
        }
        self.r.hset(f"{self.prefix}:workers", self.consumer, json.dumps(status))

    def _watchdog(self) -> None:
        while not self.stop_event.wait(1.0):
            since = self.busy_since
            if since is not None and time.monotonic() - since > self.hang_s:
                log.error("shadow worker %s: no progress for %.0f s, exiting", self.consumer, self.hang_s)
                os._exit(75)

    def _inject(self, events: list[list[Any]]) -> None:
        for fault in self.fault.split(","):
            kind, _, arg = fault.partition(":")
            if kind == "crash_on" and any(e[1] == arg for e in events):
                os._exit(70)
            if kind == "slow":
                time.sleep(float(arg) / 1e3)


def main(argv: list[str] | None = None) -> None:
    import signal

    from fraudops.config import load_settings
    from fraudops.serving.options import ServingOptions
    from fraudops.serving.shadow import _apply_limits

    parser = argparse.ArgumentParser(prog="fraudops.serving.shadow_worker")
    parser.add_argument("--consumer", required=True, help="Consumer name in the group (stable per worker).")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    settings = load_settings()
    if not settings.redis_url:
        parser.error("no Redis: set FRAUDOPS_REDIS_URL (or FRAUDOPS_PROFILE=scale)")
    options = ServingOptions.from_env(settings)
    _apply_limits(options.shadow_address_space_mb, options.shadow_nice, None)
    worker = StreamShadowWorker(
        args.consumer,
        redis_url=settings.redis_url,
        work_dir=args.work_dir or settings.state_dir / "shadow-workers" / args.consumer,
        tracking_uri=settings.mlflow.tracking_uri,
        warehouse_cfg=settings.warehouse,
        review_band=options.review_band,
        dead_letter_after=settings.scale.dead_letter_after,
        claim_idle_ms=int(os.environ.get("FRAUDOPS_SHADOW_CLAIM_IDLE_MS", "") or 5000),
        log_flush_interval_s=options.log_flush_interval_s,
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stop_event.set())
    worker.run()


if __name__ == "__main__":
    main()

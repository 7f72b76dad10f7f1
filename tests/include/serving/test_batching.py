"""Scoring together is scoring one by one: same features, same scores, bit for bit (real model)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
from serving_helpers import tx

from fraudops.serving.models import slot_from_bundle
from fraudops.serving.options import ServingOptions
from fraudops.serving.schema import parse_score_request
from fraudops.serving.service import ScoringService


class Rows:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)


def _service(bundle: Path) -> ScoringService:
    service = ScoringService(
        ServingOptions(log_predictions=False, warm_days=0, event_clock="simulated"), shadow=False
    )
    slot = slot_from_bundle("m", "1", "champion", bundle)
    service.router.ensure([slot.spec])
    service.manager.promote(slot)
    service.writer = Rows()  # type: ignore[assignment]
    return service


def test_batched_scores_and_features_equal_one_by_one(bundles: dict[str, Path]) -> None:
    rng = random.Random(3)
    # Few cards and terminals, so requests in one batch share history (a batch-mate's features
    # must see the requests before it, exactly as one by one).
    bodies = [
        tx(i, amount=round(rng.uniform(1, 900), 2), card=f"c-{rng.randrange(12)}", terminal_id=f"t-{i % 5}")
        for i in range(600)
    ]
    requests = [parse_score_request(b) for b in bodies]
    alone, together = _service(bundles["a"]), _service(bundles["a"])
    one_by_one = [alone.score(r, f"r{k}") for k, r in enumerate(requests)]
    batched: list[Any] = []
    k = 0
    while k < len(requests):
        n = rng.choice([1, 2, 3, 7, 16, 32])
        batched += together.score_many(requests[k : k + n], [f"r{j}" for j in range(k, k + n)])
        k += n
    assert together.metrics.batch_size.value() < len(requests)  # batches did form
    strip = ("latency_ms",)
    assert [{k: v for k, v in o.items() if k not in strip} for o in batched] == [
        {k: v for k, v in o.items() if k not in strip} for o in one_by_one
    ]
    assert len({o["score"] for o in one_by_one}) > 20  # the features moved the scores
    rows_alone = [orjson.loads(r["features"]) for r in alone.writer.rows]  # type: ignore[union-attr]
    rows_together = [orjson.loads(r["features"]) for r in together.writer.rows]  # type: ignore[union-attr]
    assert rows_together == rows_alone

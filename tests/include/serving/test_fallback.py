"""Fallback and decision rules of ``ScoringService.score`` with stand-in scorers (no servers)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from serving_helpers import tx

from fraudops.features.spec import FeatureSpec
from fraudops.serving.models import ModelSlot
from fraudops.serving.options import ServingOptions
from fraudops.serving.schema import parse_score_request
from fraudops.serving.service import ModelFailure, ScoringService


class Fixed:
    """Scores every row ``value`` (or ``values`` in turn), after ``sleep_s`` per call, or raises."""

    def __init__(
        self,
        value: Any = 0.2,
        sleep_s: float = 0.0,
        exc: Exception | None = None,
        values: list[float] | None = None,
    ) -> None:
        self.value, self.sleep_s, self.exc, self.values = value, sleep_s, exc, values
        self.calls = 0
        self.rows = 0

    def score_batch(self, rows: list[list[float]]) -> list[float]:
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        if self.sleep_s:
            time.sleep(self.sleep_s)
        start, self.rows = self.rows, self.rows + len(rows)
        if self.values is not None:
            return [self.values[(start + k) % len(self.values)] for k in range(len(rows))]
        return [self.value] * len(rows)


def _slot(version: str, scorer: Any, budget_ms: float = 50.0, threshold: float = 0.5) -> ModelSlot:
    return ModelSlot("m", version, "champion", scorer, FeatureSpec.default(), threshold, budget_ms)


def _service(current: ModelSlot, previous: ModelSlot | None, **opts: Any) -> ScoringService:
    service = ScoringService(
        ServingOptions(log_predictions=False, warm_days=0, event_clock="simulated", **opts), shadow=False
    )
    service.router.ensure([current.spec])
    if previous is not None:
        service.manager.promote(previous)
    service.manager.promote(current)
    return service


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (Fixed(float("nan")), "nan"),
        (Fixed(1.7), "out_of_range"),
        (Fixed(exc=RuntimeError("onnx blew up")), "error:RuntimeError"),
        (Fixed(0.9, sleep_s=0.02), "timeout"),
    ],
)
def test_previous_champion_answers_when_the_champion_fails(bad: Fixed, reason: str) -> None:
    good = Fixed(0.8)
    service = _service(_slot("2", bad, budget_ms=5.0), _slot("1", good))
    out = service.score(parse_score_request(tx(1)))
    assert out["model_version"] == "1" and out["fallback"] is True
    assert out["score"] == 0.8 and out["decision"] == "decline"
    assert service.fallback_count == 1 and good.calls == 1
    text = service.metrics.render()[0].decode()
    assert f'fraudops_fallbacks_total{{model_version="2",reason="{reason}"}} 1.0' in text


def test_healthy_champion_never_touches_the_fallback() -> None:
    good, spare = Fixed(0.1), Fixed(0.9)
    service = _service(_slot("2", good), _slot("1", spare))
    for i in range(20):
        out = service.score(parse_score_request(tx(i)))
        assert out["model_version"] == "2" and out["decision"] == "approve" and not out["fallback"]
    assert spare.calls == 0


def test_no_previous_version_means_503_unless_merely_late() -> None:
    service = _service(_slot("1", Fixed(float("nan"))), None)
    with pytest.raises(ModelFailure):
        service.score(parse_score_request(tx(1)))
    late = _service(_slot("1", Fixed(0.3, sleep_s=0.01), budget_ms=1.0), None)
    out = late.score(parse_score_request(tx(2)))
    assert out["score"] == 0.3 and out["model_version"] == "1"


def test_review_band() -> None:
    service = _service(_slot("1", Fixed(0.45)), None, review_band=0.1)
    assert service.score(parse_score_request(tx(1)))["decision"] == "review"


def test_rollback_reuses_the_loaded_session() -> None:
    a, b = _slot("1", Fixed(0.1)), _slot("2", Fixed(0.2))
    service = _service(b, a)
    service.manager.promote(_slot("1", Fixed(0.9)))  # back to v1: the loaded v1 slot is reused
    assert service.manager.current is a and service.manager.previous is b


class Rows:
    """The prediction log's interface, keeping rows in memory."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)


def test_prediction_row_is_spooled_before_the_answer_even_on_failure() -> None:
    """The row is written while the request is answered (a killed service must not lose an
    acknowledged row, issue #18 finding 8); only the shadow offer waits until after the answer."""
    service = _service(_slot("2", Fixed(0.3)), None)
    service.writer = Rows()  # type: ignore[assignment]
    later: list[Any] = []
    out = service.score(parse_score_request(tx(1)), "rid-1", defer=later.append)
    assert out["score"] == 0.3 and len(later) == 1
    (row,) = service.writer.rows  # type: ignore[union-attr]
    assert row["request_id"] == "rid-1" and row["score"] == 0.3 and row["mode"] == "production"
    later.pop()()  # the shadow offer (no pool here): writes nothing more
    assert len(service.writer.rows) == 1  # type: ignore[union-attr]

    broken = _service(_slot("3", Fixed(float("nan"))), None)
    broken.writer = Rows()  # type: ignore[assignment]
    with pytest.raises(ModelFailure):
        broken.score(parse_score_request(tx(2)), "rid-2", defer=later.append)
    (row,) = broken.writer.rows  # type: ignore[union-attr]  # logged with its 503
    assert row["score"] is None and row["error"] == "champion v3: nan"


def test_a_batch_falls_back_row_by_row_and_logs_every_request() -> None:
    nan = float("nan")
    champion = Fixed(values=[0.1, nan, 0.2, 1.5])  # rows 2 and 4 fail (NaN, out of range)
    previous = Fixed(0.7)
    service = _service(_slot("2", champion), _slot("1", previous))
    service.writer = Rows()  # type: ignore[assignment]
    later: list[Any] = []
    reqs = [parse_score_request(tx(i)) for i in range(4)]
    out = service.score_many(reqs, ["a", None, "c", "d"], defer=later.append)
    assert champion.calls == 1 and previous.calls == 1 and previous.rows == 2  # one call each
    assert [o["model_version"] for o in out] == ["2", "1", "2", "1"]  # type: ignore[index]
    assert [o["score"] for o in out] == [0.1, 0.7, 0.2, 0.7]  # type: ignore[index]
    assert [o["fallback"] for o in out] == [False, True, False, True]  # type: ignore[index]
    assert [o["transaction_id"] for o in out] == ["tx-0", "tx-1", "tx-2", "tx-3"]  # type: ignore[index]
    assert out[0]["request_id"] == "a" and out[1]["request_id"]  # type: ignore[index]
    assert service.fallback_count == 2
    assert service.metrics.batch_size.value() == 1  # one batch observed
    assert len(later) == 4  # the shadow offers; the rows are already written
    for work in later:
        work()
    rows = service.writer.rows  # type: ignore[union-attr]
    assert len(rows) == 4
    assert [r["error"] for r in rows] == [None, "champion v2: nan", None, "champion v2: out_of_range"]
    assert len({r["latency_ms"] for r in rows}) == 1  # the batch's time, for each of its requests


def test_a_batch_with_no_previous_version_fails_only_the_failed_rows() -> None:
    service = _service(_slot("1", Fixed(values=[0.3, float("nan")])), None)
    out = service.score_many([parse_score_request(tx(i)) for i in range(2)])
    assert out[0]["score"] == 0.3  # type: ignore[index]
    assert isinstance(out[1], ModelFailure)


def test_the_budget_is_per_request_in_a_batch() -> None:
    # 8 ms for a call: over a 5 ms budget for one row, within it for a batch of four (2 ms each).
    slow = _service(_slot("2", Fixed(0.3, sleep_s=0.008), budget_ms=5.0), _slot("1", Fixed(0.9)))
    assert slow.score(parse_score_request(tx(0)))["fallback"] is True
    out = slow.score_many([parse_score_request(tx(i)) for i in range(1, 5)])
    assert [o["fallback"] for o in out] == [False] * 4  # type: ignore[index]


def test_a_feature_bug_in_one_request_fails_only_that_request() -> None:
    service = _service(_slot("1", Fixed(0.3)), None)
    compute = service.router.compute

    def flaky(tx: Any) -> list[float]:
        if tx["transaction_id"] == "tx-1":
            raise KeyError("bug")
        return compute(tx)

    service.router.compute = flaky  # type: ignore[method-assign]
    later: list[Any] = []
    out = service.score_many([parse_score_request(tx(i)) for i in range(3)], defer=later.append)
    assert isinstance(out[1], KeyError)
    assert [out[0]["score"], out[2]["score"]] == [0.3, 0.3]  # type: ignore[index]
    assert len(later) == 2  # the failed request has no prediction row to write
    all_broken = service.score_many([parse_score_request(tx(1))])
    assert isinstance(all_broken[0], KeyError)

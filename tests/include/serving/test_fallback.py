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
    def __init__(self, value: Any = 0.2, sleep_s: float = 0.0, exc: Exception | None = None) -> None:
        self.value, self.sleep_s, self.exc = value, sleep_s, exc
        self.calls = 0

    def score_one(self, vector: list[float]) -> float:
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return self.value


def _slot(version: str, scorer: Any, budget_ms: float = 50.0, threshold: float = 0.5) -> ModelSlot:
    return ModelSlot("m", version, "champion", scorer, FeatureSpec.default(), threshold, budget_ms)


def _service(current: ModelSlot, previous: ModelSlot | None, **opts: Any) -> ScoringService:
    service = ScoringService(ServingOptions(log_predictions=False, warm_days=0, **opts), shadow=False)
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


def test_prediction_row_is_deferred_until_after_the_answer_even_on_failure() -> None:
    service = _service(_slot("2", Fixed(0.3)), None)
    service.writer = Rows()  # type: ignore[assignment]
    later: list[Any] = []
    out = service.score(parse_score_request(tx(1)), "rid-1", defer=later.append)
    assert out["score"] == 0.3 and service.writer.rows == [] and len(later) == 1  # type: ignore[attr-defined]
    later.pop()()
    (row,) = service.writer.rows  # type: ignore[attr-defined]
    assert row["request_id"] == "rid-1" and row["score"] == 0.3 and row["mode"] == "production"

    broken = _service(_slot("3", Fixed(float("nan"))), None)
    broken.writer = Rows()  # type: ignore[assignment]
    with pytest.raises(ModelFailure):
        broken.score(parse_score_request(tx(2)), "rid-2", defer=later.append)
    later.pop()()  # the failed request is still logged, after its 503
    (row,) = broken.writer.rows  # type: ignore[attr-defined]
    assert row["score"] is None and row["error"] == "champion v3: nan"

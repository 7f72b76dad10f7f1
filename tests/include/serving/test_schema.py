"""The /score contract: every bad field is named with its reason; no servers needed."""

from __future__ import annotations

import pytest
from serving_helpers import tx
from starlette.testclient import TestClient

from fraudops.serving.schema import RequestError, parse_score_request


def test_valid_request_parses_to_a_transaction() -> None:
    req = parse_score_request(tx(1, amount=12.5))
    t = req.to_transaction()
    assert t["event_time"].tzinfo is not None and t["amount"] == 12.5 and "timestamp" not in t


def test_naive_timestamp_is_utc_and_unknown_fields_are_ignored() -> None:
    req = parse_score_request({**tx(1), "timestamp": "2026-06-01T10:00:00", "loyalty_tier": "gold"})
    assert req.timestamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_every_bad_field_is_named() -> None:
    body = {
        "transaction_id": "",
        "terminal_id": "t",
        "amount": -3,
        "timestamp": 1714550400,
        "currency": "euro",
    }
    with pytest.raises(RequestError) as info:
        parse_score_request(body)
    err = info.value
    assert err.status == 422
    fields = {e["field"]: e["reason"] for e in err.errors}
    assert set(fields) == {"transaction_id", "card_id", "amount", "timestamp", "currency"}
    assert fields["card_id"] == "required field is missing"
    assert "ISO 8601" in fields["timestamp"]
    assert "greater than or equal to 0" in fields["amount"]


@pytest.mark.parametrize("ts", ["yesterday", "2026-13-01T00:00:00Z", ""])
def test_bad_timestamps(ts: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_score_request({**tx(1), "timestamp": ts})
    assert [e["field"] for e in info.value.errors] == ["timestamp"]


@pytest.mark.parametrize("server", ["asgi", "fast path"])
def test_http_400_and_422_bodies(server: str) -> None:
    """The same answers from the ASGI app (any ASGI server) and from ``fraudops serve``'s fast path."""
    import httpx
    from serving_helpers import LiveServer

    from fraudops.serving.app import create_app
    from fraudops.serving.options import ServingOptions
    from fraudops.serving.service import ScoringService

    service = ScoringService(
        ServingOptions(log_predictions=False, warm_days=0, event_clock="simulated"), shadow=False
    )
    app = create_app(service, manage_lifecycle=False)
    live = LiveServer(app) if server == "fast path" else None
    try:
        with TestClient(app) if live is None else httpx.Client(base_url=live.url) as client:
            r = client.post("/score", content=b"{not json")
            assert r.status_code == 400
            assert r.json()["fields"] == [{"field": "body", "reason": "not valid JSON"}]
            r = client.post("/score", json={**tx(1), "amount": "lots", "region": 7})
            assert r.status_code == 422
            assert {f["field"] for f in r.json()["fields"]} == {"amount", "region"}
            assert float(r.headers["x-score-latency-ms"]) > 0
            # Valid but no champion loaded yet: 503, and /health says loading.
            assert client.post("/score", json=tx(1)).status_code == 503
            assert client.get("/health").status_code == 503
            assert service.metrics.requests.value("422") == 1
    finally:
        if live is not None:
            live.close()

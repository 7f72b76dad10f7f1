"""Prediction rows and decisions shared by the scoring service and the stream shadow workers."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson


def tie_draw(key: str) -> float:
    """A uniform number in [0, 1) fixed by ``key`` (the transaction id): the draw that decides an
    event scored exactly at the threshold, the same on every replica and every retry."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def decide(
    score: float, threshold: float, review_band: float = 0.0, tie_share: float = 1.0, key: str = ""
) -> str:
    """``decline`` above ``threshold``, and at it for all events (``tie_share`` 1) or for those whose
    draw (:func:`tie_draw` of ``key``) falls below ``tie_share`` (the release matched the threshold
    to the alert budget with ties drawn, ``fraudops.release.operating_point``); ``review`` within
    ``review_band`` below it (0: no band); ``approve`` otherwise."""
    if score > threshold or (score == threshold and (tie_share >= 1.0 or tie_draw(key) < tie_share)):
        return "decline"
    if review_band > 0 and score >= threshold - review_band:
        return "review"
    return "approve"


def shadow_row(result: Mapping[str, Any], model_name: str, review_band: float = 0.0) -> dict[str, Any]:
    """The ``predictions`` row (``mode = shadow``) of one challenger result or shed event."""
    score = result.get("score")
    return {
        **{k: result.get(k) for k in ("transaction_id", "request_id", "model_version", "alias")},
        "model_name": model_name,
        "mode": "shadow",
        "score": score,
        "decision": None if score is None else decide(score, result["threshold"], review_band),
        "latency_ms": result.get("latency_ms"),
        "fallback": False,
        "error": result.get("error"),
        "amount": result.get("amount"),
        "event_time": result.get("event_time"),
        "feature_set": result.get("feature_set"),
        "features": orjson.dumps(result.get("features")).decode(),
        "served_at": dt.datetime.now(dt.UTC),
    }

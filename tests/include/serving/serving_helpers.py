"""Helpers shared by the scoring-service tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Amount above which the "fragile" model returns NaN (the reference rows stay below it).
NAN_ABOVE = 50_000.0


def register(bundle: Path, tracking_uri: str, model_name: str) -> str:
    from fraudops.registry import register_artifact

    return register_artifact(
        bundle, tracking_uri=tracking_uri, model_name=model_name, experiment="serving-tests"
    ).version


def tx(i: int, amount: float = 42.0, card: str | None = None, **extra: Any) -> dict[str, Any]:
    """A valid /score body."""
    return {
        "transaction_id": f"tx-{i}",
        "card_id": card or f"c-{i % 50}",
        "terminal_id": f"t-{i % 20}",
        "merchant_id": f"m-{i % 10}",
        "amount": amount,
        "timestamp": f"2026-06-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "region": "eu-west",
        "device_id": f"d-{i % 30}",
        "channel": "ecom",
        "currency": "EUR",
        **extra,
    }

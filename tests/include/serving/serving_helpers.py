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


class LiveServer:
    """A real uvicorn server for ``app`` on a free port, in a thread (stopped by ``close``).

    Configured as ``fraudops serve`` configures it (``fastpath.server_config``: uvloop and the
    ``POST /score`` fast path), so these tests exercise what production runs.
    """

    def __init__(self, app: Any, **config: Any) -> None:
        import threading

        import uvicorn

        from fraudops.serving.fastpath import server_config
        from fraudops.stack.process import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = server_config(app, host="127.0.0.1", port=self.port, log_level="warning")
        for key, value in config.items():  # e.g. timeout_keep_alive
            setattr(cfg, key, value)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def wait_for(predicate: Any, timeout_s: float = 60.0, what: str = "condition") -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)

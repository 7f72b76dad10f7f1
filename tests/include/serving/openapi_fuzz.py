"""Generate a hostile-request corpus from the scoring service's own OpenAPI document with
schemathesis (run as a child process by ``test_openapi_fuzz.py``, before anything is measured).

Every operation, in schemathesis' positive (schema-valid) and negative (schema-violating) modes,
``max_examples`` cases each; ``/deploy`` once without and once with the control API's token.
Each case is written as the exact HTTP request it becomes (method, URL, headers, body bytes), one
JSON line each, so the test replays the same bytes at a fixed rate while it measures production.
Schema-valid ``/score`` bodies get ``now`` as their timestamp: a random date is refused by the
clock bound before anything is scored, and the point is to push hostile but valid ids, amounts
and optional fields through features, model and log.

Usage: python openapi_fuzz.py URL TOKEN MAX_EXAMPLES NOW OUT.jsonl
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode


def cases(
    url: str, op: Any, mode: GenerationMode, headers: dict[str, str] | None, max_examples: int, now: str
) -> list[dict[str, Any]]:
    """Up to ``max_examples`` requests of one operation in one mode, as replayable records."""
    label = f"{op.method.upper()} {op.path} {mode.value}{' +token' if headers else ''}"
    out: list[dict[str, Any]] = []

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def record(case: Any) -> None:
        if op.path == "/score" and mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
            case.body["timestamp"] = now
        kwargs = case.as_transport_kwargs(base_url=url, headers=headers)
        kwargs.pop("timeout", None)
        prepared = requests.Request(**kwargs).prepare()
        raw = prepared.body
        body = raw.encode() if isinstance(raw, str) else raw if isinstance(raw, bytes) else b""
        out.append(
            {
                "label": label,
                "method": prepared.method,
                "url": prepared.url,
                "headers": dict(prepared.headers),
                "body": base64.b64encode(body).decode(),
            }
        )

    with contextlib.suppress(Unsatisfiable):  # nothing to break in this mode (GET /health)
        record()
    return out


def main(url: str, token: str, max_examples: int, now: str, out: str) -> int:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    n = 0
    with open(out, "w") as f:
        for result in schema.get_all_operations():
            op = result.ok()  # type: ignore[union-attr]  # an invalid operation raises here: the test fails
            for mode in GenerationMode:
                for bearer in [None, token] if op.path == "/deploy" else [None]:
                    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
                    for rec in cases(url, op, mode, headers, max_examples, now):
                        f.write(json.dumps(rec) + "\n")
                        n += 1
    return n


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]), flush=True)

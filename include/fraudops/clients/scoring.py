"""Client of the scoring service's ``/version`` document, and waits on what it reports.

A release step moves a registry alias, then waits until the service reports the move as served
(``champion_is``, ``challenger_running``, ``challenger_gone``); a service that refused the bundle
says so in ``rejected``, and the wait stops with a ``PermanentError`` instead of timing out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fraudops.exceptions import PermanentError, ServiceError

#: ``ready(doc)`` → True when the service reports what the caller waits for.
Ready = Callable[[dict[str, Any]], bool]


def service_state(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The scoring service's ``/version`` document (champion, previous, challengers, rejected)."""
    import httpx

    try:
        response = httpx.get(f"{url}/version", timeout=timeout_s)
        response.raise_for_status()
        doc: dict[str, Any] = response.json()
        return doc
    except (httpx.HTTPError, ValueError) as err:
        raise ServiceError("scoring", f"{url} unreachable: {err}") from err


def wait_for_service(
    url: str,
    ready: Ready,
    what: str,
    timeout_s: float,
    poll_s: float = 0.5,
) -> tuple[dict[str, Any], float]:
    """Poll ``/version`` until ``ready(doc)`` is true; returns (doc, seconds waited).

    ``ready`` may raise ``PermanentError`` to stop early (e.g. the service refused the bundle).
    Raises ``ServiceError`` (retryable) on timeout.
    """
    t0 = time.monotonic()
    last: dict[str, Any] | str = "no answer yet"
    while True:
        try:
            doc = service_state(url)
            if ready(doc):
                return doc, time.monotonic() - t0
            last = doc
        except ServiceError as err:
            last = str(err)
        if time.monotonic() - t0 > timeout_s:
            raise ServiceError("scoring", f"did not report {what} within {timeout_s:g}s; last: {last}")
        time.sleep(poll_s)


def champion_is(version: str, model_name: str = "") -> Ready:
    def ready(doc: dict[str, Any]) -> bool:
        champ = doc.get("champion") or {}
        if str(champ.get("version")) == version:
            return True
        refused = (doc.get("rejected") or {}).get(f"champion@{version}")
        if refused:
            raise PermanentError(
                f"the scoring service refused {model_name} v{version} as champion: {refused}"
            )
        return False

    return ready


def challenger_running(alias: str, version: str, model_name: str, sample_rate: float | None = None) -> Ready:
    """Ready once ``alias`` runs ``version`` in the shadow pool (at ``sample_rate``, when given)."""

    def ready(doc: dict[str, Any]) -> bool:
        refused = (doc.get("rejected") or {}).get(f"{alias}@{version}")
        if refused:
            raise PermanentError(f"the scoring service refused {model_name} v{version}: {refused}")
        worker = (doc.get("challengers") or {}).get(alias) or {}
        if sample_rate is not None and worker.get("sample_rate") != sample_rate:
            return False
        return str(worker.get("version")) == version and worker.get("state") == "running"

    return ready


def challenger_gone(alias: str) -> Ready:
    def ready(doc: dict[str, Any]) -> bool:
        return alias not in (doc.get("challengers") or {})

    return ready

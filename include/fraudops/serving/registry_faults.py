"""Registry outages as the scoring service sees them: "unreachable, try again" vs "broken, refuse".

Why a module of its own: a version that fails to load is either broken (verification failed, bad
manifest, ONNX that does not load, a digest mismatch: refusing it for good is right) or was never
seen because MLflow could not be reached (connection refused or reset, timeout, a 5xx or 429 after
the client's own retries: refusing it would keep a release off until someone restarts the
service). ``unavailable_reason`` tells the two apart from the exceptions MLflow and requests really
raise; ``Backoff`` spaces the next attempts (exponential, capped, jittered).

What the MLflow client raises (mlflow 3.x, ``mlflow/utils/rest_utils.py``): ``http_request`` wraps
whatever ``requests`` raised (``ConnectionError``, ``RetryError`` once urllib3 gave up on a
408/429/5xx) in ``MlflowException("API request to <url> failed with exception ...")`` raised inside
the ``except`` block, so the original is its ``__context__``; a timeout becomes
``MlflowException("... failed with timeout exception ...")`` raised ``from`` the
``requests.exceptions.Timeout``; a JSON error answer becomes a ``RestException`` whose
``error_code`` maps to its HTTP status. The artifact download collects per-file failures into one
``MlflowException("The following failures occurred while downloading ...")`` that keeps only the
text of the wrapped ``API request to ... failed with exception ...`` messages, hence the text check.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from fraudops.exceptions import PermanentError, ServiceError

#: Reason classes (the ``reason`` label of ``fraudops_registry_unavailable_total``).
CONNECTION, TIMEOUT, SERVER_ERROR = "connection", "timeout", "server_error"
#: HTTP statuses that mean "the registry is there but cannot answer now".
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_CODES = {
    "TEMPORARILY_UNAVAILABLE": SERVER_ERROR,
    "REQUEST_LIMIT_EXCEEDED": SERVER_ERROR,
    "RESOURCE_EXHAUSTED": SERVER_ERROR,
    "DEADLINE_EXCEEDED": TIMEOUT,
}


class RegistryUnavailable(ServiceError):
    """The model registry (MLflow) could not be reached; a later attempt may succeed (503)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__("mlflow", message)


def unavailable_reason(err: BaseException) -> str | None:
    """``connection`` / ``timeout`` / ``server_error`` when ``err`` means the registry could not be
    reached or could not answer; None when it is about what was fetched (refuse it)."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen and len(chain) < 20:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:  # the concrete transport error, wherever it sits in the chain
        if isinstance(e, PermanentError):
            return None
        if isinstance(e, RegistryUnavailable):
            return e.reason
        why = _transport_reason(e)
        if why is not None:
            return why
    for e in chain:  # no transport error kept: what MLflow's own exception says
        why = _mlflow_reason(e)
        if why is not None:
            return why
    return None


def _transport_reason(e: BaseException) -> str | None:
    from requests import exceptions as rexc

    if isinstance(e, rexc.Timeout | TimeoutError):  # ConnectTimeout included
        return TIMEOUT
    if isinstance(e, rexc.RetryError):  # urllib3 gave up on 408/429/5xx answers
        return SERVER_ERROR
    if isinstance(e, rexc.HTTPError):
        status = getattr(e.response, "status_code", None)
        return SERVER_ERROR if status in _TRANSIENT_STATUS or (status or 0) >= 500 else None
    if isinstance(e, rexc.ConnectionError | rexc.ChunkedEncodingError | ConnectionError):
        return CONNECTION
    try:
        from urllib3 import exceptions as u3
    except ImportError:  # pragma: no cover - requests depends on urllib3
        return None
    if isinstance(e, u3.ProtocolError | u3.NewConnectionError):
        return CONNECTION
    if isinstance(e, u3.TimeoutError):
        return TIMEOUT
    return None


def _mlflow_reason(e: BaseException) -> str | None:
    from mlflow.exceptions import MlflowException, RestException

    if not isinstance(e, MlflowException):
        return None
    code = str(e.error_code)
    if code in _TRANSIENT_CODES:
        return _TRANSIENT_CODES[code]
    if isinstance(e, RestException):  # the server answered with an error document
        return SERVER_ERROR if e.get_http_status_code() in _TRANSIENT_STATUS else None
    text = str(e)
    if "failed with error code" in text:  # a non-JSON error answer: its status decides
        return SERVER_ERROR if e.get_http_status_code() >= 500 else None
    if "API request to " in text and "failed with" in text:  # ``http_request``'s wrapper
        return TIMEOUT if "timeout" in text.lower() or "timed out" in text.lower() else CONNECTION
    return None


@dataclass(frozen=True)
class Backoff:
    """Seconds before attempt ``n + 1`` after ``n`` failures: ``base_s`` doubling up to ``cap_s``,
    "equal jitter" (between half and all of it) so services that lost the registry together do not
    come back in lockstep."""

    base_s: float = 1.0
    cap_s: float = 60.0

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        full = min(self.cap_s, self.base_s * 2 ** max(failures - 1, 0))
        return float(full / 2 + rand() * full / 2)


@dataclass
class Waiting:
    """A version the service wants but could not fetch because the registry was unreachable."""

    alias: str
    version: str
    reason: str
    error: str
    attempts: int
    #: ``time.monotonic()`` of the next attempt.
    next_try: float
    #: Wall clock of the first failed attempt.
    since: float

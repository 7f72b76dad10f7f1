"""The ``POST /score`` contract: one transaction in, score + decision + model version out.

Why pydantic (v2, validated straight from JSON bytes): it rejects a bad request with *every*
offending field and its reason in one response, so a client fixes its payload in one round trip,
and it costs a few microseconds on the hot path. Unknown fields are ignored (clients may send more
context than this version uses); timestamps must be ISO 8601 strings (epoch numbers are refused:
seconds vs milliseconds is a classic silent bug); a timestamp without an offset is taken as UTC.

Hostile input (issue #18): ids are 1-128 characters without control characters (a NUL in an id
once broke its card's Redis members); ``amount`` must be a real JSON number (strict: no numeric
strings, no booleans), finite, in [0, 1e9]; a timestamp whose UTC conversion overflows is a 422,
never an exception out of the parser. How far an event time may lie from the clock is the
service's check (``ScoringService`` / ``options.ServingOptions.event_clock``), not the schema's:
it depends on the clock. ``X-Request-Id`` is kept only when it is 1-128 characters of
``[A-Za-z0-9._:-]`` (``clean_request_id``); otherwise the service generates one.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: Ids: 1-128 characters, none of them a control character (C0, DEL, C1): ids become Redis keys and
#: members (joined with NUL), log lines and warehouse keys.
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
ID = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
OPT_ID = Field(default=None, min_length=1, max_length=128, pattern=ID_PATTERN)
#: An ISO 8601 date-time starts with a four-digit year (pydantic alone would also take a numeric
#: string as epoch seconds or milliseconds, which the contract refuses).
_ISO_START = re.compile(r"\d{4}-\d{2}-\d{2}")
#: ``X-Request-Id`` values kept as the request id (anything else is replaced by a generated id).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class ScoreRequest(BaseModel):
    """One card transaction to score."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    transaction_id: str = ID
    card_id: str = ID
    terminal_id: str = ID
    amount: float = Field(
        strict=True, allow_inf_nan=False, ge=0.0, le=1e9, description="Transaction amount in ``currency``."
    )
    timestamp: dt.datetime = Field(description="Event time, ISO 8601 (UTC if no offset).")
    customer_id: str | None = OPT_ID
    merchant_id: str | None = OPT_ID
    merchant_category: str | None = OPT_ID
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    region: str | None = OPT_ID
    device_id: str | None = OPT_ID
    device_type: str | None = OPT_ID
    channel: str | None = OPT_ID

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_only(cls, value: Any) -> Any:
        if not isinstance(value, str) or not _ISO_START.match(value.strip()):
            raise ValueError("must be an ISO 8601 string, e.g. 2026-05-01T12:30:00Z")
        return value

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        try:
            return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59: past datetime.max in UTC
            raise ValueError("is out of range once converted to UTC") from None

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def to_transaction(self) -> dict[str, Any]:
        """The mapping the online feature store reads (``event_time`` instead of ``timestamp``)."""
        tx = self.__dict__.copy()
        tx["event_time"] = tx.pop("timestamp")
        return tx


def clean_request_id(value: str | None) -> str | None:
    """``value`` if it is an acceptable ``X-Request-Id`` (1-128 of ``[A-Za-z0-9._:-]``), else None."""
    if value is None or _REQUEST_ID.fullmatch(value) is None:
        return None
    return value


class RequestError(Exception):
    """A 4xx: ``errors`` lists every bad field with its reason."""

    def __init__(self, status: int, errors: list[dict[str, str]]) -> None:
        self.status = status
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))

    def body(self) -> dict[str, Any]:
        return {"error": "invalid request", "fields": self.errors}


def _errors(err: ValidationError) -> list[dict[str, str]]:
    out = []
    for e in err.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in e.get("loc", ())) or "body"
        reason = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "missing":
            reason = "required field is missing"
        elif e.get("type") == "string_pattern_mismatch" and loc != "currency":
            reason = "must not contain control characters"
        out.append({"field": loc, "reason": reason})
    return out


def parse_score_request(body: bytes | str | dict[str, Any]) -> ScoreRequest:
    """Validate a request body; raises ``RequestError`` (400 bad JSON, 422 bad fields)."""
    try:
        if isinstance(body, dict):
            return ScoreRequest.model_validate(body)
        return ScoreRequest.model_validate_json(body)
    except (OverflowError, RecursionError) as err:  # a validator's arithmetic: this request only
        raise RequestError(422, [{"field": "body", "reason": f"value out of range ({err})"}]) from err
    except ValidationError as err:
        errors = _errors(err)
        if any(e.get("type") == "json_invalid" for e in err.errors()):
            raise RequestError(400, [{"field": "body", "reason": "not valid JSON"}]) from err
        if any(e.get("type") == "model_type" for e in err.errors()):
            raise RequestError(400, [{"field": "body", "reason": "must be a JSON object"}]) from err
        raise RequestError(422, errors) from err

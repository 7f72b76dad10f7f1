"""Settings that decide behaviour, not just addresses: the event clock (issue #18, finding 10:
clocks come from the server in production, never from data anyone could have written)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fraudops.config import load_settings
from fraudops.exceptions import ConfigError
from fraudops.release.evidence import event_clock


class _Warehouse:
    """Answers ``newest_event_time`` with a far-future value, as a warehouse would after someone
    wrote an event dated 2099 (the simulated clock believes it; the server clock must not)."""

    def newest_event_time(self, table: str = "transactions") -> dt.datetime:
        return dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


def test_event_clock_defaults_to_the_server_on_real_bigquery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAUDOPS_EVENT_CLOCK", raising=False)
    monkeypatch.setenv("FRAUDOPS_BQ_ENDPOINT", "")  # real BigQuery
    assert load_settings().event_clock == "server"
    wh: Any = _Warehouse()
    before = dt.datetime.now(dt.UTC)
    now = event_clock(wh)
    assert before <= now <= dt.datetime.now(dt.UTC)  # the wall clock, not 2099


def test_event_clock_is_simulated_on_the_emulator_and_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAUDOPS_EVENT_CLOCK", raising=False)
    monkeypatch.setenv("FRAUDOPS_BQ_ENDPOINT", "http://127.0.0.1:9050")
    assert load_settings().event_clock == "simulated"
    wh: Any = _Warehouse()
    assert event_clock(wh).year == 2099  # the simulator's present is whatever it streamed
    assert event_clock(wh, clock="server").year < 2099
    monkeypatch.setenv("FRAUDOPS_EVENT_CLOCK", "server")
    assert load_settings().event_clock == "server" and event_clock(wh).year < 2099
    monkeypatch.setenv("FRAUDOPS_EVENT_CLOCK", "sundial")
    with pytest.raises(ConfigError, match="FRAUDOPS_EVENT_CLOCK"):
        load_settings()

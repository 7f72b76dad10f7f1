"""Vectorised, seed-deterministic generation of transactions, delayed labels and fraud ground truth.

Design choices that the rest of the platform relies on:

* **Every day is a pure function of (seed, date, config).** Each day draws from its own random
  stream ``default_rng([seed, day_number, tag])``; state that spans days (compromised terminals,
  attack waves) is re-derived from the seeds of the days it started on. So a 30-day backfill done
  in one go, day by day, or re-run later gives identical rows, and chunked writes stay idempotent.
* **Ids are deterministic and globally unique**: ``sim<seed>-<yyyymmdd>-<nnnnnn>`` for transactions
  (numbered in event-time order within a day), entity ids carry the seed.
* **Transactions carry no label information**; labels are separate records with their own
  ``label_time`` (hours to weeks later, some never) and the scenario sits in the ground truth.
* Everything is numpy/pyarrow column work (no Python loop over transactions), so a day of ~33k
  transactions takes a few tens of milliseconds.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudops.exceptions import ConfigError
from fraudops.simulate.config import (
    CATEGORY_PRICE,
    CHANNELS,
    DEVICE_TYPES,
    ONLINE_CATEGORIES,
    PHYSICAL_CATEGORIES,
    REGION_CURRENCY,
    REGION_FX,
    REGION_NEIGHBOURS,
    REGION_UTC_OFFSET_H,
    REGION_WEIGHTS,
    REGIONS,
    SCENARIOS,
    SimulationConfig,
    Wave,
)
from fraudops.warehouse.schema import LABELS, SIM_GROUND_TRUTH, TRANSACTIONS

if TYPE_CHECKING:
    import pandas as pd

US_PER_S = 1_000_000
US_PER_H = 3_600 * US_PER_S
US_PER_DAY = 24 * US_PER_H
EPOCH = dt.date(1970, 1, 1)

# Stream tags: one independent random stream per (day, purpose).
_T_POP, _T_GEN, _T_CT_START, _T_CT_TX, _T_CARDTEST, _T_ATO, _T_SPREE, _T_WAVE, _T_LABEL = range(1, 10)

CP, ECOM, MOBILE = 0, 1, 2
POS, DESKTOP, IOS, ANDROID = 0, 1, 2, 3
SC_CT, SC_TEST, SC_ATO, SC_SPREE = 0, 1, 2, 3

#: Local-hour profile of genuine spending (people sleep; lunch and evening peaks).
_GENUINE_HOURS = np.array(
    [
        0.6,
        0.35,
        0.25,
        0.2,
        0.2,
        0.35,
        0.9,
        2.0,
        3.4,
        4.6,
        5.2,
        5.9,
        6.6,
        6.1,
        5.4,
        5.3,
        5.6,
        6.1,
        6.6,
        6.4,
        5.4,
        4.0,
        2.6,
        1.4,
    ]
)
#: Fraudsters prefer the night for remote attacks (fewer people watching their phone).
_NIGHT_HOURS = np.array(
    [
        5.5,
        6.0,
        6.5,
        6.5,
        6.0,
        5.0,
        4.0,
        3.5,
        3.0,
        3.0,
        3.0,
        3.0,
        3.0,
        3.0,
        3.0,
        3.0,
        3.0,
        3.2,
        3.5,
        3.8,
        4.2,
        4.6,
        5.0,
        5.2,
    ]
)
#: Weekday multipliers of genuine volume (Mon..Sun).
_WEEKDAY = np.array([0.97, 0.97, 0.98, 1.0, 1.08, 1.12, 0.88])


def day_number(day: dt.date) -> int:
    return (day - EPOCH).days


def to_date(value: dt.date | dt.datetime | str) -> dt.date:
    """Accept a date, a datetime (its UTC date) or an ISO string."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError as err:
        raise ConfigError(f"not a date: {value!r} (expected YYYY-MM-DD)") from err


def _rng(seed: int, day: int, tag: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(day) + 1_000_000, tag])


# ---------------------------------------------------------------------------------------------
# Population: cards, customers, devices, merchants and terminals (fixed for a seed and config)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Population:
    """The simulated world's entities, as index-aligned numpy/arrow arrays."""

    card_ids: pa.Array
    card_customer: np.ndarray  # card → customer index
    card_region: np.ndarray  # home region code
    card_rate: np.ndarray  # mean tx per day
    card_mu: np.ndarray  # log of typical amount (EUR)
    card_channel_cum: np.ndarray  # (n_cards, 3) cumulative channel probabilities
    card_fav: np.ndarray  # (n_cards, 6) favourite physical terminals (home region)
    customer_ids: pa.Array
    customer_phone_type: np.ndarray  # IOS or ANDROID
    device_ids: pa.Array  # 2 per customer: [2c] phone, [2c+1] desktop
    merchant_ids: pa.Array
    terminal_ids: pa.Array
    pos_device_ids: pa.Array  # device id of each terminal's POS reader
    terminal_merchant: np.ndarray
    terminal_region: np.ndarray
    terminal_online: np.ndarray  # bool
    terminal_category: np.ndarray  # code into CATEGORIES
    categories: tuple[str, ...]
    #: Terminals grouped by (region, online): sorted indices and group offsets for O(1) sampling.
    group_index: np.ndarray
    group_start: np.ndarray
    group_size: np.ndarray

    def terminals_in(self, region: np.ndarray, online: np.ndarray | bool, u: np.ndarray) -> np.ndarray:
        """A uniformly random terminal of each (region, online) group, vectorised."""
        g = np.asarray(region) * 2 + np.asarray(online, dtype=np.int64)
        pick = self.group_start[g] + np.minimum(
            (u * self.group_size[g]).astype(np.int64), self.group_size[g] - 1
        )
        return np.asarray(self.group_index[pick])


def _ids(prefix: str, n: int) -> pa.Array:
    padded = pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), 6, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), padded, "")


@functools.lru_cache(maxsize=8)
def build_population(seed: int, config: SimulationConfig) -> Population:
    """Entities for ``seed``; cached because every day of a run shares them."""
    rng = _rng(seed, -1, _T_POP)
    n_cards, n_cust = config.n_cards, config.n_customers
    n_merch, n_term = config.n_merchants, config.n_terminals
    weights = np.array(REGION_WEIGHTS) / sum(REGION_WEIGHTS)
    categories = tuple(dict.fromkeys((*PHYSICAL_CATEGORIES, *ONLINE_CATEGORIES)))
    cat_code = {c: i for i, c in enumerate(categories)}

    # Customers and their cards: every customer has one card, some a second one.
    cust_region = rng.choice(len(REGIONS), size=n_cust, p=weights)
    card_customer = np.concatenate([np.arange(n_cust), rng.integers(0, n_cust, n_cards - n_cust)])
    card_region = cust_region[card_customer]
    card_rate = rng.gamma(2.0, config.tx_per_card_per_day / 2.0, n_cards)
    card_mu = rng.normal(3.3, 0.55, n_cards)
    # Channel mix per card: mostly card-present, a share online, younger cards more mobile.
    mix = rng.dirichlet([6.0, 2.0, 2.0], n_cards)
    card_channel_cum = np.cumsum(mix, axis=1)
    phone_type = np.where(rng.random(n_cust) < 0.45, IOS, ANDROID)

    # Merchants and terminals: a merchant is physical or online, in one region, of one category.
    merch_region = rng.choice(len(REGIONS), size=n_merch, p=weights)
    merch_online = rng.random(n_merch) < config.online_merchant_share
    phys = np.array([cat_code[c] for c in PHYSICAL_CATEGORIES])
    onl = np.array([cat_code[c] for c in ONLINE_CATEGORIES])
    merch_cat = np.where(
        merch_online,
        onl[rng.choice(len(onl), n_merch, p=[0.25, 0.25, 0.15, 0.15, 0.1, 0.1])],
        phys[rng.choice(len(phys), n_merch, p=[0.3, 0.12, 0.2, 0.12, 0.08, 0.1, 0.04, 0.04])],
    )
    terminal_merchant = np.concatenate([np.arange(n_merch), rng.integers(0, n_merch, n_term - n_merch)])
    terminal_region = merch_region[terminal_merchant]
    terminal_online = merch_online[terminal_merchant]
    group = terminal_region * 2 + terminal_online.astype(np.int64)
    order = np.argsort(group, kind="stable")
    size = np.bincount(group, minlength=len(REGIONS) * 2)
    if (size == 0).any():
        raise ConfigError("too few terminals: every region needs physical and online terminals")
    start = np.concatenate([[0], np.cumsum(size)[:-1]])

    pop_wo_fav = dict(
        card_ids=_ids(f"c{seed}-", n_cards),
        card_customer=card_customer,
        card_region=card_region,
        card_rate=card_rate,
        card_mu=card_mu,
        card_channel_cum=card_channel_cum,
        customer_ids=_ids(f"u{seed}-", n_cust),
        customer_phone_type=phone_type,
        device_ids=_ids(f"d{seed}-", 2 * n_cust),
        merchant_ids=_ids(f"m{seed}-", n_merch),
        terminal_ids=_ids(f"t{seed}-", n_term),
        pos_device_ids=_ids(f"pos{seed}-", n_term),
        terminal_merchant=terminal_merchant,
        terminal_region=terminal_region,
        terminal_online=terminal_online,
        terminal_category=merch_cat[terminal_merchant],
        categories=categories,
        group_index=order,
        group_start=start,
        group_size=size,
    )
    tmp = Population(card_fav=np.zeros((0, 6), dtype=np.int64), **pop_wo_fav)
    fav = tmp.terminals_in(np.repeat(card_region, 6), False, rng.random(n_cards * 6)).reshape(n_cards, 6)
    return Population(card_fav=fav, **pop_wo_fav)


# ---------------------------------------------------------------------------------------------
# Attack waves
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _WaveLeg:
    """One region's part of a wave: [start, end) in absolute day numbers, peak intensity."""

    wave_id: str
    scenario: int
    region: int
    start: float
    end: float
    intensity: float
    #: Events a day (all regions) the intensity multiplies; None = the scenario's base rate.
    base_per_day: float | None = None
    #: Days to the peak (and from it to the end); None = a quarter of the leg.
    ramp_days: float | None = None

    def multiplier(self, day: float) -> float:
        if not self.start <= day < self.end:
            return 0.0
        ramp = max(self.ramp_days if self.ramp_days is not None else (self.end - self.start) * 0.25, 1e-9)
        return self.intensity * min(1.0, (day - self.start + 0.5) / ramp, (self.end - day) / ramp)


def _wave_legs(wave: Wave, start_day: float, wave_id: str) -> list[_WaveLeg]:
    regions = (wave.region, *REGION_NEIGHBOURS[wave.region][: wave.spread_regions])
    legs = []
    for hop, region in enumerate(regions):
        s = start_day + hop * wave.spread_lag_days
        legs.append(
            _WaveLeg(
                wave_id=wave_id,
                scenario=SCENARIOS.index(wave.scenario),
                region=REGIONS.index(region),
                start=s,
                end=s + wave.duration_days,
                intensity=wave.intensity * wave.spread_decay**hop,
                base_per_day=wave.base_per_day,
                ramp_days=wave.ramp_days,
            )
        )
    return legs


_MAX_WAVE_SPAN = 40  # days: longest auto wave incl. spreading; bounds how far back we look


@functools.lru_cache(maxsize=4096)
def _auto_wave(seed: int, week: int, config: SimulationConfig) -> tuple[_WaveLeg, ...]:
    """The random wave (if any) starting in calendar week ``week`` (day_number // 7)."""
    rng = _rng(seed, week, _T_WAVE)
    if rng.random() >= config.wave_probability_per_week:
        return ()
    wave = Wave(
        scenario=SCENARIOS[int(rng.integers(len(SCENARIOS)))],
        region=REGIONS[int(rng.choice(len(REGIONS), p=np.array(REGION_WEIGHTS) / sum(REGION_WEIGHTS)))],
        duration_days=float(rng.uniform(*config.wave_duration_days)),
        intensity=float(rng.uniform(*config.wave_intensity)),
        spread_regions=int(rng.integers(1, 4)),
        spread_lag_days=float(rng.uniform(1.0, 4.0)),
    )
    start = week * 7 + float(rng.integers(0, 7))
    return tuple(_wave_legs(wave, start, f"w{seed}-{week}"))


def active_wave_legs(seed: int, day: int, config: SimulationConfig, anchor_day: int) -> list[_WaveLeg]:
    """Wave legs that touch absolute day ``day``; ``anchor_day`` resolves relative extra waves."""
    legs: list[_WaveLeg] = []
    if config.auto_waves:
        for week in range((day - _MAX_WAVE_SPAN) // 7, day // 7 + 1):
            legs.extend(_auto_wave(seed, week, config))
    for i, wave in enumerate(config.extra_waves):
        if isinstance(wave.start_day, int | float):
            start = anchor_day + float(wave.start_day)
        else:
            start = float(day_number(to_date(wave.start_day)))
        legs.extend(_wave_legs(wave, start, wave.wave_id or f"x{i}-{wave.scenario}-{wave.region}"))
    return [leg for leg in legs if leg.start <= day < leg.end]


def wave_schedule(
    seed: int, start: dt.date | str, days: int, config: SimulationConfig | None = None
) -> list[dict[str, Any]]:
    """Every wave leg active in the window (for docs, plots and drift demos)."""
    config = config or SimulationConfig()
    first = day_number(to_date(start))
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for d in range(first, first + days):
        for leg in active_wave_legs(seed, d, config, first):
            seen.setdefault(
                (leg.wave_id, leg.region),
                {
                    "wave_id": leg.wave_id,
                    "scenario": SCENARIOS[leg.scenario],
                    "region": REGIONS[leg.region],
                    "start": EPOCH + dt.timedelta(days=leg.start),
                    "end": EPOCH + dt.timedelta(days=leg.end),
                    "intensity": round(leg.intensity, 2),
                },
            )
    return list(seen.values())


# ---------------------------------------------------------------------------------------------
# One day
# ---------------------------------------------------------------------------------------------
@dataclass
class _Part:
    """Columns of a set of generated rows (genuine or one fraud scenario), index-based."""

    card: np.ndarray
    terminal: np.ndarray
    t_us: np.ndarray  # microseconds since the epoch
    amount_eur: np.ndarray
    channel: np.ndarray
    device_type: np.ndarray
    device_id: pa.Array
    scenario: np.ndarray  # -1 genuine
    wave: list[str | None]
    group: np.ndarray  # fraud event id (labels of one event arrive together); -1 genuine


def _region_lambdas(
    base: float, scenario: int, day: int, seed: int, config: SimulationConfig, anchor: int
) -> tuple[np.ndarray, list[tuple[str, int, float]]]:
    """Expected events per region from the base rate, plus (wave_id, region, lambda) for waves."""
    mult = np.array(config.rates.region_multipliers[SCENARIOS[scenario]])
    w = np.array(REGION_WEIGHTS) * mult
    share = config.volume_scale * w / w.sum()
    lam = base * share
    extra = [
        (
            leg.wave_id,
            leg.region,
            (lam[leg.region] if leg.base_per_day is None else leg.base_per_day * share[leg.region])
            * leg.multiplier(day),
        )
        for leg in active_wave_legs(seed, day, config, anchor)
        if leg.scenario == scenario
    ]
    return lam, extra


def _draw_events(
    rng: np.random.Generator, lam: np.ndarray, extra: list[tuple[str, int, float]]
) -> tuple[np.ndarray, list[str | None]]:
    """Region of every event of a day and the wave it belongs to (None for the base rate)."""
    counts = rng.poisson(lam)
    regions = [np.repeat(np.arange(len(lam)), counts)]
    waves: list[str | None] = [None] * int(counts.sum())
    for wave_id, region, lam_w in extra:
        n = int(rng.poisson(lam_w))
        regions.append(np.full(n, region))
        waves.extend([wave_id] * n)
    return np.concatenate(regions).astype(np.int64), waves


def _local_times(
    rng: np.random.Generator, day_us: int, region: np.ndarray, profile: np.ndarray
) -> np.ndarray:
    """Event times in the UTC day for a local-hour ``profile`` of each row's region."""
    n = len(region)
    p = profile / profile.sum()
    local_h = rng.choice(24, size=n, p=p)
    utc_h = (local_h - np.array(REGION_UTC_OFFSET_H)[region]) % 24
    return np.asarray(day_us + utc_h * US_PER_H + (rng.random(n) * US_PER_H).astype(np.int64))


def _genuine(pop: Population, config: SimulationConfig, day: int, seed: int) -> _Part:
    rng = _rng(seed, day, _T_GEN)
    weekday = (EPOCH + dt.timedelta(days=day)).weekday()
    counts = rng.poisson(pop.card_rate * (_WEEKDAY[weekday] * config.volume_scale))
    card = np.repeat(np.arange(len(counts)), counts)
    n = len(card)
    u = rng.random(n)
    cum = pop.card_channel_cum[card]
    channel = (u[:, None] > cum[:, :2]).sum(axis=1)
    online = channel != CP
    # Region: home most of the time; travel (card present) or foreign web shops otherwise.
    away = rng.random(n) < np.where(online, 0.25, 0.03)
    region = np.where(
        away,
        rng.choice(len(REGIONS), size=n, p=np.array(REGION_WEIGHTS) / sum(REGION_WEIGHTS)),
        pop.card_region[card],
    )
    terminal = pop.terminals_in(region, online, rng.random(n))
    fav = (~online) & (~away) & (rng.random(n) < 0.7)
    terminal = np.where(fav, pop.card_fav[card, rng.integers(0, pop.card_fav.shape[1], n)], terminal)
    price = np.array([CATEGORY_PRICE[c] for c in pop.categories])[pop.terminal_category[terminal]]
    amount = np.exp(pop.card_mu[card] + rng.normal(0.0, 0.75, n)) * price
    cust = pop.card_customer[card]
    # Devices: POS reader in store; the customer's desktop (web) or phone (mobile, some web).
    phone = (channel == MOBILE) | ((channel == ECOM) & (rng.random(n) < 0.25))
    device_type = np.where(~online, POS, np.where(phone, pop.customer_phone_type[cust], DESKTOP))
    dev_idx = 2 * cust + (~phone).astype(np.int64)
    device_id = pc.if_else(
        pa.array(online),
        pop.device_ids.take(pa.array(dev_idx)),
        pop.pos_device_ids.take(pa.array(terminal)),
    )
    t_us = _local_times(rng, day * US_PER_DAY, pop.terminal_region[terminal], _GENUINE_HOURS)
    return _Part(
        card,
        terminal,
        t_us,
        amount,
        channel,
        device_type,
        device_id,
        np.full(n, -1),
        [None] * n,
        np.full(n, -1),
    )


def _events_part(
    card: np.ndarray,
    terminal: np.ndarray,
    t_us: np.ndarray,
    amount: np.ndarray,
    channel: np.ndarray,
    device_type: np.ndarray,
    device_id: pa.Array,
    scenario: int,
    wave: list[str | None],
    group: np.ndarray,
) -> _Part:
    n = len(card)
    return _Part(
        card.astype(np.int64),
        terminal.astype(np.int64),
        t_us.astype(np.int64),
        amount,
        channel,
        device_type,
        device_id,
        np.full(n, scenario),
        wave,
        group,
    )


def _fit_in_day(start_us: np.ndarray, span_us: np.ndarray, day_us: int) -> np.ndarray:
    """Move event starts earlier so the whole event stays inside its day (keeps days independent)."""
    return np.asarray(np.clip(start_us, day_us, day_us + US_PER_DAY - 1 - span_us))


def _compromised_terminals(
    pop: Population, config: SimulationConfig, day: int, seed: int, anchor: int
) -> _Part:
    """Skimmed/compromised terminals: for days after the compromise, cloned cards cash out there."""
    r = config.rates
    lo, hi = r.compromised_terminal_days
    active_t: list[np.ndarray] = []
    active_w: list[str | None] = []
    for s in range(day - hi + 1, day + 1):
        lam, extra = _region_lambdas(r.compromised_terminal_per_day, SC_CT, s, seed, config, anchor)
        rng = _rng(seed, s, _T_CT_START)
        regions, waves = _draw_events(rng, lam, extra)
        terms = pop.terminals_in(regions, False, rng.random(len(regions)))
        dur = rng.integers(lo, hi + 1, len(regions))
        alive = day < s + dur
        active_t.append(terms[alive])
        active_w.extend(w for w, a in zip(waves, alive, strict=True) if a)
    terms = np.concatenate(active_t) if active_t else np.zeros(0, dtype=np.int64)
    rng = _rng(seed, day, _T_CT_TX)
    k = rng.poisson(r.compromised_terminal_tx_per_day, len(terms))
    event = np.repeat(np.arange(len(terms)), k)
    terminal = terms[event]
    n = len(terminal)
    t_us = _local_times(rng, day * US_PER_DAY, pop.terminal_region[terminal], _GENUINE_HOURS)
    card = rng.integers(0, config.n_cards, n)  # cloned cards from anywhere
    amount = np.exp(rng.normal(4.6, 0.6, n))  # ~100 EUR, larger than usual
    wave = [active_w[e] for e in event]
    # Each fraudulent use is disputed on its own (different card holders).
    group = day * 1_000_000 + SC_CT * 100_000 + np.arange(n)
    device_id = pop.pos_device_ids.take(pa.array(terminal))
    return _events_part(
        card, terminal, t_us, amount, np.full(n, CP), np.full(n, POS), device_id, SC_CT, wave, group
    )


def _card_testing(pop: Population, config: SimulationConfig, day: int, seed: int, anchor: int) -> _Part:
    """Bursts of tiny online payments on one card at one merchant, sometimes a cash-out after."""
    r = config.rates
    lam, extra = _region_lambdas(r.card_testing_per_day, SC_TEST, day, seed, config, anchor)
    rng = _rng(seed, day, _T_CARDTEST)
    regions, waves = _draw_events(rng, lam, extra)
    m = len(regions)
    size = rng.integers(r.card_testing_burst[0], r.card_testing_burst[1] + 1, m)
    cashout = rng.random(m) < 0.3
    size = size + cashout
    start = _local_times(rng, day * US_PER_DAY, regions, _NIGHT_HOURS)
    span = (size * 90 * US_PER_S).astype(np.int64)
    start = _fit_in_day(start, span, day * US_PER_DAY)
    card_of = rng.integers(0, config.n_cards, m)
    term_of = pop.terminals_in(regions, True, rng.random(m))
    dev_type_of = np.where(rng.random(m) < 0.6, DESKTOP, ANDROID)
    event = np.repeat(np.arange(m), size)
    pos_in = np.arange(len(event)) - np.repeat(np.cumsum(size) - size, size)
    n = len(event)
    t_us = start[event] + pos_in * (rng.integers(5, 90, n) * US_PER_S)
    amount = np.round(rng.uniform(0.5, 3.0, n), 2)
    last = pos_in == size[event] - 1
    big = last & cashout[event]
    amount = np.where(big, np.exp(rng.normal(5.5, 0.5, n)), amount)
    device_id = pa.array([f"dx{seed}-{day}-t{e}" for e in event], pa.string())
    return _events_part(
        card_of[event],
        term_of[event],
        t_us,
        amount,
        np.full(n, ECOM),
        dev_type_of[event],
        device_id,
        SC_TEST,
        [waves[e] for e in event],
        day * 1_000_000 + SC_TEST * 100_000 + event,
    )


def _account_takeover(pop: Population, config: SimulationConfig, day: int, seed: int, anchor: int) -> _Part:
    """A never-seen device, a region away from home and amounts far above the card's habit."""
    r = config.rates
    lam, extra = _region_lambdas(r.account_takeover_per_day, SC_ATO, day, seed, config, anchor)
    rng = _rng(seed, day, _T_ATO)
    regions, waves = _draw_events(rng, lam, extra)
    m = len(regions)
    # A victim from another region: draw cards until the home region differs (vectorised retry).
    card_of = rng.integers(0, config.n_cards, m)
    for _ in range(8):
        same = pop.card_region[card_of] == regions
        if not same.any():
            break
        card_of[same] = rng.integers(0, config.n_cards, int(same.sum()))
    size = rng.integers(1, 4, m)
    start = _local_times(rng, day * US_PER_DAY, regions, _NIGHT_HOURS)
    start = _fit_in_day(start, (size * 20 * 60 * US_PER_S).astype(np.int64), day * US_PER_DAY)
    chan_of = np.where(rng.random(m) < 0.6, MOBILE, ECOM)
    dev_of = np.where(chan_of == MOBILE, np.where(rng.random(m) < 0.7, ANDROID, IOS), DESKTOP)
    event = np.repeat(np.arange(m), size)
    n = len(event)
    pos_in = np.arange(n) - np.repeat(np.cumsum(size) - size, size)
    t_us = start[event] + pos_in * (rng.integers(60, 20 * 60, n) * US_PER_S)
    term = pop.terminals_in(regions[event], True, rng.random(n))
    amount = np.exp(pop.card_mu[card_of[event]] + rng.normal(1.8, 0.4, n)) + 150.0
    device_id = pa.array([f"dx{seed}-{day}-a{e}" for e in event], pa.string())
    return _events_part(
        card_of[event],
        term,
        t_us,
        amount,
        chan_of[event],
        dev_of[event],
        device_id,
        SC_ATO,
        [waves[e] for e in event],
        day * 1_000_000 + SC_ATO * 100_000 + event,
    )


def _stolen_card_spree(pop: Population, config: SimulationConfig, day: int, seed: int, anchor: int) -> _Part:
    """A stolen card used in quick succession at shops (electronics, jewelry, fuel) in one region."""
    r = config.rates
    lam, extra = _region_lambdas(r.stolen_card_spree_per_day, SC_SPREE, day, seed, config, anchor)
    rng = _rng(seed, day, _T_SPREE)
    regions, waves = _draw_events(rng, lam, extra)
    m = len(regions)
    size = rng.integers(r.stolen_card_spree_len[0], r.stolen_card_spree_len[1] + 1, m)
    start = _local_times(rng, day * US_PER_DAY, regions, _GENUINE_HOURS)
    start = _fit_in_day(start, (size * 40 * 60 * US_PER_S).astype(np.int64), day * US_PER_DAY)
    card_of = rng.integers(0, config.n_cards, m)
    event = np.repeat(np.arange(m), size)
    n = len(event)
    pos_in = np.arange(n) - np.repeat(np.cumsum(size) - size, size)
    t_us = start[event] + pos_in * (rng.integers(3 * 60, 40 * 60, n) * US_PER_S)
    term = pop.terminals_in(regions[event], False, rng.random(n))
    price = np.array([CATEGORY_PRICE[c] for c in pop.categories])[pop.terminal_category[term]]
    amount = np.exp(rng.normal(4.2, 0.5, n)) * np.maximum(price, 1.0)
    device_id = pop.pos_device_ids.take(pa.array(term))
    return _events_part(
        card_of[event],
        term,
        t_us,
        amount,
        np.full(n, CP),
        np.full(n, POS),
        device_id,
        SC_SPREE,
        [waves[e] for e in event],
        day * 1_000_000 + SC_SPREE * 100_000 + event,
    )


@dataclass
class DayTables:
    """One day's output as Arrow tables with the exact TableSpec columns."""

    transactions: pa.Table
    labels: pa.Table
    ground_truth: pa.Table


_TS = pa.timestamp("us", tz="UTC")


def _dict_strings(codes: np.ndarray, values: tuple[str, ...] | list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(values)).cast(
        pa.string()
    )


def _label_delays(
    rng: np.random.Generator, config: SimulationConfig, scenario: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Delay in hours (NaN = never labelled) and source code (0 customer_report, 1 chargeback)."""
    ld = config.label_delays
    n = len(scenario)
    p_never = np.array([ld.p_never[s] for s in SCENARIOS])[scenario]
    u = rng.random(n)
    never = u < p_never
    fast = (~never) & (u < p_never + (1 - p_never) * ld.p_fast)
    fast_h = np.clip(rng.lognormal(np.log(ld.fast_median_hours), 0.8, n), 0.25, 36.0)
    slow_h = np.clip(rng.lognormal(np.log(ld.chargeback_median_days), ld.chargeback_sigma, n), 1.5, 90.0) * 24
    hours = np.where(never, np.nan, np.where(fast, fast_h, slow_h))
    return hours, np.where(fast, 0, 1)


def generate_day(
    seed: int,
    day: dt.date,
    config: SimulationConfig,
    anchor: dt.date | None = None,
    ingested_at: dt.datetime | None = None,
    id_prefix: str = "sim",
) -> DayTables:
    """All rows of one UTC day (a pure function of seed, day and config).

    ``id_prefix`` keeps streamed ids ("str") apart from backfilled ones ("sim"): a stream scales
    volume differently, so the same (seed, day, index) must not name a different transaction.
    """
    pop = build_population(seed, config)
    d = day_number(day)
    a = day_number(anchor) if anchor is not None else d
    parts = [
        _genuine(pop, config, d, seed),
        _compromised_terminals(pop, config, d, seed, a),
        _card_testing(pop, config, d, seed, a),
        _account_takeover(pop, config, d, seed, a),
        _stolen_card_spree(pop, config, d, seed, a),
    ]
    card = np.concatenate([p.card for p in parts])
    terminal = np.concatenate([p.terminal for p in parts])
    t_us = np.concatenate([p.t_us for p in parts])
    amount_eur = np.concatenate([p.amount_eur for p in parts])
    channel = np.concatenate([p.channel for p in parts])
    device_type = np.concatenate([p.device_type for p in parts])
    scenario = np.concatenate([p.scenario for p in parts])
    group = np.concatenate([p.group for p in parts])
    device_id = pa.concat_arrays([p.device_id for p in parts])
    wave = [w for p in parts for w in p.wave]
    # Event-time order; ties broken by generation order so the order is deterministic.
    order = np.lexsort((np.arange(len(t_us)), t_us))
    card, terminal, t_us, amount_eur = card[order], terminal[order], t_us[order], amount_eur[order]
    channel, device_type, scenario, group = channel[order], device_type[order], scenario[order], group[order]
    device_id = device_id.take(pa.array(order))
    n = len(order)

    region = pop.terminal_region[terminal]
    amount = np.round(np.maximum(amount_eur, 0.5) * np.array(REGION_FX)[region], 2)
    yyyymmdd = day.strftime("%Y%m%d")
    tx_ids = _ids(f"{id_prefix}{seed}-{yyyymmdd}-", n)
    event_time = pa.array(t_us, type=_TS)
    # ingested_at: the write time when writing; in pure results the event time (as if streamed).
    ingested = pa.scalar(ingested_at, type=_TS) if ingested_at is not None else None
    merchant = pop.terminal_merchant[terminal]
    transactions = pa.table(
        {
            "transaction_id": tx_ids,
            "event_time": event_time,
            "card_id": pop.card_ids.take(pa.array(card)),
            "customer_id": pop.customer_ids.take(pa.array(pop.card_customer[card])),
            "terminal_id": pop.terminal_ids.take(pa.array(terminal)),
            "merchant_id": pop.merchant_ids.take(pa.array(merchant)),
            "merchant_category": _dict_strings(pop.terminal_category[terminal], pop.categories),
            "amount": pa.array(amount, pa.float64()),
            "currency": _dict_strings(region, REGION_CURRENCY),
            "region": _dict_strings(region, REGIONS),
            "device_id": device_id,
            "device_type": _dict_strings(device_type, DEVICE_TYPES),
            "channel": _dict_strings(channel, CHANNELS),
            "source": pa.array(np.full(n, "simulator", dtype=object), pa.string()),
            "ingested_at": event_time if ingested is None else pa.array(np.full(n, ingested.value), type=_TS),
        }
    )
    assert transactions.column_names == list(TRANSACTIONS.column_names)

    # Labels: one delay per fraud event (a victim disputes the whole spree at once), with a
    # little jitter per transaction; some genuine disputes come back as "not fraud".
    rng = _rng(seed, d, _T_LABEL)
    fraud = np.flatnonzero(scenario >= 0)
    f_group = group[fraud]
    uniq, inv = np.unique(f_group, return_inverse=True)
    g_scen = np.zeros(len(uniq), dtype=np.int64)
    g_scen[inv] = scenario[fraud]
    g_hours, g_src = _label_delays(rng, config, g_scen)
    hours = g_hours[inv] + rng.uniform(0, 0.25, len(fraud))
    src = g_src[inv]
    disputed = np.flatnonzero((scenario < 0) & (rng.random(n) < config.label_delays.genuine_dispute_rate))
    d_hours = (
        np.clip(
            rng.lognormal(np.log(config.label_delays.chargeback_median_days), 0.6, len(disputed)), 1.5, 90.0
        )
        * 24
    )
    wave_sorted = [wave[i] for i in order[fraud]] if len(fraud) else []
    ground_truth = pa.table(
        {
            "transaction_id": tx_ids.take(pa.array(fraud)),
            "event_time": event_time.take(pa.array(fraud)),
            "scenario": _dict_strings(scenario[fraud], SCENARIOS),
            "region": _dict_strings(region[fraud], REGIONS),
            "device_type": _dict_strings(device_type[fraud], DEVICE_TYPES),
            "wave_id": pa.array(wave_sorted, pa.string()),
            "label_delay_hours": pa.array(np.round(hours, 4), pa.float64(), from_pandas=True),
        }
    )
    assert ground_truth.column_names == list(SIM_GROUND_TRUTH.column_names)
    known = ~np.isnan(hours)
    lab_idx = np.concatenate([fraud[known], disputed])
    lab_hours = np.concatenate([hours[known], d_hours])
    lab_fraud = np.concatenate([np.ones(int(known.sum()), bool), np.zeros(len(disputed), bool)])
    lab_src = np.concatenate([src[known], np.ones(len(disputed), dtype=np.int64)])
    label_us = t_us[lab_idx] + (lab_hours * US_PER_H).astype(np.int64)
    lorder = np.lexsort((lab_idx, label_us))
    labels = pa.table(
        {
            "transaction_id": tx_ids.take(pa.array(lab_idx[lorder])),
            "event_time": pa.array(t_us[lab_idx[lorder]], type=_TS),
            "label_time": pa.array(label_us[lorder], type=_TS),
            "is_fraud": pa.array(lab_fraud[lorder]),
            "label_source": _dict_strings(lab_src[lorder], ("customer_report", "chargeback")),
            "ingested_at": pa.array(
                label_us[lorder] if ingested is None else np.full(len(lorder), ingested.value), type=_TS
            ),
        }
    )
    assert labels.column_names == list(LABELS.column_names)
    return DayTables(transactions, labels, ground_truth)


def iter_days(
    start: dt.date | str,
    days: float,
    seed: int,
    config: SimulationConfig | None = None,
    ingested_at: dt.datetime | None = None,
    id_prefix: str = "sim",
) -> Any:
    """Yield ``(date, DayTables)`` for the window, trimming a fractional last day."""
    config = config or SimulationConfig()
    if days <= 0:
        raise ConfigError(f"days must be > 0, got {days}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    first = to_date(start)
    end_us = (day_number(first) * US_PER_DAY) + round(days * US_PER_DAY)
    n_days = int(np.ceil(days))
    for i in range(n_days):
        day = first + dt.timedelta(days=i)
        tables = generate_day(seed, day, config, anchor=first, ingested_at=ingested_at, id_prefix=id_prefix)
        if (day_number(day) + 1) * US_PER_DAY > end_us:
            tables = _trim(tables, end_us)
        yield day, tables


def _trim(tables: DayTables, end_us: int) -> DayTables:
    end = pa.scalar(end_us, type=_TS)
    tx = tables.transactions.filter(pc.less(tables.transactions["event_time"], end))
    lab = tables.labels.filter(pc.less(tables.labels["event_time"], end))
    gt = tables.ground_truth.filter(pc.less(tables.ground_truth["event_time"], end))
    return DayTables(tx, lab, gt)


@dataclass
class SimulationResult:
    """Simulated frames with exactly the warehouse columns (timestamps tz-aware UTC).

    ``labels`` may contain label times after the window (they come due later); consumers that
    train "as of" a time must filter on ``label_time`` — exactly as with real chargebacks.
    """

    transactions: pd.DataFrame
    labels: pd.DataFrame
    ground_truth: pd.DataFrame
    start: dt.date
    days: float
    seed: int


def generate(
    start: dt.date | str, days: float, seed: int, config: SimulationConfig | None = None
) -> SimulationResult:
    """Simulate ``days`` days from ``start`` (00:00 UTC); same arguments → identical frames."""
    parts = list(iter_days(start, days, seed, config))
    tx = pa.concat_tables([p.transactions for _, p in parts])
    lab = pa.concat_tables([p.labels for _, p in parts])
    gt = pa.concat_tables([p.ground_truth for _, p in parts])
    lab = lab.take(pc.sort_indices(lab, [("label_time", "ascending"), ("transaction_id", "ascending")]))
    return SimulationResult(
        transactions=tx.to_pandas(),
        labels=lab.to_pandas(),
        ground_truth=gt.to_pandas(),
        start=to_date(start),
        days=days,
        seed=seed,
    )

"""Knobs of the transaction simulator: population sizes, volumes, fraud scenarios and attack waves.

Everything is a frozen dataclass so a configuration is a value: it can be hashed, logged and
passed to worker processes, and two runs with the same seed and config produce identical data.
Defaults give about 33k transactions a day (30 days ≈ 1M) with an overall fraud rate near 0.5%.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from fraudops.exceptions import ConfigError

#: Regions, their share of cards/terminals, local-time offset (hours from UTC) and currency.
REGIONS: tuple[str, ...] = ("eu-west", "eu-north", "us-east", "us-west", "latam", "apac")
REGION_WEIGHTS: tuple[float, ...] = (0.28, 0.10, 0.22, 0.17, 0.11, 0.12)
REGION_UTC_OFFSET_H: tuple[int, ...] = (0, 1, -5, -8, -3, 8)
REGION_CURRENCY: tuple[str, ...] = ("EUR", "EUR", "USD", "USD", "BRL", "SGD")
#: Units of the local currency per EUR, so amounts look like real local prices.
REGION_FX: tuple[float, ...] = (1.0, 1.0, 1.08, 1.08, 5.4, 1.45)
#: Where a wave spreads next from each region (nearest markets first).
REGION_NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "eu-west": ("eu-north", "us-east", "latam", "us-west", "apac"),
    "eu-north": ("eu-west", "us-east", "apac", "us-west", "latam"),
    "us-east": ("us-west", "eu-west", "latam", "eu-north", "apac"),
    "us-west": ("us-east", "apac", "latam", "eu-west", "eu-north"),
    "latam": ("us-east", "us-west", "eu-west", "eu-north", "apac"),
    "apac": ("us-west", "eu-north", "eu-west", "us-east", "latam"),
}

CHANNELS: tuple[str, ...] = ("card_present", "ecommerce", "mobile")
DEVICE_TYPES: tuple[str, ...] = ("pos", "desktop", "ios", "android")

#: Merchant categories of physical shops and of online merchants, with a typical-price factor.
PHYSICAL_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "fuel",
    "restaurant",
    "fashion",
    "electronics",
    "pharmacy",
    "travel",
    "jewelry",
)
ONLINE_CATEGORIES: tuple[str, ...] = (
    "digital_goods",
    "marketplace",
    "electronics",
    "fashion",
    "travel",
    "gaming",
)
CATEGORY_PRICE: dict[str, float] = {
    "grocery": 0.8,
    "fuel": 1.1,
    "restaurant": 0.7,
    "fashion": 1.4,
    "electronics": 2.5,
    "pharmacy": 0.5,
    "travel": 4.0,
    "jewelry": 4.0,
    "digital_goods": 0.4,
    "marketplace": 1.0,
    "gaming": 0.6,
}

SCENARIOS: tuple[str, ...] = ("compromised_terminal", "card_testing", "account_takeover", "stolen_card_spree")


@dataclass(frozen=True)
class Wave:
    """An attack wave: one scenario surges in a region, spreads to neighbours, then stops.

    ``start_day`` is either a day offset from the simulation start (``generate(start=...)``) or an
    absolute date; each hop to the next region starts ``spread_lag_days`` later with intensity
    multiplied by ``spread_decay``. Intensity is the extra rate as a multiple of the scenario's
    base rate in that region (intensity 4 → five times the usual volume at the wave's peak).
    ``base_per_day`` replaces that base rate for this wave (events a day over all regions, spread
    like the scenario's own): a *new* attack pattern, whose scenario has no base rate in the world.
    """

    scenario: str
    region: str
    start_day: float | dt.date | str = 0.0
    duration_days: float = 10.0
    intensity: float = 4.0
    spread_regions: int = 2
    spread_lag_days: float = 2.0
    spread_decay: float = 0.8
    wave_id: str | None = None
    base_per_day: float | None = None
    #: Days each leg takes to reach its peak (and to ebb at its end); None = a quarter of
    #: ``duration_days``. A campaign that outlasts the demo reaches its peak in a day instead of
    #: after ten.
    ramp_days: float | None = None

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"unknown scenario {self.scenario!r}; known: {', '.join(SCENARIOS)}")
        if self.region not in REGIONS:
            raise ConfigError(f"unknown region {self.region!r}; known: {', '.join(REGIONS)}")
        if self.duration_days <= 0 or self.intensity < 0:
            raise ConfigError("wave duration must be > 0 and intensity >= 0")
        if self.base_per_day is not None and self.base_per_day <= 0:
            raise ConfigError("a wave's base_per_day must be > 0 (or None: the scenario's base rate)")
        if self.ramp_days is not None and not 0 < self.ramp_days <= self.duration_days / 2:
            raise ConfigError("a wave's ramp_days must be > 0 and at most half its duration_days")
        if not 0 <= self.spread_regions <= len(REGIONS) - 1:
            raise ConfigError(f"spread_regions must be within [0, {len(REGIONS) - 1}]")


@dataclass(frozen=True)
class ScenarioRates:
    """Base rates of each fraud scenario (events per day over all regions, at volume_scale 1).

    Region multipliers are relative: events are spread over regions in proportion to
    ``region share × multiplier``, so a multiplier changes the fraud *rate* of a region.
    """

    compromised_terminal_per_day: float = 1.5  # new terminal compromises a day
    compromised_terminal_tx_per_day: float = 2.5  # fraud tx a day at a compromised terminal
    compromised_terminal_days: tuple[int, int] = (3, 14)
    card_testing_per_day: float = 2.0  # bursts a day
    card_testing_burst: tuple[int, int] = (5, 20)
    account_takeover_per_day: float = 22.0
    stolen_card_spree_per_day: float = 7.0
    stolen_card_spree_len: tuple[int, int] = (3, 9)
    region_multipliers: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            # eu-west, eu-north, us-east, us-west, latam, apac
            "compromised_terminal": (0.7, 0.5, 1.0, 0.9, 2.2, 1.3),
            "card_testing": (0.8, 0.5, 1.8, 1.5, 0.8, 1.0),
            "account_takeover": (1.4, 1.2, 1.0, 0.9, 0.8, 0.8),
            "stolen_card_spree": (0.9, 0.6, 1.1, 1.4, 1.3, 0.8),
        }
    )

    def base_rate(self, scenario: str) -> float:
        """Events a day of ``scenario`` (the ``<scenario>_per_day`` field)."""
        if scenario not in SCENARIOS:
            raise ConfigError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        return float(getattr(self, f"{scenario}_per_day"))

    def without(self, scenario: str) -> ScenarioRates:
        """The same rates with ``scenario`` absent (base rate 0)."""
        self.base_rate(scenario)  # validates the name
        absent: dict[str, Any] = {f"{scenario}_per_day": 0.0}
        return dataclasses.replace(self, **absent)

    def __hash__(self) -> int:  # dict field: hash by the values that matter
        return hash(
            (
                self.compromised_terminal_per_day,
                self.card_testing_per_day,
                self.account_takeover_per_day,
                self.stolen_card_spree_per_day,
                tuple(sorted((k, v) for k, v in self.region_multipliers.items())),
            )
        )


@dataclass(frozen=True)
class LabelDelayConfig:
    """How long until a fraud is known: a few hours (customer call, analyst), weeks (chargeback), never."""

    p_fast: float = 0.2  # customer report / analyst review
    fast_median_hours: float = 4.0
    chargeback_median_days: float = 12.0
    chargeback_sigma: float = 0.6
    #: Probability a fraud is never labelled, per scenario (small card tests often go unnoticed).
    p_never: dict[str, float] = field(
        default_factory=lambda: {
            "compromised_terminal": 0.05,
            "card_testing": 0.25,
            "account_takeover": 0.03,
            "stolen_card_spree": 0.03,
        }
    )
    #: Share of genuine transactions disputed and later confirmed genuine (is_fraud=False labels).
    genuine_dispute_rate: float = 0.0001

    def __hash__(self) -> int:
        return hash(
            (
                self.p_fast,
                self.fast_median_hours,
                self.chargeback_median_days,
                tuple(sorted(self.p_never.items())),
                self.genuine_dispute_rate,
            )
        )


@dataclass(frozen=True)
class SimulationConfig:
    """The simulated world. Defaults: 50k cards, ~33k transactions a day, ~0.5% fraud."""

    n_cards: int = 50_000
    n_customers: int = 43_000
    n_merchants: int = 4_000
    n_terminals: int = 10_000
    #: Mean transactions per card per day (before the weekday profile).
    tx_per_card_per_day: float = 0.66
    #: Multiplies genuine and fraud volume alike (the stream uses it to hit a target rate).
    volume_scale: float = 1.0
    online_merchant_share: float = 0.3
    rates: ScenarioRates = field(default_factory=ScenarioRates)
    label_delays: LabelDelayConfig = field(default_factory=LabelDelayConfig)
    #: Random attack waves, decided per calendar week from the seed (so any window is reproducible).
    auto_waves: bool = True
    wave_probability_per_week: float = 0.7
    wave_intensity: tuple[float, float] = (2.0, 5.0)
    wave_duration_days: tuple[float, float] = (6.0, 14.0)
    extra_waves: tuple[Wave, ...] = ()

    def __post_init__(self) -> None:
        if min(self.n_cards, self.n_customers, self.n_merchants, self.n_terminals) <= 0:
            raise ConfigError("population sizes must be positive")
        if self.n_customers > self.n_cards:
            raise ConfigError("n_customers cannot exceed n_cards (every customer holds a card)")
        if self.n_terminals < self.n_merchants:
            raise ConfigError("n_terminals must be >= n_merchants (every merchant has a terminal)")
        if self.tx_per_card_per_day <= 0 or self.volume_scale <= 0:
            raise ConfigError("tx_per_card_per_day and volume_scale must be > 0")
        # Accept a list for convenience; store a tuple so the config stays hashable.
        object.__setattr__(self, "extra_waves", tuple(self.extra_waves))

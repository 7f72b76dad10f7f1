"""The docs figure: daily fraud rate by scenario and by region, showing attack waves move."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fraudops.simulate.config import REGIONS, SCENARIOS, SimulationConfig


def plot_fraud_rates(
    start: dt.date | str, days: int, seed: int, out: str | Path, config: SimulationConfig | None = None
) -> Path:
    """Simulate in memory and write a two-panel PNG (per-scenario and per-region daily fraud rate, %)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fraudops.simulate.generator import generate

    res = generate(start, days, seed, config)
    tx = res.transactions.assign(day=res.transactions["event_time"].dt.floor("D"))
    gt = res.ground_truth.assign(day=res.ground_truth["event_time"].dt.floor("D"))
    per_day = tx.groupby("day").size()
    per_day_region = tx.groupby(["day", "region"]).size().unstack(fill_value=0)
    by_scen = (
        gt.groupby(["day", "scenario"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=list(SCENARIOS), fill_value=0)
    )
    by_reg = (
        gt.groupby(["day", "region"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=list(REGIONS), fill_value=0)
    )
    scen_rate = by_scen.div(per_day, axis=0).fillna(0) * 100
    reg_rate = (by_reg / per_day_region.reindex(columns=list(REGIONS))).fillna(0) * 100

    fig, axes = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    scen_rate.plot(ax=axes[0], linewidth=1.6)
    total = (gt.groupby("day").size() / per_day * 100).fillna(0)
    total.plot(ax=axes[0], color="black", linestyle="--", linewidth=1.2, label="all scenarios")
    axes[0].set_title(f"Daily fraud rate by scenario (share of all transactions, seed {seed})")
    axes[0].set_ylabel("fraud rate (%)")
    axes[0].legend(loc="upper left", fontsize=8, ncol=3)
    reg_rate.plot(ax=axes[1], linewidth=1.6)
    axes[1].set_title("Daily fraud rate by region (share of the region's transactions)")
    axes[1].set_ylabel("fraud rate (%)")
    axes[1].set_xlabel("event day (UTC)")
    axes[1].legend(loc="upper left", fontsize=8, ncol=3)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Models that catch more fraud (issue #23): the retrain pipeline with and without label-delay-aware
risk features, side by side on the same simulated histories, several seeds.

    .venv/bin/python benchmarks/bench_models.py [--seeds 4] [--cards 5000]

Each seed simulates one world and trains on it twice or more through ``fraudops train --data``'s
own code path (``retrain.extract_file`` + ``retrain.run_all``, no services): ``risk_delay=none``
(the features before #23) and ``risk_delay=auto`` (the delay read off the file's label curve), and
for the simulator protocol also each fixed delay. Two protocols:

* ``public``: the shape of the public simulated card data set #23 measured on: transaction id,
  time, customer, terminal, amount and a fraud flag, every label known exactly 7 days after its
  transaction; train on the window ending 7 days before the newest transaction.
* ``simulator``: every field the platform takes (merchant, region, device too) and the simulator's
  own label times (20 % reported within hours, chargebacks after ~12 days, some never).

Metrics are the retrain's own, on its time-ordered holdout: average precision, ROC AUC, capture at
a 1 % alert budget and card precision at the same budget. The table prints mean and the spread over
seeds, and how many seeds improved.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from fraudops.simulate import SimulationConfig, generate

METRICS = ("average_precision", "roc_auc", "capture_at_budget", "card_precision_at_budget")


def _world(seed: int, cards: int, days: int) -> Any:
    cfg = SimulationConfig(
        n_cards=cards,
        n_customers=int(cards * 0.9),
        n_merchants=max(100, cards // 12),
        n_terminals=max(300, cards // 5),
    )
    return generate("2026-01-01", days, seed, cfg)


def _public_file(sim: Any, folder: Path) -> tuple[Path, list[str], dict[str, Any]]:
    tx = sim.transactions
    fraud = set(sim.labels.loc[sim.labels.is_fraud.astype(bool), "transaction_id"])
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": tx["transaction_id"],
            "TX_DATETIME": tx["event_time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "CUSTOMER_ID": tx["card_id"],
            "TERMINAL_ID": tx["terminal_id"],
            "TX_AMOUNT": tx["amount"].round(2),
            "TX_FRAUD": tx["transaction_id"].isin(fraud).astype(int),
        }
    )
    path = folder / "public.parquet"
    frame.to_parquet(path, index=False)
    maps = [
        "transaction_id=TRANSACTION_ID",
        "event_time=TX_DATETIME",
        "card_id=CUSTOMER_ID",
        "terminal_id=TERMINAL_ID",
        "amount=TX_AMOUNT",
        "is_fraud=TX_FRAUD",
    ]
    return path, maps, {"label_delay_days": 7.0}


def _simulator_file(sim: Any, folder: Path) -> tuple[Path, list[str], dict[str, Any]]:
    tx = sim.transactions.copy()
    labels = sim.labels.drop_duplicates("transaction_id").set_index("transaction_id")
    flag = tx["transaction_id"].map(labels["is_fraud"])
    when = tx["transaction_id"].map(labels["label_time"])
    tx["IS_FRAUD"] = flag.map({True: "1", False: "0"}).fillna("")
    tx["LABEL_TIME"] = pd.to_datetime(when, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").fillna("")
    tx["event_time"] = tx["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    path = folder / "simulator.parquet"
    tx.to_parquet(path, index=False)
    fields = [
        c
        for c in (
            "transaction_id",
            "event_time",
            "card_id",
            "customer_id",
            "terminal_id",
            "merchant_id",
            "merchant_category",
            "amount",
            "currency",
            "region",
            "device_id",
            "device_type",
            "channel",
        )
        if c in tx.columns
    ]
    maps = [f"{c}={c}" for c in fields] + ["is_fraud=IS_FRAUD"]
    return path, maps, {"label_time_col": "LABEL_TIME"}


def _train(
    path: Path, maps: list[str], extra: dict[str, Any], params: dict[str, Any], key: str
) -> dict[str, Any]:
    from fraudops.pipeline import retrain

    p = retrain.RetrainParams.from_dict(params)
    ctx = retrain.RunContext(key)
    mapping = dict(m.split("=", 1) for m in maps)
    meta = retrain.extract_file(ctx, p, path, mapping, **extra)
    steps = retrain.run_all(ctx, p, extract_meta=meta, register_model=False)
    cand = steps["evaluate"]["candidate"]
    delay = steps["features"]["risk_delay"]
    return {
        "metrics": {m: float(cand["metrics"].get(m, float("nan"))) for m in METRICS},
        "delay": None if delay is None else delay["delay"],
        "n_features": steps["features"]["n_features"],
        "top": next(iter(cand["top_features"]), ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--cards", type=int, default=5000)
    ap.add_argument("--protocols", default="public,simulator")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import os

    state = tempfile.mkdtemp(prefix="fraudops-bench-models-")
    os.environ["FRAUDOPS_STATE_DIR"] = state
    protocols = {
        "public": (_public_file, ("none", "auto"), {"label_maturity_days": 7}),
        "simulator": (
            _simulator_file,
            ("none", "auto", "1d", "3d", "7d", "14d"),
            {"label_maturity_days": 14},
        ),
    }
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    t_start = time.perf_counter()
    for seed in range(1, args.seeds + 1):
        sim = _world(seed, args.cards, 75)
        for name in args.protocols.split(","):
            make, variants, base = protocols[name]
            with tempfile.TemporaryDirectory() as folder:
                path, maps, extra = make(sim, Path(folder))
                for variant in variants:
                    params = {
                        **base,
                        "window_days": 14,
                        "history_days": 30,
                        "n_estimators": 300,
                        "alert_budget": 0.01,
                        "min_rows": 1000,
                        "risk_delay": variant,
                    }
                    t0 = time.perf_counter()
                    res = _train(path, maps, extra, params, f"bench-{name}-{seed}-{variant}")
                    res["seconds"] = time.perf_counter() - t0
                    rows.setdefault((name, variant), []).append(res)
                    m = res["metrics"]
                    print(
                        f"seed {seed} {name:9s} {variant:4s} delay={res['delay']} "
                        f"AP={m['average_precision']:.3f} AUC={m['roc_auc']:.3f} "
                        f"capture@1%={m['capture_at_budget']:.3f} top={res['top']} ({res['seconds']:.0f} s)",
                        flush=True,
                    )
    print()
    print(
        "| protocol | risk_delay | chosen | AP mean (min-max) | ROC AUC | capture@1% | card prec@1% "
        "| AP better than none |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (name, variant), res in rows.items():
        ap_ = [r["metrics"]["average_precision"] for r in res]
        none = [r["metrics"]["average_precision"] for r in rows[(name, "none")]]
        better = sum(a > b for a, b in zip(ap_, none, strict=True))
        chosen = ",".join(sorted({str(r["delay"]) for r in res}))

        def mean(metric: str, res: list[dict[str, Any]] = res) -> float:
            return statistics.fmean(r["metrics"][metric] for r in res)

        spread = f"{statistics.fmean(ap_):.3f} ({min(ap_):.3f}-{max(ap_):.3f})"
        print(
            f"| {name} | {variant} | {chosen} | {spread} | {mean('roc_auc'):.3f} | "
            f"{mean('capture_at_budget'):.3f} | {mean('card_precision_at_budget'):.3f} | "
            f"{'-' if variant == 'none' else f'{better}/{len(ap_)}'} |"
        )
    print(
        f"\n{args.seeds} seeds, {args.cards} cards, 75 simulated days; {time.perf_counter() - t_start:.0f} s"
    )


if __name__ == "__main__":
    main()

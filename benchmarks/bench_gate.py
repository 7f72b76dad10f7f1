"""Gate benchmark: how often the release gate decides right, on planted scenarios, many seeds each.

    .venv/bin/python benchmarks/bench_gate.py [--seeds 50] [--profile demo|production|all] [--jobs 2]

Runs the platform's own decision code (``fraudops.release.scenarios``: evidence preparation, the
label-delay curve, Evidently drift where the scenario is about drift, ``decide_promotion`` /
``decide_probation``) under two profiles — the local demo's (``fraudops.demo.RELEASE_PROFILE``:
2 % fraud, fast labels) and the production defaults (``GatePolicy()``: 0.5 % fraud, chargebacks
with a 12-day median) — and prints one row per scenario: decision shares, the target, whether it
is met, and a last line ``targets met: K/N``. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from fraudops.release.scenarios import (
    LabelDelays,
    Model,
    Profile,
    Scenario,
    ScenarioResult,
    SeedOutcome,
    evaluate,
    run_seed,
)

CHAMPION = Model(strength=2.5, rho=1.0)


def profiles() -> dict[str, Profile]:
    from fraudops.demo import RELEASE_PROFILE
    from fraudops.release.policy import DEFAULT_POLICY, GatePolicy

    demo_policy = GatePolicy.from_dict({**DEFAULT_POLICY.to_dict(), **RELEASE_PROFILE["policy"]})
    return {
        "demo": Profile(
            name="demo",
            policy=demo_policy,
            fraud_rate=float(RELEASE_PROFILE["expected_fraud_rate"]),
            # The local world (fraudops.stack bootstrap): most frauds reported within hours,
            # chargebacks within days.
            delays=LabelDelays(p_fast=0.6, fast_median_hours=4.0, chargeback_median_days=1.0, p_never=0.03),
            collect_hours=24.0,
            looks=20,
        ),
        "production": Profile(
            name="production",
            policy=DEFAULT_POLICY,
            fraud_rate=0.005,
            delays=LabelDelays(),  # the simulator's defaults: 20 % fast, chargebacks median 12 days
            collect_hours=7 * 24.0,
            looks=5,
        ),
    }


def scenarios(profile: Profile) -> list[Scenario]:
    margin = profile.policy.max_ap_regression
    # Strength giving ΔAP just beyond the margin (measured: see the true ΔAP column).
    worse_margin = {"demo": 2.2, "production": 2.35}[profile.name]
    promo = [
        Scenario(
            "A/A exact copy",
            "promotion",
            challenger=CHAMPION,
            target_status="reject",
            target_share=0.99,
            target_check="identical_ranking",
            description="the champion's own scores",
        ),
        Scenario(
            "A/A monotone copy",
            "promotion",
            challenger=replace(CHAMPION, transform="steep", own_alert=0.001),
            target_status="reject",
            target_share=0.99,
            target_check="identical_ranking",
            description="the champion's scores through a monotone transform",
        ),
        Scenario(
            "A/A equal model, non-inferiority",
            "promotion",
            challenger=Model(strength=2.5, rho=0.5),
            target_status="promote",
            target_share=0.8,
            drift_shift=(0.0, 0.0),
        ),
        Scenario(
            "A/A equal model, superiority mode",
            "promotion",
            challenger=Model(strength=2.5, rho=0.5),
            target_status="promote",
            target_share=0.05,
            target_kind="at_most",
            policy_update={"decision_mode": "superiority"},
        ),
        Scenario(
            "better ranker, same calibration",
            "promotion",
            challenger=Model(strength=3.2, rho=0.5),
            target_status="promote",
            target_share=0.9,
        ),
        Scenario(
            "better ranker, other calibration + own threshold",
            "promotion",
            challenger=Model(strength=3.2, rho=0.5, transform="steep", own_alert=0.001),
            target_status="promote",
            target_share=0.9,
            description="monotone recalibration; its own threshold flags 0.1 %",
        ),
        Scenario(
            "better ranker, coarse scores (tie blocks)",
            "promotion",
            challenger=Model(strength=4.0, rho=0.5, transform="coarse"),
            target_status="promote",
            target_share=0.9,
            description="its top scores (logit above −3) lumped in blocks 2.5 logits wide, as a tree "
            "model's leaves: a tie block across the budget (the old rule rejected it on operating_point)",
        ),
        Scenario(
            f"worse than the margin ({margin:g}), {20} looks",
            "promotion",
            challenger=Model(strength=worse_margin, rho=0.5),
            target_status="promote",
            target_share=0.05,
            target_kind="at_most",
            looks=20,
        ),
        Scenario(
            "worse ranker",
            "promotion",
            challenger=Model(strength=1.6, rho=0.5),
            target_status="reject",
            target_share=0.99,
            target_check=("ap_shown_worse", "capture_rate", "money_caught"),
        ),
        Scenario(
            "slower",
            "promotion",
            challenger=Model(strength=2.5, rho=0.5, latency_ms=40.0),
            target_status="reject",
            target_share=0.99,
            target_check="p99_latency_ms",
        ),
        Scenario(
            "crashing",
            "promotion",
            challenger=Model(strength=2.5, rho=0.5, error_rate=0.05),
            target_status="reject",
            target_share=0.99,
            target_check="error_rate",
        ),
        Scenario(
            "NaN scores",
            "promotion",
            challenger=Model(strength=2.5, rho=0.5, nan_rate=0.02),
            target_status="reject",
            target_share=0.99,
            target_check="error_rate",
        ),
        Scenario(
            "constant scores",
            "promotion",
            challenger=Model(constant=0.5),
            target_status="reject",
            target_share=0.99,
            target_check="constant_scores",
        ),
        Scenario(
            "feature-parity mismatch",
            "promotion",
            challenger=Model(strength=2.5, rho=0.5, parity_break=0.01),
            target_status="reject",
            target_share=0.99,
            target_check="feature_parity_mismatch",
        ),
        Scenario(
            "drifted input",
            "promotion",
            challenger=Model(strength=2.5, rho=0.5),
            drift_shift=(1.0, 0.0),
            target_status="reject",
            target_share=0.99,
            target_check="feature_drift",
            description="trained on data 1 std away from live traffic; the champion's is not",
        ),
        Scenario(
            "live traffic moved from both, better ranker",
            "promotion",
            challenger=Model(strength=3.2, rho=0.5),
            drift_shift=(0.1, 0.1),
            target_status="promote",
            target_share=0.9,
            description=(
                "both training sets 0.1 std (one drift threshold) from live traffic: each column "
                "drifts or not on noise, as after the attack wave that triggers a retrain"
            ),
        ),
        Scenario(
            "too few mature labels (before the deadline)",
            "promotion",
            challenger=Model(strength=3.2, rho=0.5),
            label_scale=50.0,
            before_deadline=True,
            target_status="wait",
            target_share=1.0,
            description="labels 50x slower than the curve says: every look before the deadline waits",
        ),
    ]
    probation = [
        Scenario(
            "probation: degraded after promotion",
            "probation",
            challenger=Model(strength=2.2, rho=0.5),
            target_status="rollback",
            target_share=0.9,
        ),
        Scenario(
            "probation: healthy, repeated looks",
            "probation",
            challenger=Model(strength=2.5, rho=0.5),
            target_status="rollback",
            target_share=0.05,
            target_kind="at_most",
            looks=20,
        ),
    ]
    return promo + probation


def _run(job: tuple[Scenario, Profile, int]) -> SeedOutcome:
    return run_seed(*job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--profile", choices=["demo", "production", "all"], default="all")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default="", help="run scenarios whose name contains this")
    args = parser.parse_args(argv)
    chosen = profiles()
    names = list(chosen) if args.profile == "all" else [args.profile]
    results: list[ScenarioResult] = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:

        def runner(jobs: list[tuple[Scenario, Profile, int]]) -> list[SeedOutcome]:
            return list(pool.map(_run, jobs, chunksize=max(1, len(jobs) // (4 * args.jobs))))

        for name in names:
            prof = chosen[name]
            for sc in scenarios(prof):
                if args.only and args.only not in sc.name:
                    continue
                r = evaluate(sc, prof, list(range(1, args.seeds + 1)), runner)
                results.append(r)
                print(_row(r), flush=True)
    print()
    print(_table(results))
    met = sum(r.met for r in results)
    print(f"\n{len(results)} rows, {args.seeds} seeds each, {time.perf_counter() - t0:.0f} s")
    print(f"targets met: {met}/{len(results)}")
    return 0 if met == len(results) else 1


def _shares(r: ScenarioResult) -> str:
    return " ".join(f"{k} {v:.0%}" for k, v in r.shares.items())


def _row(r: ScenarioResult) -> str:
    truth = "" if r.true_delta_ap is None else f" ΔAP {r.true_delta_ap:+.3f}"
    mark = "✔" if r.met else "✘"
    extra = "" if r.met else f"  e.g. {r.examples[:1]}"
    return (
        f"[{r.profile}] {r.scenario.name}:{truth} → {_shares(r)} | target {r.target_text()} "
        f"{mark} ({r.share_right:.0%}; mean look {r.mean_look:.1f}; {r.seconds:.0f}s){extra}"
    )


def _table(results: list[ScenarioResult]) -> str:
    head = ("profile", "scenario", "true ΔAP", "decisions", "target", "observed", "met", "σ/fraud")
    rows = [head]
    for r in results:
        rows.append(
            (
                r.profile,
                r.scenario.name,
                "—" if r.true_delta_ap is None else f"{r.true_delta_ap:+.3f}",
                _shares(r),
                r.target_text(),
                f"{r.share_right:.0%}",
                "✔" if r.met else "✘",
                "—" if r.sd_per_fraud is None else f"{r.sd_per_fraud:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

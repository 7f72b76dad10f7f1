"""``fraudops release run``: the release lifecycle without Airflow, through the very step functions
the ``fraud_release`` DAG calls, in the DAG's order:

resolve → deploy_shadow → (shadow progress until the floors are met or the deadline) → check_drift
→ decide (the gate's looks until it decides; the last one final) → promote or reject → probation
looks until the gate decides → confirm or rollback (finish_probation).

Every step is retry-safe (keyed by the run key), so re-running with the same ``--run-key`` after
an interruption finishes what the first attempt started instead of doing it twice.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import click

from fraudops.pipeline.knobs import RELEASE, cli_options
from fraudops.pipeline.release_types import DriftReport, ReleaseOutcome, ShadowWait
from fraudops.vocabulary import Decision


def run_release(
    ctx: Any,
    params: Any,
    *,
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ReleaseOutcome:
    """Run a whole release; returns how it ended. ``echo`` gets one line per step and per look."""
    from fraudops.pipeline import release

    run_id = ctx.run_key
    cand = release.resolve(ctx, params)
    echo(
        f"release {cand.model_name} v{cand.version} vs champion v{cand.champion}: the gate looks from "
        f"{cand.min_scored_events:,} scored events and {cand.min_labeled_frauds:,} matured labeled frauds; "
        f"label maturity {cand.label_maturity_hours:.1f} h"
    )
    deploy = release.deploy_shadow(ctx, params, cand)
    waited: ShadowWait | None = None
    drift: DriftReport | None = None
    if deploy.ok:
        echo(f"shadow: {cand.alias} running after {deploy.seconds_to_running}s")
        deadline = clock() + params.shadow_timeout_minutes * 60.0
        early = True  # one early look, at the gate's floor of events sent (as the DAG's sensor)
        while True:
            look = release.shadow_look(ctx, cand, deploy, early=early)
            sent = (look.progress or {}).get("scored", 0) + (look.progress or {}).get("errors", 0)
            early = early and sent < release.early_floor(cand)
            state = "rejected early" if look.early_reject else "ready" if look.ready else "waiting"
            echo(f"shadow: {state}: {look.reason}")
            if look.ready or look.incumbent_changed or look.early_reject:
                waited = look
                break
            if clock() >= deadline:
                waited = look.model_copy(update={"reason": f"timeout: {look.reason}"})
                break
            sleep(params.poll_interval_s)
        drift = release.check_drift(ctx, params, cand, deploy, run_id)
        echo(f"drift: {len(drift.drift)} checks{' (' + drift.note + ')' if drift.note else ''}")
    else:
        echo(f"shadow: refused ({deploy.reason})")
    decision = release.decide(ctx, params, cand, deploy, waited, drift, run_id)
    echo(f"gate: {decision.status} ({decision.reason})")
    if decision.status != Decision.PROMOTE:
        outcome = release.reject(ctx, params, cand, decision)
        echo(f"rejected: {outcome.reason}")
        return outcome
    promo = release.promote(ctx, params, cand, decision)
    threshold = "the bundle's" if promo.served_threshold is None else f"{promo.served_threshold:.6g}"
    if promo.served_threshold is not None and promo.served_tie_share < 1.0:
        threshold += f", events tied at it declined with p={promo.served_tie_share:.3g}"
    echo(f"promoted: v{cand.version} is champion (threshold {threshold}); v{promo.old_champion} in shadow")
    while True:
        probation = release.probation_check(ctx, params, cand, promo)
        echo(f"probation: {probation.status} after {probation.n_events:,} events ({probation.reason})")
        if probation.done:
            break
        sleep(params.probation_poll_s)
    outcome = release.finish_probation(ctx, params, cand, promo, probation, run_id)
    echo(f"{outcome.status}: {outcome.reason}; serving v{outcome.serving}")
    return outcome


@click.group("release")
def release() -> None:
    """Release a model version: shadow, gate, promote or reject, probation (as fraud_release does)."""


@release.command("run")
@click.argument("version")
@click.option("--policy", default="", help="GatePolicy overrides as JSON, e.g. '{\"alert_budget\": 0.01}'.")
@cli_options(RELEASE)
@click.option("--run-key", default=None, help="Run key (default: cli-<timestamp>); reuse it to resume.")
@click.option("--json", "as_json", is_flag=True, help="Print the final outcome as JSON.")
def run(version: str, run_key: str | None, as_json: bool, **options: Any) -> None:
    """Release VERSION: the same steps, in the same order, as the fraud_release DAG."""
    from fraudops.pipeline.release import ReleaseContext, ReleaseParams

    raw = {k: v for k, v in options.items() if v not in (None, "")}
    params = ReleaseParams.from_dict({**raw, "version": version})
    if params.requires_approval:
        # An approval is someone else's go, recorded in Airflow: the command line has no approver.
        raise click.UsageError(
            "--requires-approval runs in Airflow's fraud_release (a release manager answers the "
            "request there or in the console); trigger the DAG with requires_approval instead"
        )
    key = run_key or "cli-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    outcome = run_release(ReleaseContext(f"fraud_release__{key}"), params, echo=click.echo)
    if as_json:
        click.echo(json.dumps(outcome.to_xcom(), indent=2))

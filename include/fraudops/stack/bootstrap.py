"""A first champion on an empty registry, so ``fraudops up`` ends with a ready scoring service.

Why: the scoring service only serves a registered, verified model, and a fresh laptop has none.
When the ``champion`` alias is missing this backfills a modest slice of simulated history into the
warehouse (skipped when the warehouse already holds transactions), runs the same retrain pipeline
as ``fraudops train`` / the ``fraud_retrain`` DAG with a short window, and points ``champion`` at
the new version through ``move_alias`` with action ``bootstrap`` (so the audit says where the first
model came from). The next scheduled retrain replaces it with a model trained on a full window.
Runs in its own process (``python -m fraudops.stack.bootstrap``) so the training libraries never
stay resident in the scoring service.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

from fraudops.config import Settings, load_settings
from fraudops.vocabulary import Action, Alias

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootstrapPlan:
    #: Days of simulated history (window + label maturity + feature history).
    days: int = 42
    window_days: int = 7
    label_maturity_days: int = 3
    #: The longest feature window (30 days): training rows then see the same full history the
    #: scoring service's warm online store has, so live features match the training reference.
    history_days: int = 30
    n_estimators: int = 150
    #: A smaller world than the simulator default keeps `fraudops up` within a few minutes.
    n_cards: int = 8000
    seed: int = 7
    #: A fraud scenario the local world's history never had (its base rate is zero there): the
    #: demo's attack wave brings it as a *new* pattern, which is what makes the champion stale.
    #: None keeps every scenario in the history.
    novel_scenario: str | None = "account_takeover"

    @classmethod
    def from_env(cls) -> BootstrapPlan:
        """``FRAUDOPS_BOOTSTRAP_CARDS`` sizes the local world (default 8000 cards; tests use fewer)."""
        raw = os.environ.get("FRAUDOPS_BOOTSTRAP_CARDS", "")
        return cls(n_cards=int(raw)) if raw else cls()

    def world(self, extra_waves: tuple[Any, ...] = ()) -> Any:
        """The simulated world of the local stack (the demo streams more of the same world).

        Labels arrive faster than the simulator's default (most frauds reported within hours,
        chargebacks after ~3 days instead of ~12): the local stack runs event time ~1 600× faster,
        and a retrain started by drift must be able to learn from the attack that caused it.
        ``novel_scenario`` has no base rate (nor random waves, which scale the base rate).
        """
        from fraudops.simulate import SimulationConfig
        from fraudops.simulate.config import LabelDelayConfig, ScenarioRates

        rates = ScenarioRates()
        if self.novel_scenario is not None:
            rates = rates.without(self.novel_scenario)
        return SimulationConfig(
            n_cards=self.n_cards,
            n_customers=int(self.n_cards * 0.9),
            n_merchants=max(100, self.n_cards // 12),
            n_terminals=max(300, self.n_cards // 5),
            rates=rates,
            label_delays=LabelDelayConfig(p_fast=0.6, fast_median_hours=4.0, chargeback_median_days=3.0),
            extra_waves=extra_waves,
        )


def ensure_champion(settings: Settings | None = None, plan: BootstrapPlan | None = None) -> dict[str, Any]:
    """Return what was done: ``{"action": "present" | "promoted" | "bootstrap", "version": ...}``."""
    from fraudops.registry import get_alias_version, move_alias
    from fraudops.warehouse import Warehouse

    s = settings or load_settings()
    plan = plan or BootstrapPlan.from_env()
    name = s.mlflow.model_name
    uri = s.mlflow.tracking_uri
    current = get_alias_version(name, Alias.CHAMPION, tracking_uri=uri)
    if current is not None:
        return {"action": "present", "version": current}
    wh = Warehouse(s.warehouse)
    wh.ensure_schema()
    version = _latest_version(name, uri)
    if version is None:
        version = _train_first_model(s, wh, plan)
    move = move_alias(
        wh,
        model_name=name,
        alias=Alias.CHAMPION,
        version=version,
        action=Action.BOOTSTRAP,
        actor="fraudops up",
        reason="empty registry: first model trained on simulated history",
        tracking_uri=uri,
    )
    log.info("bootstrap: %s@champion -> v%s", name, move.version)
    return {"action": "bootstrap", "version": move.version}


def _latest_version(name: str, uri: str) -> str | None:
    from mlflow.tracking import MlflowClient

    versions = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(f"name='{name}'")
    return max((str(v.version) for v in versions), key=int, default=None)


def _train_first_model(s: Settings, wh: Any, plan: BootstrapPlan) -> str:
    from fraudops.pipeline.retrain import RetrainParams, RunContext, run_all
    from fraudops.simulate import backfill

    have = wh.count("transactions")
    if have < 20_000:
        start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=plan.days)
        world = plan.world()
        log.info("bootstrap: backfilling %d simulated days from %s", plan.days, start)
        backfill(wh, start, plan.days, plan.seed, world)
    params = RetrainParams(
        window_days=plan.window_days,
        label_maturity_days=plan.label_maturity_days,
        history_days=plan.history_days,
        n_estimators=plan.n_estimators,
        min_rows=1000,
        model_name=s.mlflow.model_name,
    )
    key = "bootstrap-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    steps = run_all(RunContext(key, settings=s, warehouse=wh), params)
    return str(steps["register"]["version"])


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("FRAUDOPS_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s"
    )
    result = ensure_champion()
    print(f"champion: {result['action']} v{result['version']}", flush=True)


if __name__ == "__main__":
    main()

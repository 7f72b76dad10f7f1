"""Small real model bundles for tests that need a registered, servable version."""

from __future__ import annotations

from pathlib import Path


def tiny_bundle(
    out: Path,
    *,
    n_estimators: int = 8,
    seed: int = 11,
    world: tuple[int, int, int, int] = (800, 700, 60, 150),
    days: int = 4,
    n_reference: int = 800,
    n_holdout: int = 300,
) -> Path:
    """A LightGBM bundle trained on ``days`` simulated days of a ``world`` (cards, customers,
    merchants, terminals), packaged
    (ONNX, feature spec, reference profile) and verifiable, in ``out``. The latency budget is
    generous: the test machine is shared and busy."""
    from fraudops.features import FeatureSpec, build_offline
    from fraudops.simulate import SimulationConfig, generate
    from fraudops.training import LightGBMParams, build_artifact, train_model

    cards, customers, merchants, terminals = world
    cfg = SimulationConfig(n_cards=cards, n_customers=customers, n_merchants=merchants, n_terminals=terminals)
    sim = generate("2026-05-01", days, seed, cfg)
    tx, labels = sim.transactions, sim.labels
    spec = FeatureSpec.default()
    X = build_offline(tx, labels, spec).loc[tx.transaction_id.to_numpy()].reset_index(drop=True)
    fraud = set(labels.loc[labels.is_fraud.astype(bool), "transaction_id"])
    y = tx.transaction_id.isin(fraud).astype(int).to_numpy()
    res = train_model(
        X,
        y,
        tx.event_time.reset_index(drop=True),
        family="lightgbm",
        lightgbm_params=LightGBMParams(n_estimators=n_estimators, num_threads=1, seed=seed),
    )
    build_artifact(
        res.model,
        family="lightgbm",
        out_dir=out,
        feature_spec=spec.to_dict(),
        X_reference=X.iloc[:n_reference],
        X_holdout=X.iloc[-n_holdout:],
        decision_threshold=0.5,
        latency_budget_ms=50.0,
    )
    return out

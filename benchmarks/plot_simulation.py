"""Make docs/img/fraud_rate_by_scenario_region.png (same as `fraudops simulate plot`).

.venv/bin/python benchmarks/plot_simulation.py [--days 60] [--seed 42]
"""

from __future__ import annotations

import argparse

from fraudops.config import REPO_ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2026-01-01")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(REPO_ROOT / "docs/img/fraud_rate_by_scenario_region.png"))
    args = parser.parse_args()
    from fraudops.simulate.plot import plot_fraud_rates

    print(plot_fraud_rates(args.start, args.days, args.seed, args.out))


if __name__ == "__main__":
    main()

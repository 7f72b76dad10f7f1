"""Run one side-effecting release step, in this process or as a child process (``python
retry_driver.py '<json>'``), the way a (re)tried Airflow task runs it: the same step function, the
typed inputs read back from their XCom form, a ReleaseContext keyed by the DAG run.

With ``FRAUDOPS_CRASH_AT`` set in the child's environment the step dies by SIGKILL at that
``crash_point`` (fraudops.faults), right after its side effect.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def run_step(step: str, run_key: str, run_id: str, inputs: dict[str, Any], warehouse: Any = None) -> Any:
    from fraudops.pipeline import release
    from fraudops.pipeline.release_types import (
        Candidate,
        DecisionSummary,
        ProbationOutcome,
        Promotion,
    )

    ctx = release.ReleaseContext(run_key, warehouse=warehouse)
    cand = Candidate.from_xcom(inputs["candidate"])
    params = release.params_of(cand)
    if step == "deploy_shadow":
        return release.deploy_shadow(ctx, params, cand)
    if step == "promote":
        return release.promote(ctx, params, cand, DecisionSummary.from_xcom(inputs["decision"]))
    if step == "abort":
        decision = DecisionSummary.from_xcom(inputs["decision"])
        return release.abort(ctx, params, cand, decision, inputs["approval"])
    if step == "reject":
        return release.reject(ctx, params, cand, DecisionSummary.from_xcom(inputs["decision"]))
    if step in ("confirm", "rollback"):
        return release.finish_probation(
            ctx,
            params,
            cand,
            Promotion.from_xcom(inputs["promotion"]),
            ProbationOutcome.from_xcom(inputs["outcome"]),
            run_id,
        )
    raise ValueError(f"unknown step {step!r}")


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    result = run_step(job["step"], job["run_key"], job["run_id"], job["inputs"])
    print(json.dumps(result.to_xcom()))

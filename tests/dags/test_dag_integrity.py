"""DAG integrity: every DAG file imports cleanly, is documented, tagged and retried, and does no
heavy work at parse time (the scheduler re-parses these files every few seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
HEAVY = [
    "pandas",
    "numpy",
    "mlflow",
    "lightgbm",
    "onnxruntime",
    "onnx",
    "evidently",
    "great_expectations",
    "google.cloud.bigquery",
    "sklearn",
    "pyarrow",
]


@pytest.fixture(scope="module")
def dagbag() -> object:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_there_are_dags() -> None:
    assert DAG_FILES, "dags/ holds no DAG files"


def test_no_import_errors(dagbag: object) -> None:
    assert dagbag.import_errors == {}, dagbag.import_errors  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_conventions(dagbag: object, path: Path) -> None:
    dags = [d for d in dagbag.dags.values() if Path(d.fileloc).name == path.name]  # type: ignore[attr-defined]
    assert len(dags) == 1, f"{path.name} must define exactly one DAG"
    dag = dags[0]
    assert dag.dag_id == path.stem, "dag_id must equal the file name"
    assert dag.tags, f"{dag.dag_id} has no tags"
    assert dag.doc_md and len(dag.doc_md) > 40, f"{dag.dag_id} has no doc_md (use doc_md=__doc__)"
    assert dag.max_active_runs is not None and dag.max_active_runs <= 4
    for task in dag.tasks:
        assert task.retries >= 1 or getattr(task, "_fraudops_no_retry", False), (
            f"{dag.dag_id}.{task.task_id} has no retries"
        )


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parse_imports_nothing_heavy_and_is_fast(path: Path) -> None:
    """Import each DAG file in a clean interpreter and list which heavy modules it pulled in."""
    code = (
        "import json, sys, time, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('dagfile', {str(path)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "t = time.perf_counter(); spec.loader.exec_module(mod); dt = time.perf_counter() - t\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'seconds': dt}))\n"
    )
    out = (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    result = json.loads(out)
    assert result["heavy"] == [], f"{path.name} imports {result['heavy']} at parse time"


@pytest.mark.parametrize("hours_after", [0.5, 11.0, 16.0, 100.0])
def test_unpausing_the_retrain_waits_for_the_next_weekly_slot(
    dagbag: Any, monkeypatch: pytest.MonkeyPatch, hours_after: float
) -> None:
    """Demo, 2026-12-07 (a Monday): unpaused at 14:14 UTC, fraud_retrain started the run of 03:00
    that day (``run_immediately=False`` starts a past run within 16.8 h of a weekly slot), and its
    release took the shadow slot the demo's own releases needed."""
    import datetime as dt

    import airflow.timetables.trigger as trigger
    from airflow.timetables.base import TimeRestriction

    monday_3am = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)
    now = monday_3am + dt.timedelta(hours=hours_after)
    monkeypatch.setattr(trigger, "utcnow", lambda: now)
    dag = dagbag.dags["fraud_retrain"]
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=None, latest=None, catchup=False),
    )
    assert info is not None
    assert info.run_after == monday_3am + dt.timedelta(days=7 * (1 + int(hours_after // 168)))

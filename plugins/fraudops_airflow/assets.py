"""The Assets that chain the lifecycle DAGs without a human in the loop.

``DRIFT`` is emitted by ``fraud_drift_monitor`` when live data drifts past the policy; it starts
``fraud_retrain``. ``CANDIDATE`` is emitted by ``fraud_retrain`` when a verified model version is
registered (its extra carries model name and version); it starts ``fraud_release``.
"""

from __future__ import annotations

from airflow.sdk import Asset

DRIFT = Asset(name="fraudops_drift", uri="fraudops://warehouse/drift_metrics", group="fraudops")
CANDIDATE = Asset(name="fraudops_candidate", uri="fraudops://registry/candidate", group="fraudops")

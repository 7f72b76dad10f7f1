"""Lifecycle pipelines as plain, Airflow-free steps (the DAGs and the CLI both call these)."""

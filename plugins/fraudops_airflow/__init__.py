"""Airflow-specific classes for fraudops: hooks, sensors/triggers, the UI plugin.

Only Airflow glue lives here; the work itself is done by functions in ``fraudops`` (include/).
"""

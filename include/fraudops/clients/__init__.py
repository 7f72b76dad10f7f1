"""HTTP clients of the platform's own services, used by the steps, the demo and the tests:
``scoring`` (the scoring service's ``/version``, waits for a deployment to take effect) and
``airflow`` (Airflow 3's REST API). Low in the layers: they import only ``fraudops.exceptions``.
"""

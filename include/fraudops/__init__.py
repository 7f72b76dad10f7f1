"""fraudops: ship fraud-detection models fast and safely.

Domain logic only: nothing in this package imports Airflow. DAGs in ``dags/`` and Airflow classes
in ``plugins/`` wrap these functions; the ``fraudops`` command runs the same functions directly.
"""

from __future__ import annotations

__version__ = "0.1.0"

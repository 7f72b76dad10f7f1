# Production image: the Airflow 3 runtime plus fraudops' pinned requirements and package.
# (Not buildable on the dev machines — no Docker engine there; kept small and conventional.)
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /opt/fraudops/requirements.txt
RUN pip install --no-cache-dir -r /opt/fraudops/requirements.txt
COPY --chown=airflow:root pyproject.toml /opt/fraudops/
COPY --chown=airflow:root include /opt/fraudops/include
RUN pip install --no-cache-dir --no-deps /opt/fraudops
# The compiled online feature store (fraudops.native: the same modules built with mypyc and gcc).
# Without it the pure-Python modules run (same numbers, higher latency); `python -m fraudops.native
# status` says which is in use.
USER root
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
USER airflow
RUN pip install --no-cache-dir mypy==2.4.1 && python -m fraudops.native build
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins

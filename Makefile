# fraudops — the two commands: `make run` (the whole platform locally) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
NATIVE := include/fraudops/_native/STAMP.json

.PHONY: setup system-deps frameworks run run-scale up down status test test-fast lint typecheck bench bench-gate lock clean

## setup: create .venv and install the pinned environment and the fraudops package, then compile
## the online feature store with mypyc (fraudops.native; uses gcc). Idempotent.
setup: system-deps $(STAMP) $(NATIVE)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt -r requirements-dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

## frameworks: a separate environment where data scientists train (PyTorch CPU, TensorFlow,
## tf2onnx): the byom tests train a model in each and export it to ONNX, as users do, then take the
## file through intake. Never imported by the platform. torch's CPU wheel comes from /opt/wheels
## where this machine has it, else from PyTorch's CPU index.
FRAMEWORKS := .venv-frameworks
TORCH_WHEELS ?= $(if $(wildcard /opt/wheels/torch-*+cpu-*.whl),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
frameworks: $(FRAMEWORKS)/.installed

$(FRAMEWORKS)/.installed: requirements-frameworks.txt $(STAMP)
	@test -x $(FRAMEWORKS)/bin/python || $(PYTHON) -m venv $(FRAMEWORKS)
	$(BIN)/uv pip install --quiet --python $(FRAMEWORKS)/bin/python $(TORCH_WHEELS) -r requirements-frameworks.txt
	@touch $@

$(NATIVE): $(STAMP) $(wildcard include/fraudops/features/*.py) include/fraudops/exceptions.py include/fraudops/native.py
	$(BIN)/python -m fraudops.native build

## system-deps: Debian packages the stack and tests use (redis-server for the shared online store
## and the scale profile's shadow streams, haproxy for the scale profile's load balancer,
## postgresql for the scale profile's Airflow metadata database,
## chromium for the release page's headless screenshot test, chromium-driver for the console's
## browser tests (Selenium), wrk for make bench's closed-loop throughput, gcc and the Python headers
## for the compiled feature store).
system-deps:
	@missing=""; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	test -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" || missing="$$missing python3-dev"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	test -x /usr/sbin/haproxy || command -v haproxy >/dev/null 2>&1 || missing="$$missing haproxy"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing) >/dev/null; \
	fi

## run: the main job — start the local stack (emulator, MLflow, scoring, Airflow), then run the
## lifecycle demo on it (attack wave → drift → retrain → shadow → gate → promote; a bad challenger
## rejected). The stack stays up until `make down`. The demo mirrors half of the traffic to the
## shadow pool so that challengers gather their evidence in minutes.
run: setup
	FRAUDOPS_SHADOW_SAMPLE_RATE=$${FRAUDOPS_SHADOW_SAMPLE_RATE:-0.5} $(BIN)/fraudops up
	$(BIN)/fraudops demo

up: run

## run-scale: the same lifecycle on the scale profile: scoring replicas behind HAProxy, online state
## and shadow streams in Redis, stream shadow workers, Airflow with Celery workers on PostgreSQL.
run-scale: setup
	FRAUDOPS_SHADOW_SAMPLE_RATE=$${FRAUDOPS_SHADOW_SAMPLE_RATE:-0.5} $(BIN)/fraudops up --profile scale
	$(BIN)/fraudops demo

## down: stop everything `make run` started.
down:
	@test -x $(BIN)/fraudops && $(BIN)/fraudops down || echo "nothing to stop (no venv)"

status:
	$(BIN)/fraudops status

## test: the whole suite (unit, integration against real services, DAG tests, end-to-end) on two
## xdist workers: the real-time files (lifecycle, release e2e, load and outage tests) run one after
## another on one worker, every other file goes to whichever worker is free (tests/conftest.py,
## REALTIME). Each worker starts its own services on free ports.
PYTEST_WORKERS ?= 2
test: setup frameworks typecheck
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

## test-fast: the inner loop: unit tests, no services (a test using a service fixture is marked
## integration automatically, tests/conftest.py).
test-fast: setup
	$(BIN)/pytest -q -m "not slow and not integration" -n $(PYTEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## typecheck: mypy --strict (pyproject.toml) over the four trees. Tests in a second run: their
## folders are not packages (pytest puts each on sys.path), so module names come from their paths.
typecheck: setup
	$(BIN)/mypy include/fraudops plugins dags
	$(BIN)/mypy --explicit-package-bases tests

## bench: benchmarks; each prints a table (results recorded in README/docs). The gate benchmark
## (about 80 minutes on 2 cores) has its own target, bench-gate.
bench: setup
	@for b in benchmarks/bench_*.py; do [ "$$b" = benchmarks/bench_gate.py ] && continue; echo "== $$b"; $(BIN)/python $$b || exit 1; done

## bench-gate: the release gate's error rates on planted scenarios (50 seeds each, demo profile and
## production defaults); prints a table and `targets met: K/N`, exits 1 when a target is missed.
bench-gate: setup
	$(BIN)/python benchmarks/bench_gate.py

## lock: re-resolve the pinned lock files from requirements/*.in (needs registry access).
lock:
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements/runtime.in -o requirements.txt
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements/dev.in -o requirements-dev.txt
	$(BIN)/uv pip compile --quiet --python-version 3.11 $(TORCH_WHEELS) requirements/frameworks.in -o requirements-frameworks.txt

clean: down
	rm -rf .state

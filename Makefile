# chatstack — the README's commands. Everything runs from the project's own .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo serve model rag repository test test-unit test-integration bench loadtest eval clean airflow-venv airflow-check vllm-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

model: $(STAMP)
	$(BIN)/chatstack train-demo

rag: $(STAMP)
	test -e artifacts/rag.db || $(BIN)/chatstack ingest --demo-corpus

repository: model
	$(BIN)/chatstack build

# Installs, trains the demo model once (cached in artifacts/), renders the served
# repository, starts Triton and chats (one question when ONCE is set or stdin is not a terminal).
ONCE ?=
demo: model rag
	@if [ -n "$(ONCE)" ]; then $(BIN)/chatstack demo --once "$(ONCE)"; \
	elif [ -t 0 ]; then $(BIN)/chatstack demo; \
	else $(BIN)/chatstack demo --once "What is a list comprehension?"; fi

serve: model rag
	$(BIN)/chatstack serve

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

bench: model
	$(BIN)/chatstack bench ensemble

# Locust step search against a fresh Triton on free 127.0.0.1 ports (loadtest/README.md);
# LOADTEST_CONFIG picks the deployment, e.g. deploy/bench-input-moderation-only.toml.
# One torch thread per Triton stub: on 2 cores the default 2 threads each oversubscribe them.
LOADTEST_CONFIG ?= deploy/demo.toml
LOADTEST_ARGS ?= --omp-threads 1
loadtest: model rag
	$(BIN)/chatstack --config $(LOADTEST_CONFIG) bench load $(LOADTEST_ARGS)

eval: rag
	$(BIN)/chatstack eval-rag
	$(BIN)/chatstack eval safety

# Airflow gets its own venv: its dependency pins would fight chatstack's (torch, numpy<2, pyarrow).
# The DAG (orchestration/dags) imports only Airflow; its tasks call the chatstack CLI.
AIRFLOW_VENV := .venv-airflow
$(AIRFLOW_VENV)/.installed:
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet "apache-airflow>=3.3,<4"
	touch $@

airflow-venv: $(AIRFLOW_VENV)/.installed

# Loads orchestration/dags with Airflow's own DagBag; fails on any import error.
airflow-check: airflow-venv
	AIRFLOW_HOME=$(CURDIR)/build/airflow AIRFLOW__CORE__LOAD_EXAMPLES=False $(AIRFLOW_VENV)/bin/python orchestration/check_dags.py

# vLLM's CPU build in its own venv (.venv-vllm): the peer engine of `chatstack bench engine`.
# Not part of `make install` or the tests; it downloads a few GiB.
vllm-venv:
	PYTHON=$(PYTHON) scripts/make_vllm_venv.sh

clean:
	rm -rf build .pytest_cache

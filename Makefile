# chatstack — the README's commands. Everything runs from the project's own .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo serve model rag repository test test-unit test-integration bench eval clean

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

eval: rag
	$(BIN)/chatstack eval-rag
	$(BIN)/chatstack eval safety

clean:
	rm -rf build .pytest_cache

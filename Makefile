# Two commands: `make setup` (idempotent .venv bootstrap) and `make test` (setup if needed, then every test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED := False
export WORKBENCH_PROFILE ?= smoke

.PHONY: setup test test-fast lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q tests

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not e2e" tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

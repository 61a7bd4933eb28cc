# Two commands: `make setup` (idempotent .venv bootstrap) and `make test` (setup if needed, then every test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED := False
export WORKBENCH_PROFILE ?= smoke

.PHONY: setup test test-fast lab app bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[scale]'
	touch $(STAMP)

# Every test, then every chapter notebook top to bottom at the smoke profile (nbmake; notebooks/conftest.py).
test: setup
	$(BIN)/python -m pytest -q --nbmake tests notebooks

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not e2e" tests

# The chapters in JupyterLab, at WORKBENCH_PROFILE when you set it (make lab WORKBENCH_PROFILE=smoke),
# else at cpu (the export above defaults it to smoke for the tests only).
LAB_PROFILE = $(if $(filter environment command line,$(origin WORKBENCH_PROFILE)),$(WORKBENCH_PROFILE),cpu)
lab: setup
	WORKBENCH_PROFILE=$(LAB_PROFILE) $(BIN)/jupyter lab --notebook-dir=notebooks

# The app on 127.0.0.1 (demo collection generated once under cache/demo). Pass flags with
# APP_ARGS, e.g. make app APP_ARGS="--videos ~/clips --port 7861".
app: setup
	$(BIN)/workbench app $(APP_ARGS)

# Speed and scale figures (README "Speed and scale"); each script prints a ratio to its baseline.
bench: setup
	for b in extract cached_training frozen_pass retrieval memory; do nice $(BIN)/python benchmarks/bench_$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

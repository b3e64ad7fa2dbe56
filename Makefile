# One entry point for set-up and tests. `make test` works on a fresh machine from nothing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch==2.13.0 is the CPU build on local disk; it stays in every pip call so nothing pulls CUDA wheels.
PIP_INSTALL := $(BIN)/pip install -q -c constraints.txt torch==2.13.0

.PHONY: env test export-check nbtest pytest slow bench clean

env: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP_INSTALL) -e ".[dev]"
	touch $@

export-check: env
	$(BIN)/python tools/check_export.py

nbtest: env
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing

pytest: env
	$(BIN)/python -m pytest -q tests

test: export-check nbtest pytest

slow: env
	$(BIN)/nbdev_test --n_workers 1 --flags slow
	$(BIN)/python -m pytest -q tests --runslow

bench: env
	$(BIN)/python benchmarks/run_all.py --out out/bench

clean:
	rm -rf $(VENV) _proc _docs

# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates/updates .venv and installs pinned dependencies first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
CONFIG ?= configs/demo.py

.PHONY: demo test fmt venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when setup.py changes.
$(VENV)/.installed: setup.py | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/python -m rlcs_jax.main --config $(CONFIG) --workdir $(WORKDIR)

# Two worker processes, one per core of the 2-core CI machines; a test file's
# tests stay in one process (--dist loadfile), so module fixtures run once.
test: venv
	$(BIN)/pyink --check --diff rlcs_jax configs experiments tests
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

fmt: venv
	$(BIN)/pyink rlcs_jax configs experiments tests

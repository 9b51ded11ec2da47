# awsnetemu: every target does its own set-up (virtualenv + editable install) on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out

.PHONY: setup system demo test test-fast bench lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Real peers for the interop tests (strongSwan charon, tshark, ike-scan), from Debian packages.
system:
	bash .ci/system-deps.sh

demo: setup
	$(PY) -m emulator demo --out $(OUT)

test: setup system
	$(PY) -m pytest -q

# Everything except the tests that need real peers.
test-fast: setup
	$(PY) -m pytest -q -m "not realpeer"

bench: setup
	$(PY) -m bench

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache

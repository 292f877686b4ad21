# Seawall: `make run` serves a demo on http://127.0.0.1:8000; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export SEAWALL_HOME ?= $(CURDIR)/var

.PHONY: run test install lint bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Seawall needs Python 3.11 or newer (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/seawall db upgrade
	$(BIN)/seawall demo --if-empty
	@echo "Console: http://127.0.0.1:8000  (log in as 'admin'; its password was printed when the demo was first seeded,"
	@echo "         a new one: $(BIN)/seawall users reset-password admin)"
	$(BIN)/seawall serve

test: install
	$(BIN)/pytest -n 2 --dist loadfile  # two processes, each test file whole in one of them

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/hash.py
	$(BIN)/python bench/index.py

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .mypy_cache .ruff_cache

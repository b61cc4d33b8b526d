# Settle. On a fresh machine with Python 3.11+, Node.js and make:
#   make run    set everything up and run the whole stack (Temporal dev server + Web UI, sandboxes, worker, API)
#   make test   set everything up and run the whole test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

# the first interpreter that really runs and is 3.11+ (pyenv shims may exist for inactive versions)
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do $$p -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && echo $$p && break; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# anvil (local EVM chain) and solc (Solidity compiler) from npm, versions pinned in tools/package.json
TOOLS  := .tools
TOOLS_STAMP := $(TOOLS)/.installed

.PHONY: help install tools contracts run migrate test lint audit format bench chaos clean-data

help:
	@echo "make run      run the whole stack locally (prints where to look)"
	@echo "make test     run every test (unit, integration, e2e)"
	@echo "make lint     ruff + mypy"
	@echo "make audit    bandit (high severity) + pip-audit (needs the vulnerability database online)"
	@echo "make bench    benchmarks (figures in bench/README.md)"
	@echo "make chaos    the chaos run: load + faults, every effect reconciled (bench/README.md)"
	@echo "make migrate  apply database migrations (DATABASE_URL)"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Settle needs Python 3.11+ on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(TOOLS_STAMP): tools/package.json
	@command -v npm >/dev/null || { echo "Settle needs Node.js and npm on PATH (for anvil and solc)"; exit 1; }
	mkdir -p $(TOOLS)
	cp tools/package.json $(TOOLS)/package.json
	npm install --prefix $(TOOLS) --no-audit --no-fund --silent
	$(TOOLS)/node_modules/.bin/anvil --version >/dev/null
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# recompile contracts/*.sol into contracts/build/ (committed; a test checks they match)
contracts: install tools
	$(BIN)/python -m contracts.compile

# with DATABASE_URL unset, both start the embedded PostgreSQL (data in .data/postgres) first
migrate: install
	$(BIN)/python -m runtime.stack migrate

run: install tools
	mkdir -p .data
	$(BIN)/python -m runtime.stack run

test: install tools
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# bandit: 0 high-severity findings (exceptions with reasons in pyproject's [tool.bandit]);
# pip-audit: 0 known vulnerabilities; --strict fails when a dependency cannot be looked up, so an
# offline machine fails here instead of passing with nothing checked. Ignore a vulnerability only
# with --ignore-vuln ID and a comment saying why.
AUDIT_PATHS := api operations activities domain providers runtime sandbox store workflows contracts worker.py
audit: install
	$(BIN)/bandit -c pyproject.toml -r $(AUDIT_PATHS) --severity-level high -q
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install tools
	$(BIN)/python -m bench.mpesa_deposits

# the full chaos run (about 16 minutes on 2 cores): CHAOS_ARGS for a shorter one, e.g.
#   make chaos CHAOS_ARGS="--operations 100 --duration 75 --drain 90 --worker-kills 3 --server-restarts 1 --providers stripe --outage-seconds 24 --db-cuts 3"
chaos: install tools
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean-data:
	rm -rf .data

# Switchboard — `make help` lists the targets, by section (`##@` lines below).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf

.DEFAULT_GOAL := help

##@ Setup

help: ## List the targets
	@awk 'BEGIN{FS=":.*## "} /^##@ /{printf "\n%s\n", substr($$0, 5); next} /^[a-zA-Z0-9_-]+:.*## /{printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed ## Create .venv and install Switchboard with its dev tools

clean: ## Remove caches (keeps .venv and .data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache

##@ Run

run: install ## Run the gateway on the embedded default (SQLite in the default data dir, demo provider)
	$(VENV)/bin/switchboard serve $(ARGS)

##@ Test (extra pytest flags: PYTEST_ARGS="..."; the tree: tests/README.md)

test: install ## Run the test suite, with skip reasons
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

test-unit: install ## Unit tests only (tests/unit)
	$(PY) -m pytest -q -rs tests/unit $(PYTEST_ARGS)

test-e2e: install ## Official SDKs and the Node client against a running gateway (tests/e2e)
	$(PY) -m pytest -q -rs tests/e2e $(PYTEST_ARGS)

test-replay: install ## Recorded provider traffic from ../shared/fixtures (tests/replay)
	$(PY) -m pytest -q -rs tests/replay $(PYTEST_ARGS)

conformance: install ## The suite every provider adapter passes (tests/conformance)
	$(PY) -m pytest -q -rs tests/conformance $(PYTEST_ARGS)

##@ Code

fmt: install ## Fix what ruff can (ruff check --fix), then ruff format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lint: install ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: install ## mypy
	$(VENV)/bin/mypy

gen: install ## Regenerate gen/python from proto/ (the only way stubs change)
	PYTHON=$(PY) ./scripts/gen.sh

drift: gen ## Fail when regenerating the stubs changes a file
	@git diff --exit-code --stat -- gen/ || { echo "gen/ drifted from proto/: run make gen and commit"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard gen/)" || { echo "untracked files in gen/: run make gen and commit"; exit 1; }

$(BUF):
	@mkdir -p .tools
	npm install --silent --prefix .tools @bufbuild/buf@$(BUF_VERSION) >/dev/null

buf-lint: $(BUF) ## Lint the contract with buf (STANDARD)
	cd proto && ../$(BUF) lint

check: lint types drift buf-lint test ## Everything CI cares about: lint, types, drift, buf lint, tests

##@ Bench

bench: install ## Benchmark direct vs. shim vs. gRPC against a fast fake upstream
	$(PY) bench/run.py $(ARGS)

.PHONY: help install clean run test test-unit test-e2e test-replay conformance fmt lint types gen drift buf-lint check bench

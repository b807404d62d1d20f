# Switchboard — `make help` lists the targets, by section (`##@` lines below).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The Node toolchain (the Node client's dependencies, buf, protoc-gen-es, tsc), pinned by
# clients/node/package-lock.json and installed with `npm ci`.
NODE_DIR := clients/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
BUF := $(NODE_DIR)/node_modules/.bin/buf

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

$(NODE_STAMP): $(NODE_DIR)/package-lock.json
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund
	@touch $@

node-install: $(NODE_STAMP) ## npm ci in clients/node: the Node client, buf, protoc-gen-es, tsc (pinned)

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

test-e2e: install node-install ## Official SDKs and the Node client against a running gateway (tests/e2e)
	$(PY) -m pytest -q -rs tests/e2e $(PYTEST_ARGS)

test-node: install node-install ## The Node client's `node --test` suite against a real gateway (via pytest)
	$(PY) -m pytest -q -rs tests/e2e/test_node_client.py $(PYTEST_ARGS)

test-replay: install ## Recorded provider traffic from ../shared/fixtures (tests/replay)
	$(PY) -m pytest -q -rs tests/replay $(PYTEST_ARGS)

conformance: install ## The suite every provider adapter passes (tests/conformance)
	$(PY) -m pytest -q -rs tests/conformance $(PYTEST_ARGS)

##@ Code

fmt: install node-install ## Fix what ruff can (ruff check --fix), then ruff format; prettier for the Node client
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	cd $(NODE_DIR) && node_modules/.bin/prettier --write --log-level warn .

lint: install ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: install ## mypy
	$(VENV)/bin/mypy

node-types: node-install ## Type-check the Node client, its tests and example against the generated .d.ts
	cd $(NODE_DIR) && node_modules/.bin/tsc -p tsconfig.json

node-lint: node-install ## prettier --check over the Node client's hand-written files (fix: npm run format)
	cd $(NODE_DIR) && node_modules/.bin/prettier --check .

GENERATED_NODE := $(NODE_DIR)/gen/ $(NODE_DIR)/types/
GENERATED := gen/ $(GENERATED_NODE)
# Fails when $(1) differs from what is committed, or holds files git does not know.
define no_drift
	@git diff --exit-code --stat -- $(1) || { echo "generated code drifted from proto/: run make gen and commit"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard $(1))" || { echo "untracked generated files: run make gen and commit"; exit 1; }
endef

gen: install node-install ## Regenerate gen/python and clients/node/{gen,types} from proto/ (the only way they change)
	PYTHON=$(PY) ./scripts/gen.sh

drift: gen ## Fail when regenerating changes a file (gen/python, clients/node/gen, clients/node/types)
	$(call no_drift,$(GENERATED))

drift-node: node-install ## The drift check for the Node code alone (its generators are pinned by package-lock.json)
	./scripts/gen.sh node
	$(call no_drift,$(GENERATED_NODE))

buf-lint: node-install ## Lint the contract with buf (STANDARD)
	cd proto && ../$(BUF) lint

buf-breaking: node-install ## Fail when proto/ breaks compatibility with the previous commit (or the branch's merge-base)
	BUF=$(BUF) ./scripts/buf-breaking.sh

check: lint node-lint types node-types drift buf-lint buf-breaking test ## Everything CI cares about: lint, types, drift, buf lint/breaking, tests

##@ Bench

bench: install ## Benchmark direct vs. shim vs. gRPC against a fast fake upstream
	$(PY) bench/run.py $(ARGS)

.PHONY: help install node-install clean run test test-unit test-e2e test-node test-replay conformance fmt lint node-lint types node-types gen drift drift-node buf-lint buf-breaking check bench

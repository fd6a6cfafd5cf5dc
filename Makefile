# seatledger: one entry point for setting up, running and testing.
#   make test   set everything up, start the real infrastructure, lint, run the whole suite
#   make up     install (if missing) and start PostgreSQL and Kafka; make down stops them
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help uv sync demo serve services infra up down reset status lint format test test-unit test-integration test-e2e

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/' | column -t -s $$'\t'

uv:
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || { \
	  echo "[seatledger] installing uv $(UV_VERSION) from PyPI"; \
	  python3.11 -m pip install --quiet --user "uv==$(UV_VERSION)" 2>/dev/null \
	    || python3.11 -m pip install --quiet "uv==$(UV_VERSION)"; }

sync: uv ## install the locked Python environment into .venv
	@"$$(command -v uv || echo $(UV))" sync --frozen --python python3.11 --quiet

demo: sync ## set up and walk through the seat-license story (embedded default, no servers needed)
	@.venv/bin/seatledger demo

serve: sync ## run the whole product in one process on SQLite (http://127.0.0.1:8000/docs)
	@.venv/bin/seatledger serve

up: sync ## install (if missing) and start PostgreSQL, Kafka and an SMTP sink
	@deploy/local/up.sh

services: up ## run ledger, invoicer and notifier as three processes on the local infrastructure
	@deploy/local/services.sh start

down: ## stop what make up (and make services) started
	@deploy/local/down.sh

reset: ## stop the infrastructure and wipe its data
	@deploy/local/reset.sh

status: ## show what is running
	@deploy/local/kafka.sh status || true
	@deploy/local/postgres.sh status || true
	@deploy/local/smtp.sh status || true
	@deploy/local/services.sh status || true

lint: sync ## ruff and mypy
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy .

format: sync ## apply ruff's formatting and fixable lints
	@$(PY) -m ruff format .
	@$(PY) -m ruff check --fix .

test-unit: sync ## unit tests only (no infrastructure)
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

infra: sync
	@deploy/local/postgres.sh start
	@deploy/local/kafka.sh start

test: infra lint ## set everything up and run the whole suite (unit, integration, e2e)
	@source deploy/local/env.sh && $(PY) -m pytest $(PYTEST_ARGS)

test-integration: infra
	@source deploy/local/env.sh && $(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: infra
	@source deploy/local/env.sh && $(PY) -m pytest tests/e2e $(PYTEST_ARGS)

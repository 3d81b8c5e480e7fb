# Treat first, pay later — developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
BENCH_TRANSFERS ?= 5000
BENCH_CLIENTS ?= 4

.DEFAULT_GOAL := help
.PHONY: help run test lint format migrate verify bench schema clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (found: $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(RUNTIME_STAMP)

run: $(RUNTIME_STAMP) ## Start web, worker+beat and demo data on embedded defaults (Ctrl-C stops)
	$(PY) -m config.devrun

test: $(DEV_STAMP) ## Run the whole test suite (SQLite, or PostgreSQL with DATABASE_URL)
	$(PY) -m pytest

lint: $(DEV_STAMP) ## ruff, ruff format --check, mypy, migrations check, OpenAPI schema check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(PY) manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) manage.py spectacular --validate --fail-on-warn --file $(VENV)/schema.yaml

format: $(DEV_STAMP) ## Fix imports and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: $(RUNTIME_STAMP) ## Apply migrations to the configured database
	$(PY) manage.py migrate

verify: $(RUNTIME_STAMP) ## Check the ledger's integrity (manage.py verify_ledger)
	$(PY) manage.py verify_ledger

bench: $(RUNTIME_STAMP) ## Ledger posting benchmark on PostgreSQL (needs DATABASE_URL)
	$(PY) manage.py ledger_bench --transfers $(BENCH_TRANSFERS) --clients $(BENCH_CLIENTS)

schema: $(RUNTIME_STAMP) ## Write the OpenAPI schema to var/schema.yaml
	@mkdir -p var
	$(PY) manage.py spectacular --file var/schema.yaml

clean: ## Remove the virtualenv and the embedded database and broker
	rm -rf $(VENV) var

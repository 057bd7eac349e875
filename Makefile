# The two commands: `make run` (everything, with demo data) and `make test` (the whole suite).
# Only Python 3.11 and make are needed; everything else is installed into .venv.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint check clean mutation fuzz-api

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when the declared dependencies change, so a second `make run` starts in seconds.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed-run

run: export DEMO_MODE = 1
run: export SITE_URL ?= http://$(HOST):$(PORT)
run: export WEB_BIND = $(HOST):$(PORT)
# Static files hashed, compressed and cached for ever, as in production (collected below).
run: export STATIC_MANIFEST = 1
# The Procfile's gunicorn and celery are the ones in .venv.
run: export PATH := $(CURDIR)/$(BIN):$(PATH)
run: $(VENV)/.installed-run
	$(BIN)/python manage.py compile_translations
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --if-empty --sync
	@echo
	@echo "  channelmgr is starting at $(SITE_URL)/"
	@echo "  Log in as demo / demo. Ctrl-C stops web, worker and beat."
	@echo
	$(BIN)/honcho --procfile Procfile start

# pytest runs in two processes per core (pytest-xdist): a third of a test's time is spent waiting
# (servers, browsers, deadlines), so two per core keep the cores busy. Each has a test database
# of its own (pytest-django names them test_<name>_gw0, _gw1, ...). TEST_PROCESSES=0: all in
# this process.
TEST_PROCESSES ?= $(shell echo $$((2 * $$(getconf _NPROCESSORS_ONLN))))

# Each test process, and each server or worker a test starts, reads the compiled modules (and
# pytest's rewritten test modules) from __pycache__: with bytecode writing off (a shell's
# PYTHONDONTWRITEBYTECODE), every one of them would compile the project and the tests again.
test: export PYTHONDONTWRITEBYTECODE =
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python manage.py check --fail-level WARNING
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python manage.py compile_translations
	$(BIN)/pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

# schemathesis against the API's live schema (tools/fuzz_api.py): a real gunicorn on a fresh
# PostgreSQL database next to DATABASE_URL's, FUZZ_EXAMPLES examples per operation. CI runs it
# after `make test`.
FUZZ_EXAMPLES ?= 300
fuzz-api: $(VENV)/.installed-dev
	$(BIN)/python tools/fuzz_api.py --examples $(FUZZ_EXAMPLES)

# Mutation testing (docs/mutation.md): not part of `make test`. The functions below decide nights,
# states and tenants; mutmut changes each in small ways and runs the tests that reach it, on
# SQLite, from a copy of one migrated database. The last line is the score.
MUTATION_SCOPE := \
	'syncs.engine.diff.x_*' \
	'syncs.engine.record.x_apply_diff__*' \
	'syncs.horizon.x_*' \
	'syncs.export.x_merge_nights__*' 'syncs.export.x_exported_nights__*' 'syncs.export.x_calendar_export__*' \
	'syncs.webhooks.x__mac__*' 'syncs.webhooks.x_signature__*' 'syncs.webhooks.x_signature_valid__*' \
	'syncs.sync_state.x_classify__*' \
	'syncs.conflicts.x_account_conflict_groups__*' \
	'syncs.engine.parse.ical.x__is_cancelled__*'
MUTATION_DATABASE := $(CURDIR)/var/mutation-template.sqlite3

mutation: $(VENV)/.installed-dev
	$(BIN)/python manage.py compile_translations
	rm -rf mutants $(MUTATION_DATABASE)
	mkdir -p var
	DATABASE_URL=sqlite:///$(MUTATION_DATABASE) $(BIN)/python manage.py migrate --noinput --verbosity 0
	env -u DATABASE_URL -u REDIS_URL -u REQUIRE_SERVICES MUTATION_TEST_DATABASE=$(MUTATION_DATABASE) \
		$(BIN)/mutmut run --max-children 2 $(MUTATION_SCOPE) > var/mutation.log 2>&1 || (tail -c 3000 var/mutation.log; exit 1)
	@$(BIN)/python tools/mutation_summary.py $(MUTATION_SCOPE)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf var .pytest_cache mutants

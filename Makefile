# The README's commands. `make run` and `make test` set up everything they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000
# `make run` is the embedded first look: SQLite and eager tasks unless overridden.
RUN_DATABASE_URL ?= sqlite:///var/db.sqlite3
SIMULATED_RATERS ?= 20

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install run test test-unit lint format worker worker-gpu bench services browser clean messages

# Reinstall only when the requirements change (the stamp is newer than both files).
$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

run: install
	DEBUG=1 DATABASE_URL=$(RUN_DATABASE_URL) CELERY_BROKER_URL= $(BIN)/python manage.py migrate --noinput
	DEBUG=1 DATABASE_URL=$(RUN_DATABASE_URL) CELERY_BROKER_URL= $(BIN)/python manage.py seed_demo --simulate-raters $(SIMULATED_RATERS)
	@echo ""
	@echo "  Rater link:   http://$(HOST):$(PORT)/s/demo/"
	@# A fresh Prolific id each time: a second try is a new rater, from consent on.
	@PID=demo-$$($(BIN)/python -c "import secrets; print(secrets.token_hex(4))"); \
	echo "  Prolific:     http://$(HOST):$(PORT)/s/demo/?PROLIFIC_PID=$$PID&STUDY_ID=demo&SESSION_ID=s-$$PID"
	@echo "  Admin:        http://$(HOST):$(PORT)/admin/   user admin / password admin"
	@echo "  Researcher:   user researcher / password researcher"
	@echo "  (SQLite in var/, Celery tasks run eagerly in the web process)"
	@echo ""
	DEBUG=1 DATABASE_URL=$(RUN_DATABASE_URL) CELERY_BROKER_URL= $(BIN)/python manage.py runserver $(HOST):$(PORT)

# PostgreSQL and Redis: DATABASE_URL / CELERY_BROKER_URL when set, else the local defaults.
services:
	@$(PYTHON) scripts/check_services.py

# Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium).
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "Chromium is missing: run 'sudo apt-get install -y chromium' (browser tests need /usr/bin/chromium)"; exit 1; fi; }

test: install services browser
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	DJANGO_SETTINGS_MODULE=studyweb.test_settings $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python -m pytest
	# The rating path again on SQLite, the database of `make run`.
	TEST_DATABASE_URL=sqlite:///var/db.sqlite3 $(BIN)/python -m pytest -m sqlite_too

# The pure tests (numerics, the ratings CSV and compute_mos, JOINT): no PostgreSQL, Redis
# or Chromium. The database and broker point at a closed port, so a test that reaches
# for either fails instead of quietly using a local service.
UNIT_TESTS := tests/scoring/test_mos.py tests/scoring/test_reliability.py \
	tests/scoring/test_agreement.py tests/scoring/test_compute_mos.py tests/scoring/joint
test-unit: install
	DATABASE_URL=postgres://no-database@127.0.0.1:1/none CELERY_BROKER_URL=redis://127.0.0.1:1/0 \
	  $(BIN)/python -m pytest -m "not django_db and not browser and not celery_worker" $(UNIT_TESTS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Celery workers (need CELERY_BROKER_URL and a shared DATABASE_URL).
worker: install
	$(BIN)/celery -A studyweb worker -Q default -l INFO

worker-gpu: install
	$(BIN)/celery -A studyweb worker -Q gpu -c 1 -l INFO

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The raters' catalogues (locale/, committed with their compiled .mo): only the rater
# pages are translated, so only their sources are read. Fill new strings in the .po
# files, then run this again to compile them (tests/test_i18n.py checks both).
MESSAGE_IGNORE := --ignore=.venv --ignore=var --ignore=tests --ignore=bench --ignore=scoring \
	--ignore=static/vendor --ignore=templates/workspace --ignore=templates/accounts \
	--ignore=templates/admin --ignore=studyweb --ignore=scripts
messages: install
	DEBUG=1 $(BIN)/python manage.py makemessages -l zh_Hans --no-location $(MESSAGE_IGNORE)
	DEBUG=1 $(BIN)/python manage.py makemessages -d djangojs -l zh_Hans --no-location $(MESSAGE_IGNORE)
	DEBUG=1 $(BIN)/python manage.py compilemessages --ignore=.venv

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache .import_linter_cache

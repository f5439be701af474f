# SyncStore. `make demo` and `make test` are the two commands; everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-postgres test install run lint format migrate schedules sandbox bench bench-erp bench-reconcile bench-push bench-webhooks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The embedded default, whatever the shell or .env say: SQLite, eager Celery, local-memory
# cache, built-in sandboxes, the embedded development keys (empty means unset).
EMBEDDED := DATABASE_URL=sqlite:///$(CURDIR)/syncstore.sqlite3 REDIS_URL= CELERY_BROKER_URL= \
	SLACK_WEBHOOK_URL= DJANGO_LOG_LEVEL=WARNING DJANGO_SECRET_KEY= FIELD_ENCRYPTION_KEYS=

demo: $(STAMP)
	$(EMBEDDED) $(BIN)/python manage.py migrate --noinput --verbosity 0
	$(EMBEDDED) DJANGO_LOG_LEVEL=INFO $(BIN)/python manage.py demo

# The demo on the database, cache and keys of the environment or .env (PostgreSQL and Redis
# as `make run` uses them), with eager Celery: the demo's data in the database you serve.
demo-postgres: $(STAMP)
	$(BIN)/python manage.py migrate --noinput --verbosity 0
	CELERY_BROKER_URL= SLACK_WEBHOOK_URL= DJANGO_LOG_LEVEL=INFO $(BIN)/python manage.py demo

# Tests run against PostgreSQL and Redis: DATABASE_URL and REDIS_URL when set, else
# 127.0.0.1 (see config/settings_test.py).
test: $(STAMP)
	DJANGO_LOG_LEVEL=WARNING $(BIN)/python -m pytest

# Web (gunicorn) + Celery worker + beat, configured by the environment or .env; creates a
# missing PostgreSQL database. `make run BIND=0.0.0.0:9000` serves on another address.
BIND ?= 127.0.0.1:8000
run: $(STAMP)
	$(BIN)/python manage.py runall --bind $(BIND)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_LOG_LEVEL=WARNING $(BIN)/python manage.py makemigrations --check --dry-run

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(STAMP)
	$(BIN)/python manage.py migrate

schedules: $(STAMP)
	$(BIN)/python manage.py setup_schedules

sandbox: $(STAMP)
	$(BIN)/python manage.py sandbox serve

bench: $(STAMP)
	$(BIN)/python bench/stock_api.py

SKUS ?= 50000
bench-erp: $(STAMP)
	$(BIN)/python bench/erp_pull.py --skus $(SKUS)

RECONCILE_SKUS ?= 100000
bench-reconcile: $(STAMP)
	$(BIN)/python bench/reconcile.py --skus $(RECONCILE_SKUS)

bench-push: $(STAMP)
	$(BIN)/python bench/push.py

bench-webhooks: $(STAMP)
	$(BIN)/python bench/webhooks.py

clean:
	rm -rf $(VENV) syncstore.sqlite3 staticfiles var .pytest_cache .ruff_cache

# twelvefactor-template: `make test` checks the template end to end; `make test-fast` in seconds.
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV)/bin)
# The baked services' test suites need a PostgreSQL server and a Redis; each run makes its own database.
export DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export REDIS_URL ?= redis://127.0.0.1:6379/0
# Tests run the template's own tools (uv, ruff, cookiecutter) from the virtual environment.
export PATH := $(BIN):$(PATH)

.PHONY: help install test test-fast test-slow lint lock lock-service demo clean

help:
	@echo "make demo       bake a service into build/demo and run its web and worker on \$$PORT (default 8000)"
	@echo "make test       lint, then every template test (bakes, installs and runs a service; a few minutes)"
	@echo "make test-fast  the fast tier only: bakes, hook rejections, rendering (seconds)"
	@echo "make lint       ruff and mypy --strict on the template's tests and hooks"
	@echo "make lock       recompile requirements.txt from pyproject.toml"
	@echo "make lock-service  recompile the generated service's requirements*.txt from its pyproject.toml"

# Hash-checked install of the template's tools, redone only when the lock changes.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

test-slow: install
	$(BIN)/pytest -m slow

lock: install
	$(BIN)/uv pip compile pyproject.toml --quiet --universal --generate-hashes --no-annotate \
		--python-version 3.11 --extra test -o requirements.txt

# The zero-server demo: a default bake, run on local SQLite files (database and job queue), so it needs
# nothing but Python. The baked .env still points at PostgreSQL and Redis; exported values win over it.
DEMO_DIR ?= build/demo
DEMO := $(DEMO_DIR)/my-service
demo: export PORT ?= 8000
demo: export DATABASE_URL = sqlite:///demo.sqlite3
demo: export BROKER_URL = sqla+sqlite:///broker.sqlite3
demo: export REDIS_URL =
demo: export LOG_FORMAT = console
demo: install
	rm -rf $(DEMO_DIR)
	$(BIN)/cookiecutter --no-input . -o $(DEMO_DIR)
	$(MAKE) -C $(DEMO) install
	cd $(DEMO) && .venv/bin/my-service migrate
	@echo
	@echo "  Serving http://127.0.0.1:$(PORT) (Ctrl-C stops web and worker). Try:"
	@echo "    curl -si http://127.0.0.1:$(PORT)/items -H 'content-type: application/json' -d '{\"name\": \"hello\"}'"
	@echo "    curl -s http://127.0.0.1:$(PORT)/items/1      # status goes from pending to done"
	@echo
	# The Procfile names the bare console script, as on a platform: put the service's venv on PATH.
	# honcho would load the baked .env over the exported URLs above: point it at no file.
	cd $(DEMO) && PATH="$$PWD/.venv/bin:$$PATH" exec .venv/bin/honcho start --env /dev/null --port $(PORT) web worker

# The service's lock files are compiled in a default bake and copied back; they name no project.
lock-service: install
	rm -rf build/lock && $(BIN)/cookiecutter --no-input . -o build/lock
	$(MAKE) -C build/lock/my-service lock
	cp build/lock/my-service/requirements.txt build/lock/my-service/requirements-dev.txt \
		'{{cookiecutter.project_slug}}/'

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache

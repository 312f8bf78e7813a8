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

.PHONY: help install test test-fast test-slow lint lock lock-service demo bench wrk clean

help:
	@echo "make demo       bake a service into build/demo and run its web and worker on \$$PORT (default 8000)"
	@echo "make test       lint, then every template test (bakes, installs and runs a service; a few minutes)"
	@echo "make test-fast  the fast tier only: bakes, hook rejections, rendering (seconds)"
	@echo "make lint       ruff and mypy --strict on the template's tests and hooks"
	@echo "make lock       recompile requirements.txt from pyproject.toml"
	@echo "make lock-service  recompile the generated service's requirements*.txt from its pyproject.toml"
	@echo "make bench      a default bake against the bare stack under wrk; table in build/bench/results.md"

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

# Two pytest-xdist workers: the slow tier's tests mostly wait on the services they start. Each module's
# tests stay in one worker (--dist loadfile), which makes its module-wide bakes once.
test: lint
	$(BIN)/pytest --numprocesses 2 --dist loadfile

test-fast: install
	$(BIN)/pytest -m "not slow" --numprocesses 2

test-slow: install
	$(BIN)/pytest -m slow --numprocesses 2 --dist loadfile

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
		build/lock/my-service/requirements-build.txt \
		'{{cookiecutter.project_slug}}/'

# The benchmark: a default bake, installed, against bare Starlette, raw asyncpg and bare Celery (bench/).
# Smoke run: make bench BENCH_ROUNDS=1 BENCH_SECONDS=1 BENCH_JOBS=20 BENCH_STARTS=1
BENCH_DIR ?= build/bench
BENCH_ROUNDS ?= 5
BENCH_SECONDS ?= 10
BENCH_CONNECTIONS ?= 64
BENCH_JOBS ?= 300
BENCH_STARTS ?= 3
BENCH := $(BENCH_DIR)/my-service
bench: install wrk
	rm -rf $(BENCH)
	$(BIN)/cookiecutter --no-input . -o $(BENCH_DIR)
	$(MAKE) -C $(BENCH) install
	$(BENCH)/.venv/bin/python -m bench.run --service $(BENCH) --slug my-service --out $(BENCH_DIR)/results.md \
		--database-url $(DATABASE_URL) --redis-url $(REDIS_URL) --rounds $(BENCH_ROUNDS) \
		--seconds $(BENCH_SECONDS) --connections $(BENCH_CONNECTIONS) --jobs $(BENCH_JOBS) --starts $(BENCH_STARTS)

# The load generator, from Debian's packages (CI runs as root on a fresh Debian machine).
wrk:
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache

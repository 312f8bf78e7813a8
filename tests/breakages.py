"""Deliberate breakages of a baked service, one per row, each what a hurried fork might write.

Each row says which factor it breaks, the change (small text edits of the bake: `old` replaced by `new`, or a
new file when `old` is None; `mode` sets the file's permission bits), and the layer that must catch it:

- `ruff` / `deptry`: `make lint`'s tools, run alone; `expect` is the rule code that must be reported.
- `test`: one conformance test of the bake's tests/test_twelve_factors.py, named by `expect`.
- `check`: `<slug> check` with `env` changed; `expect` is the variable it must name, `status` its exit status.

`PKG` and `SLUG` in paths and text stand for the bake's package name and console script.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

from support import Bake

Layer = Literal["ruff", "deptry", "test", "check"]


@dataclasses.dataclass(frozen=True)
class Edit:
    path: str
    old: str | None
    new: str
    # The file's permission bits afterwards (0o755: executable), when the change is to them too.
    mode: int | None = None


@dataclasses.dataclass(frozen=True)
class Breakage:
    name: str
    factor: str
    what: str
    layer: Layer
    expect: str
    edits: tuple[Edit, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    status: int = 1

    def apply(self, bake: Bake) -> None:
        """Make the change in the bake; fail if the bake no longer has the text to change."""
        for edit in self.edits:
            path = bake.project / edit.path.replace("PKG", bake.package)
            new = edit.new.replace("PKG", bake.package).replace("SLUG", bake.slug)
            if edit.old is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(new)
            else:
                old = edit.old.replace("PKG", bake.package).replace("SLUG", bake.slug)
                text = path.read_text()
                assert text.count(old) == 1, f"{self.name}: {edit.path} no longer contains {old!r}"
                path.write_text(text.replace(old, new))
            if edit.mode is not None:
                path.chmod(edit.mode)


SETTINGS = "src/PKG/settings.py"
CLI = "src/PKG/cli.py"
ITEMS = "src/PKG/web/items.py"
TASKS = "src/PKG/jobs/tasks.py"
WORKER = "src/PKG/jobs/worker.py"
CELERY_APP = "src/PKG/jobs/celery_app.py"
APP = "src/PKG/web/app.py"

# The first catalogue: the breakages the guards were first written against.
FIRST_CATALOGUE = [
    # --- I. Codebase
    Breakage(
        "per-deploy-env-file",
        "I",
        "commits the production settings as .env.production",
        "test",
        "test_factor_01_codebase_has_no_per_deploy_config_files_or_deploy_name_switches",
        (Edit(".env.production", None, "LOG_LEVEL=WARNING\nWEB_CONCURRENCY=4\n"),),
    ),
    Breakage(
        "app-env-switch",
        "I",
        "adds APP_ENV and turns debug pages on when it says development",
        "test",
        "test_factor_01_codebase_has_no_per_deploy_config_files_or_deploy_name_switches",
        (
            Edit(
                SETTINGS,
                '    release_id: str = variable("RELEASE_ID")\n',
                '    release_id: str = variable("RELEASE_ID")\n    app_env: str = variable("APP_ENV")\n',
            ),
            Edit(
                SETTINGS,
                "        logs=LogSettings.read(env),\n",
                '        app_env=env.str("APP_ENV", "development"),\n        logs=LogSettings.read(env),\n',
            ),
            Edit(
                APP,
                "        lifespan=lifespan,\n",
                '        lifespan=lifespan,\n        debug=settings.app_env == "development",\n',
            ),
        ),
    ),
    Breakage(
        "second-app-inside",
        "I",
        "starts an admin dashboard as a second project inside the repository",
        "test",
        "test_factor_01_codebase_is_one_repository_with_no_second_app_inside",
        (Edit("dashboard/pyproject.toml", None, '[project]\nname = "dashboard"\nversion = "0.1.0"\n'),),
    ),
    # --- II. Dependencies
    Breakage(
        "undeclared-import",
        "II",
        "calls a webhook with httpx, never declared in pyproject.toml",
        "deptry",
        "DEP001",
        (
            Edit(
                "src/PKG/webhooks.py",
                None,
                "import httpx\n\n\ndef notify(url: str) -> None:\n    httpx.post(url, timeout=5)\n",
            ),
        ),
    ),
    Breakage(
        "declared-not-locked",
        "II",
        "adds tenacity to pyproject.toml for retries and forgets `make lock`",
        "test",
        "test_factor_02_dependencies_are_declared_locked_with_hashes_and_installed_as_locked",
        (Edit("pyproject.toml", '    "click>=8.1,<9",\n', '    "click>=8.1,<9",\n    "tenacity>=9",\n'),),
    ),
    Breakage(
        "declared-never-imported",
        "II",
        "declares pyyaml for a config file that never came",
        "deptry",
        "DEP002",
        (Edit("pyproject.toml", '    "click>=8.1,<9",\n', '    "click>=8.1,<9",\n    "pyyaml>=6",\n'),),
    ),
    Breakage(
        "system-tool",
        "II",
        "makes thumbnails by shelling out to ImageMagick's convert",
        "ruff",
        "TID251",
        (
            Edit(
                "src/PKG/thumbnails.py",
                None,
                "import subprocess\n\n\ndef thumbnail(path: str) -> None:\n"
                '    subprocess.run(["convert", path, "-resize", "64x64", path + ".png"], check=True)\n',
            ),
        ),
    ),
    # --- III. Config
    Breakage(
        "getenv-outside-settings",
        "III",
        "reads a feature flag with os.getenv next to the code that uses it",
        "ruff",
        "TID251",
        (
            Edit(ITEMS, "from typing import Any\n", "import os\nfrom typing import Any\n"),
            Edit(
                ITEMS,
                "MAX_ID = 2**63 - 1\n",
                'MAX_ID = 2**63 - 1\nBULK_IMPORT = os.getenv("FEATURE_BULK_IMPORT") == "1"\n',
            ),
        ),
    ),
    Breakage(
        "secret-default-in-code",
        "III",
        "gives SECRET_KEY a default so the service starts without one",
        "test",
        "test_factor_03_config_required_settings_have_no_value_baked_into_the_code",
        (
            Edit(
                SETTINGS,
                '            "SECRET_KEY",\n',
                '            "SECRET_KEY",\n            "a-long-enough-key-for-local-work-0123456789",\n',
            ),
        ),
    ),
    Breakage(
        "placeholder-secret",
        "III",
        "deploys with SECRET_KEY=changethis",
        "check",
        "SECRET_KEY",
        env=(("SECRET_KEY", "changethis"),),
        status=os.EX_CONFIG,
    ),
    # --- IV. Backing services
    Breakage(
        "hard-coded-broker",
        "IV",
        "hard-codes the broker as redis://localhost",
        "test",
        "test_factor_04_backing_services_are_located_by_url_settings_only",
        (Edit(CELERY_APP, "broker=settings.jobs.broker,", 'broker="redis://localhost:6379/0",'),),
    ),
    Breakage(
        "database-unreachable",
        "IV",
        "releases while the database is down",
        "check",
        "DATABASE_URL",
        env=(("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/unreachable"),),
        status=os.EX_UNAVAILABLE,
    ),
    Breakage(
        "broker-unreachable",
        "IV",
        "releases while Redis is down",
        "check",
        "REDIS_URL",
        env=(("REDIS_URL", "redis://127.0.0.1:1/0"),),
        status=os.EX_UNAVAILABLE,
    ),
    # --- V. Build, release, run
    Breakage(
        "migrate-on-boot",
        "V",
        "migrates when the web process starts, to save a deploy step",
        "test",
        "test_factor_05_web_never_migrates_and_reports_the_release_it_runs",
        (
            Edit(
                APP,
                "from ..schema import SchemaExpectation\n",
                "from ..schema import SchemaExpectation, upgrade_to_head\n",
            ),
            Edit(
                APP,
                "    return create_app(settings)\n",
                "    upgrade_to_head(settings)\n    return create_app(settings)\n",
            ),
        ),
    ),
    Breakage(
        "release-skips-check",
        "V",
        "makes the Procfile's release step plain `migrate`",
        "test",
        "test_factor_05_release_step_audits_then_migrates_as_the_procfile_says",
        (Edit("Procfile", "release: SLUG release\n", "release: SLUG migrate\n"),),
    ),
    # --- VI. Processes
    Breakage(
        "first-page-cached-in-memory",
        "VI",
        "keeps the first page of /items in process memory",
        "test",
        "test_factor_06_processes_two_web_processes_see_the_same_items",
        (
            Edit(
                ITEMS,
                "    query = ListQuery().load(request.query_params)\n",
                "    query = ListQuery().load(request.query_params)\n"
                '    if query["after"] == 0 and query["limit"] in FIRST_PAGES:\n'
                '        return ORJSONResponse(FIRST_PAGES[query["limit"]])\n',
            ),
            Edit(
                ITEMS,
                '    return ORJSONResponse({"items": [item_json(item) for item in items], '
                '"next": next_page})\n',
                '    page = {"items": [item_json(item) for item in items], "next": next_page}\n'
                '    if query["after"] == 0:\n        FIRST_PAGES[query["limit"]] = page\n'
                "    return ORJSONResponse(page)\n\n\nFIRST_PAGES: dict[int, dict[str, Any]] = {}\n",
            ),
        ),
    ),
    Breakage(
        "sqlite-database",
        "VI",
        "deploys with the demo's DATABASE_URL=sqlite:///app.sqlite3",
        "check",
        "DATABASE_URL",
        env=(("DATABASE_URL", "sqlite:///app.sqlite3"),),
        status=os.EX_CONFIG,
    ),
    Breakage(
        "sqlite-queue",
        "VI",
        "deploys with the demo's BROKER_URL=sqla+sqlite:///broker.sqlite3",
        "check",
        "BROKER_URL",
        env=(("BROKER_URL", "sqla+sqlite:///broker.sqlite3"),),
        status=os.EX_CONFIG,
    ),
    # --- VII. Port binding
    Breakage(
        "fixed-port",
        "VII",
        "binds port 8000 whatever $PORT says",
        "test",
        "test_factor_07_port_binding_web_serves_http_itself_on_port",
        (Edit(CLI, "        port=settings.web.port,\n", "        port=8000,\n"),),
    ),
    Breakage(
        "trust-every-proxy",
        "VII",
        "sets FORWARDED_ALLOW_IPS=* behind a load balancer others can bypass",
        "check",
        "FORWARDED_ALLOW_IPS",
        env=(("FORWARDED_ALLOW_IPS", "*"),),
        status=os.EX_CONFIG,
    ),
    # --- VIII. Concurrency
    Breakage(
        "worker-pid-file",
        "VIII",
        "gives the worker a PID file, as old init scripts wanted",
        "test",
        "test_factor_06_processes_no_process_type_writes_a_file",
        (
            Edit(
                WORKER,
                "        concurrency=settings.jobs.concurrency,\n",
                '        concurrency=settings.jobs.concurrency,\n        pidfile="worker.pid",\n',
            ),
        ),
    ),
    Breakage(
        "one-web-process",
        "VIII",
        "pins uvicorn to one worker process",
        "test",
        "test_factor_08_concurrency_web_runs_web_concurrency_processes_in_the_foreground",
        (Edit(CLI, "        workers=settings.web.concurrency,\n", "        workers=1,\n"),),
    ),
    # --- IX. Disposability
    Breakage(
        "no-graceful-drain",
        "IX",
        "stops the web process without draining, for faster deploys",
        "test",
        "test_factor_09_disposability_sigterm_lets_an_in_flight_request_finish",
        (
            Edit(
                CLI,
                "        timeout_graceful_shutdown=settings.graceful_timeout,\n",
                "        timeout_graceful_shutdown=0,\n",
            ),
        ),
    ),
    # --- X. Dev/prod parity
    Breakage(
        "ci-on-sqlite",
        "X",
        "runs CI on SQLite to skip the service containers",
        "test",
        "test_factor_10_parity_tests_and_ci_use_the_backing_services_production_uses",
        (
            Edit(
                ".github/workflows/ci.yml",
                "      DATABASE_URL: postgresql://postgres@127.0.0.1:5432/postgres\n",
                "      DATABASE_URL: sqlite:///ci.sqlite3\n",
            ),
        ),
    ),
    # --- XI. Logs
    Breakage(
        "log-file",
        "XI",
        "adds a log file beside stdout, to grep later",
        "ruff",
        "TID251",
        (
            Edit(
                "src/PKG/logs.py",
                "    root.addHandler(handler)\n",
                '    root.addHandler(handler)\n    root.addHandler(logging.FileHandler("service.log"))\n',
            ),
        ),
    ),
    Breakage(
        "print-debugging",
        "XI",
        "leaves a print() in the create handler",
        "test",
        "test_factor_11_logs_every_stdout_line_is_one_json_event",
        (
            Edit(
                ITEMS,
                "    await resources.jobs.publish(job)\n",
                '    await resources.jobs.publish(job)\n    print(f"created item {item.id}")\n',
            ),
        ),
    ),
    # --- XII. Admin processes
    Breakage(
        "loose-admin-script",
        "XII",
        "adds scripts/backfill.py with its own database URL argument",
        "test",
        "test_factor_12_admin_tasks_are_subcommands_of_the_one_console_script",
        (
            Edit(
                "scripts/backfill.py",
                None,
                "import sys\n\nfrom sqlalchemy import create_engine, text\n\n"
                "with create_engine(sys.argv[1]).begin() as connection:\n"
                "    connection.execute(text(\"UPDATE items SET status = 'pending' \"\n"
                '        "WHERE digest IS NULL"))\n',
            ),
        ),
    ),
]

# The second catalogue: breakages written down before the guards that catch them, each a different
# instance of its factor's class than the first catalogue's, so together they show that a guard covers
# the class of a mistake rather than the instances it was written for.
SECOND_CATALOGUE: list[Breakage] = [
    # --- I. Codebase
    Breakage(
        "per-deploy-config-folder",
        "I",
        "keeps production's pool sizes in config/production.toml",
        "test",
        "test_factor_01_codebase_has_no_per_deploy_config_files_or_deploy_name_switches",
        (Edit("config/production.toml", None, "[database]\npool_size = 20\nmax_overflow = 5\n"),),
    ),
    Breakage(
        "staging-overlay",
        "I",
        "adds a kustomize overlay for staging beside the base",
        "test",
        "test_factor_01_codebase_has_no_per_deploy_config_files_or_deploy_name_switches",
        (
            Edit(
                "deploy/kubernetes/overlays/staging/kustomization.yaml",
                None,
                "resources:\n  - ../..\nnamespace: staging\nreplicas:\n  - name: SLUG-web\n    count: 1\n",
            ),
        ),
    ),
    Breakage(
        "release-prefix-switch",
        "I",
        "shows debug pages unless the release id starts with prod-",
        "test",
        "test_factor_01_codebase_has_no_per_deploy_config_files_or_deploy_name_switches",
        (
            Edit(
                APP,
                "        lifespan=lifespan,\n",
                '        lifespan=lifespan,\n        debug=not settings.release_id.startswith("prod-"),\n',
            ),
        ),
    ),
    Breakage(
        "deploy-name-match",
        "I",
        "matches the release id's prefix against deploy names to turn debug pages on",
        "test",
        "test_factor_01_codebase_has_no_per_deploy_config_files_or_deploy_name_switches",
        (
            Edit(
                APP,
                "    return Starlette(\n",
                '    match settings.release_id.split("-")[0]:\n'
                '        case "staging" | "dev":\n'
                "            debug = True\n"
                "        case _:\n"
                "            debug = False\n"
                "    return Starlette(\n        debug=debug,\n",
            ),
        ),
    ),
    # --- II. Dependencies
    Breakage(
        "system-library-lookup",
        "II",
        "loads the host's libjpeg with ctypes at start-up, to read image sizes without a package",
        "test",
        "test_factor_02_dependencies_no_process_type_starts_a_program_or_loads_a_system_library",
        (
            Edit(APP, "import gc\n", "import ctypes\nimport gc\n"),
            Edit(
                APP,
                "    settings = load_settings()\n",
                '    settings = load_settings()\n    JPEG.append(ctypes.CDLL("libjpeg.so.62"))\n',
            ),
            Edit(APP, "PROBE_PATHS = ", "JPEG: list[ctypes.CDLL] = []\nPROBE_PATHS = "),
        ),
    ),
    Breakage(
        "shell-out-from-async-code",
        "II",
        "renders receipts as PDF by piping HTML through wkhtmltopdf from async code",
        "ruff",
        "TID251",
        (
            Edit(
                "src/PKG/receipts.py",
                None,
                "import asyncio\n\n\n"
                "async def receipt_pdf(html: str) -> bytes:\n"
                "    process = await asyncio.create_subprocess_exec(\n"
                '        "wkhtmltopdf",\n'
                '        "-",\n'
                '        "-",\n'
                "        stdin=asyncio.subprocess.PIPE,\n"
                "        stdout=asyncio.subprocess.PIPE,\n"
                "    )\n"
                "    pdf, _ = await process.communicate(html.encode())\n"
                "    return pdf\n",
            ),
        ),
    ),
    Breakage(
        "dbshell-execs-psql",
        "II",
        "adds a `dbshell` command that replaces itself with psql, as Django's does",
        "ruff",
        "TID251",
        (
            Edit(
                CLI,
                "@main.command()\ndef shell() -> None:\n",
                "@main.command()\n"
                "def dbshell() -> None:\n"
                '    """psql on the service\'s database."""\n'
                "    settings = load_or_exit()\n"
                "    from .database import sync_url\n\n"
                '    url = sync_url(settings.database.url).set(drivername="postgresql")\n'
                '    os.execvp("psql", ["psql", url.render_as_string(hide_password=False)])\n\n\n'
                "@main.command()\ndef shell() -> None:\n",
            ),
        ),
    ),
    Breakage(
        "platform-string-at-start",
        "II",
        "logs platform.platform() when web starts, which runs `uname -p`",
        "ruff",
        "TID251",
        (
            Edit(CLI, "import os\nimport signal\n", "import os\nimport platform\nimport signal\n"),
            Edit(
                CLI,
                "    settings = load_or_exit()\n    if settings.web.concurrency",
                '    settings = load_or_exit()\n    logger.info("Serving on %s", platform.platform())\n'
                "    if settings.web.concurrency",
            ),
        ),
    ),
    Breakage(
        "floor-raised-without-lock",
        "II",
        "moves to Starlette 2 in pyproject.toml and forgets `make lock`",
        "test",
        "test_factor_02_dependencies_are_declared_locked_with_hashes_and_installed_as_locked",
        (Edit("pyproject.toml", '    "starlette>=1.0,<2",\n', '    "starlette>=2,<3",\n'),),
    ),
    Breakage(
        "marker-floor-raised-without-lock",
        "II",
        "raises uvloop's floor, on the platforms its marker names, and forgets `make lock`",
        "test",
        "test_factor_02_dependencies_are_declared_locked_with_hashes_and_installed_as_locked",
        (
            Edit(
                "pyproject.toml",
                '    "uvloop>=0.21; sys_platform',
                '    "uvloop>=0.24; sys_platform',
            ),
        ),
    ),
    Breakage(
        "heroku-build-isolated",
        "II",
        "simplifies bin/post_compile back to a plain `pip install --no-deps .`, which fetches hatchling",
        "test",
        "test_factor_02_dependencies_every_build_installs_the_hashed_locks_and_the_project_only",
        (
            Edit(
                "bin/post_compile",
                "python -m pip install --no-cache-dir --require-hashes -r requirements-build.txt\n"
                "python -m pip install --no-cache-dir --no-deps --no-build-isolation .\n",
                "python -m pip install --no-cache-dir --no-deps .\n",
            ),
        ),
    ),
    Breakage(
        "apm-agent-unpinned-in-image",
        "II",
        "adds the New Relic agent to the image's venv with a bare `pip install newrelic`",
        "test",
        "test_factor_02_dependencies_every_build_installs_the_hashed_locks_and_the_project_only",
        (
            Edit(
                "Dockerfile",
                "    && /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl\n",
                "    && /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl \\\n"
                "    && /opt/venv/bin/pip install --no-cache-dir newrelic\n",
            ),
        ),
    ),
    Breakage(
        "ci-upgrades-pip",
        "II",
        "upgrades pip in CI before `make install`, to the newest release of the day",
        "test",
        "test_factor_02_dependencies_every_build_installs_the_hashed_locks_and_the_project_only",
        (
            Edit(
                ".github/workflows/ci.yml",
                "      - name: Install (the hashed lock, then this service)\n",
                "      - name: Upgrade pip\n"
                "        run: python -m pip install --upgrade pip\n"
                "      - name: Install (the hashed lock, then this service)\n",
            ),
        ),
    ),
    # --- III. Config
    Breakage(
        "settings-loaded-at-import",
        "III",
        "loads the settings once, when web/app.py is imported, instead of in the factory",
        "test",
        "test_factor_03_config_is_read_when_a_process_starts_never_at_import",
        (
            Edit(
                APP,
                'PROBE_PATHS = frozenset({"/healthz", "/readyz"})\n',
                'PROBE_PATHS = frozenset({"/healthz", "/readyz"})\n'
                "# Read once per process, not on every call of the factory.\n"
                "SETTINGS = load_settings()\n",
            ),
            Edit(APP, "    settings = load_settings()\n", "    settings = SETTINGS\n"),
        ),
    ),
    Breakage(
        "feature-flag-at-import",
        "III",
        "reads a feature flag with environs beside settings.py's constants, as the module is imported",
        "test",
        "test_factor_03_config_is_read_when_a_process_starts_never_at_import",
        (
            Edit(
                SETTINGS,
                'LogFormat = Literal["json", "console"]\n',
                'LogFormat = Literal["json", "console"]\n'
                "# Bulk import of items, off until a deploy turns it on.\n"
                'BULK_IMPORT = Env().bool("FEATURE_BULK_IMPORT", False)\n',
            ),
        ),
    ),
    Breakage(
        "dotenv-overrides-exported",
        "III",
        "loads .env in settings.py with python-dotenv's load_dotenv(override=True), so an edited .env wins",
        "test",
        "test_factor_03_config_exported_variables_win_over_dotenv_and_no_parent_dotenv_is_read",
        (
            Edit(
                SETTINGS,
                "from environs import Env, EnvValidationError\n",
                "from dotenv import load_dotenv\nfrom environs import Env, EnvValidationError\n",
            ),
            Edit(
                SETTINGS,
                "        env.read_env(dotenv, recurse=False, override=False)\n",
                "        load_dotenv(dotenv, override=True)\n",
            ),
        ),
    ),
    Breakage(
        "dotenv-searched-upwards",
        "III",
        "drops the is_file() check and read_env's keywords, so its default search of parent folders applies",
        "test",
        "test_factor_03_config_exported_variables_win_over_dotenv_and_no_parent_dotenv_is_read",
        (
            Edit(
                SETTINGS,
                "    if dotenv is not None and dotenv.is_file():\n"
                "        env.read_env(dotenv, recurse=False, override=False)\n",
                "    if dotenv is not None:\n        env.read_env(dotenv)\n",
            ),
        ),
    ),
    Breakage(
        "load-dotenv-in-cli",
        "III",
        "loads .env with python-dotenv, overriding, before every command of the console script",
        "ruff",
        "TID251",
        (
            Edit(CLI, "import click\n", "import click\nfrom dotenv import load_dotenv\n"),
            Edit(
                CLI,
                '    """Run one of the service\'s process types or admin commands."""\n',
                '    """Run one of the service\'s process types or admin commands."""\n'
                "    load_dotenv(override=True)\n",
            ),
        ),
    ),
    # --- IV. Backing services
    Breakage(
        "audit-queue-at-fixed-address",
        "IV",
        "pushes each done item onto the ops team's audit list in Redis, found by host and port",
        "test",
        "test_factor_04_backing_services_every_connection_goes_where_a_url_setting_points",
        (
            Edit(WORKER, "import celery.worker.state\n", "import celery.worker.state\nimport redis\n"),
            Edit(
                WORKER,
                '        logger.info("Item %d: %s", item_id, outcome, extra={"item_id": item_id})\n',
                '        logger.info("Item %d: %s", item_id, outcome, extra={"item_id": item_id})\n'
                '        redis.Redis(host="127.0.0.1", port=6379).lpush("audit", item_id)\n',
            ),
        ),
    ),
    Breakage(
        "reporting-engine-from-parts",
        "IV",
        "counts done items on a reporting engine whose URL is assembled from a host and a port",
        "test",
        "test_factor_04_backing_services_every_connection_goes_where_a_url_setting_points",
        (
            Edit(
                WORKER,
                "from sqlalchemy import Connection, Engine\n",
                "from sqlalchemy import URL, Connection, Engine, create_engine, text\n",
            ),
            Edit(
                WORKER,
                "    use_service_logging(settings)\n    announce_in_log_format()\n",
                "    use_service_logging(settings)\n    announce_in_log_format()\n"
                "    reports = create_engine(\n"
                '        URL.create("postgresql+psycopg", "postgres", host="127.0.0.1", port=5432, '
                'database="postgres")\n'
                "    )\n"
                "    signals.worker_ready.connect("
                'lambda **_: reports.connect().execute(text("SELECT 1")), weak=False)\n',
            ),
        ),
    ),
    # --- V. Build, release, run
    Breakage(
        "worker-creates-tables",
        "V",
        "creates any missing tables when the worker starts, so a fresh database just works",
        "test",
        "test_factor_05_no_long_running_process_changes_the_schema",
        (
            Edit(
                WORKER,
                "from ..models import Item, OutboxJob\n",
                "from ..models import Base, Item, OutboxJob\n",
            ),
            Edit(
                WORKER,
                "    register_jobs(\n",
                "    Base.metadata.create_all(engine)\n    register_jobs(\n",
            ),
        ),
    ),
    Breakage(
        "clock-migrates-on-start",
        "V",
        "upgrades the schema when the clock starts, since exactly one clock runs",
        "test",
        "test_factor_05_no_long_running_process_changes_the_schema",
        (
            Edit(
                WORKER,
                "from ..models import Item, OutboxJob\n",
                "from ..models import Item, OutboxJob\nfrom ..schema import upgrade_to_head\n",
            ),
            Edit(
                WORKER,
                "    relay = OutboxRelay(engine, app)\n",
                "    upgrade_to_head(settings)\n    relay = OutboxRelay(engine, app)\n",
            ),
        ),
    ),
    Breakage(
        "settings-in-image-env",
        "V",
        "sets production's WEB_CONCURRENCY and LOG_LEVEL in the image, sized for its machines",
        "test",
        "test_factor_05_build_puts_no_config_in_the_image",
        (Edit("Dockerfile", "EXPOSE 8000\n", "EXPOSE 8000\nENV WEB_CONCURRENCY=4 LOG_LEVEL=DEBUG\n"),),
    ),
    Breakage(
        "dotenv-in-image",
        "V",
        "copies .env.example into the image as .env, so a bare `docker run` starts",
        "test",
        "test_factor_05_build_puts_no_config_in_the_image",
        (
            Edit(".dockerignore", "**/.env.*\n", "**/.env.*\n!.env.example\n"),
            Edit("Dockerfile", "WORKDIR /app\n", "WORKDIR /app\nCOPY .env.example .env\n"),
        ),
    ),
    Breakage(
        "deny-list-dockerignore",
        "V",
        "swaps the allow-list .dockerignore for the usual deny-list, which forgets .env",
        "test",
        "test_factor_05_build_puts_no_config_in_the_image",
        (Edit(".dockerignore", None, ".git\n.venv\n**/__pycache__\n**/.*_cache\n"),),
    ),
    Breakage(
        "migrate-in-image-build",
        "V",
        "migrates during `docker build`, the database's URL and the secret passed as build arguments",
        "test",
        "test_factor_05_build_puts_no_config_in_the_image",
        (
            Edit(
                "Dockerfile",
                "EXPOSE 8000\n",
                "EXPOSE 8000\n"
                "# Each image is built against its database, so it starts on the schema it expects.\n"
                "ARG DATABASE_URL\nARG REDIS_URL\nARG SECRET_KEY\nRUN SLUG migrate\n",
            ),
        ),
    ),
    # --- VI. Processes
    Breakage(
        "item-reads-cached",
        "VI",
        "keeps each item it has served in process memory, to spare the database",
        "test",
        "test_factor_06_processes_two_web_processes_see_the_same_items",
        (
            Edit(
                ITEMS,
                '    item_id = item_id_of(request.path_params["item_id"])\n',
                '    item_id = item_id_of(request.path_params["item_id"])\n'
                "    if item_id in SERVED:\n        return ORJSONResponse(SERVED[item_id])\n",
            ),
            Edit(
                ITEMS,
                "    return ORJSONResponse(item_json(item))\n",
                "    SERVED[item_id] = item_json(item)\n    return ORJSONResponse(SERVED[item_id])\n\n\n"
                "SERVED: dict[int, dict[str, Any]] = {}\n",
            ),
        ),
    ),
    Breakage(
        "digests-exported-to-local-disk",
        "VI",
        "writes each item's digest to /tmp for a nightly rsync",
        "test",
        "test_factor_06_processes_no_process_type_writes_a_file",
        (
            Edit(
                WORKER, "import threading\n", "import tempfile\nimport threading\nfrom pathlib import Path\n"
            ),
            Edit(
                WORKER,
                '        logger.info("Item %d: %s", item_id, outcome, extra={"item_id": item_id})\n',
                '        logger.info("Item %d: %s", item_id, outcome, extra={"item_id": item_id})\n'
                '        exported = Path(tempfile.gettempdir(), "digests")\n'
                "        exported.mkdir(exist_ok=True)\n"
                '        (exported / f"{item_id}.txt").write_text(outcome)\n',
            ),
        ),
    ),
    # --- VII. Port binding
    Breakage(
        "loopback-only-web",
        "VII",
        "serves on 127.0.0.1 only, to quiet the linters' warning about binding every interface",
        "test",
        "test_factor_07_port_binding_web_is_reachable_on_every_interface",
        (Edit(CLI, '        host="0.0.0.0",  # noqa: S104  # nosec B104\n', '        host="127.0.0.1",\n'),),
    ),
    Breakage(
        "web-host-setting",
        "VII",
        "adds a WEB_HOST setting whose default is the loopback address",
        "test",
        "test_factor_07_port_binding_web_is_reachable_on_every_interface",
        (
            Edit(
                SETTINGS,
                '    forwarded_allow_ips: str = variable("FORWARDED_ALLOW_IPS")\n',
                '    forwarded_allow_ips: str = variable("FORWARDED_ALLOW_IPS")\n'
                '    host: str = variable("WEB_HOST")\n',
            ),
            Edit(
                SETTINGS,
                '            forwarded_allow_ips=env.str("FORWARDED_ALLOW_IPS", "127.0.0.1"),\n',
                '            forwarded_allow_ips=env.str("FORWARDED_ALLOW_IPS", "127.0.0.1"),\n'
                '            host=env.str("WEB_HOST", "127.0.0.1"),\n',
            ),
            Edit(
                CLI,
                '        host="0.0.0.0",  # noqa: S104  # nosec B104\n',
                "        host=settings.web.host,\n",
            ),
        ),
    ),
    # --- VIII. Concurrency
    Breakage(
        "clock-pid-file",
        "VIII",
        "gives the clock a PID file, so a second clock refuses to start",
        "test",
        "test_factor_06_processes_no_process_type_writes_a_file",
        (
            Edit(
                WORKER,
                "        app.Beat(loglevel=logging.getLevelName(settings.logs.level), quiet=True).run()\n",
                "        app.Beat(\n"
                "            loglevel=logging.getLevelName(settings.logs.level),\n"
                "            quiet=True,\n"
                '            pidfile="clock.pid",\n'
                "        ).run()\n",
            ),
        ),
    ),
    Breakage(
        "web-pid-for-a-sidecar",
        "VIII",
        "writes the web process's PID under /tmp for a monitoring sidecar",
        "test",
        "test_factor_06_processes_no_process_type_writes_a_file",
        (
            Edit(APP, "import gc\n", "import gc\nimport os\nimport tempfile\n"),
            Edit(
                APP,
                "from contextlib import AsyncExitStack, asynccontextmanager\n",
                "from contextlib import AsyncExitStack, asynccontextmanager\nfrom pathlib import Path\n",
            ),
            Edit(
                APP,
                "            gc.freeze()\n",
                '            Path(tempfile.gettempdir(), "web.pid").write_text(str(os.getpid()))\n'
                "            gc.freeze()\n",
            ),
        ),
    ),
    Breakage(
        "clock-detaches",
        "VIII",
        "detaches the clock from its terminal, as a daemon, so one container can start it beside the web",
        "test",
        "test_factor_08_concurrency_no_process_type_daemonises",
        (
            Edit(
                WORKER,
                "    app = create_celery(settings)\n    use_service_logging(settings)\n"
                "    propagate_request_context()\n"
                "    telemetry.start_tracing(settings)  # drop: telemetry\n",
                "    # The parent returns to the shell at once; the clock goes on in the child.\n"
                "    if os.fork():\n"
                "        os._exit(0)\n"
                "    os.setsid()\n"
                "    app = create_celery(settings)\n    use_service_logging(settings)\n"
                "    propagate_request_context()\n"
                "    telemetry.start_tracing(settings)  # drop: telemetry\n",
            ),
        ),
    ),
    # --- IX. Disposability
    Breakage(
        "ack-jobs-on-receipt",
        "IX",
        "acknowledges each job as it starts, so that a crash never runs a job twice",
        "test",
        "test_factor_09_disposability_job_in_hand_of_a_killed_worker_is_done_later",
        (Edit(CELERY_APP, "        task_acks_late=True,\n", "        task_acks_late=False,\n"),),
    ),
    Breakage(
        "no-requeue-on-worker-lost",
        "IX",
        "stops requeueing the job of a killed pool process, so that a job that kills its process cannot loop",
        "test",
        "test_factor_09_disposability_job_in_hand_of_a_killed_worker_is_done_later",
        (
            Edit(
                CELERY_APP,
                "        task_reject_on_worker_lost=True,\n",
                "        task_reject_on_worker_lost=False,\n",
            ),
        ),
    ),
    Breakage(
        "twelve-hour-visibility-timeout",
        "IX",
        "sets Redis's visibility_timeout to 12 hours, as Celery's docs suggest for long jobs",
        "test",
        "test_factor_09_disposability_job_in_hand_of_a_killed_worker_is_done_later",
        (
            Edit(
                CELERY_APP,
                '        "visibility_timeout": settings.jobs.time_limit * 2,\n',
                '        "visibility_timeout": 43200,\n',
            ),
        ),
    ),
    Breakage(
        "job-swallows-the-stop",
        "IX",
        "wraps each item's job in try/except BaseException, so that one bad item never kills a pool process",
        "test",
        "test_factor_09_disposability_stopped_worker_leaves_no_job_behind",
        (
            Edit(
                WORKER,
                "def use_service_logging(",
                "def never_crash(job: Any) -> Any:\n"
                '    """Log whatever a job raises, so one bad item never takes its pool process down."""\n'
                "\n"
                "    def guarded(*args: Any) -> None:\n"
                "        try:\n"
                "            job(*args)\n"
                "        except BaseException:\n"
                '            logger.exception("Job %s%r failed", job.__name__, args)\n'
                "\n"
                "    return guarded\n"
                "\n\n"
                "def use_service_logging(",
            ),
            Edit(
                WORKER,
                "(name=tasks.PROCESS_ITEM, **RETRIED_WHILE_DATABASE_IS_DOWN)(process_item)\n",
                "(name=tasks.PROCESS_ITEM, **RETRIED_WHILE_DATABASE_IS_DOWN)(never_crash(process_item))\n",
            ),
        ),
    ),
    Breakage(
        "prefetch-in-bulk",
        "IX",
        "reserves 64 jobs per pool process, to save round trips to Redis",
        "test",
        "test_factor_09_disposability_stopped_worker_leaves_no_job_behind",
        (
            Edit(
                CELERY_APP,
                "        worker_prefetch_multiplier=1,\n",
                "        worker_prefetch_multiplier=64,\n",
            ),
        ),
    ),
    # --- X. Dev/prod parity
    Breakage(
        "compose-postgres-17",
        "X",
        "moves compose.yaml to PostgreSQL 17 alone, ahead of CI and production",
        "test",
        "test_factor_10_parity_every_file_names_the_same_backing_services_and_major_versions",
        (Edit("compose.yaml", "    image: postgres:16\n", "    image: postgres:17\n"),),
    ),
    Breakage(
        "ci-redis-6",
        "X",
        "runs CI on the Redis 6 its runners had cached",
        "test",
        "test_factor_10_parity_every_file_names_the_same_backing_services_and_major_versions",
        (Edit(".github/workflows/ci.yml", "        image: redis:7\n", "        image: redis:6\n"),),
    ),
    Breakage(
        "heroku-postgres-15",
        "X",
        "pins Heroku Postgres to 15, the version of the database it came from",
        "test",
        "test_factor_10_parity_every_file_names_the_same_backing_services_and_major_versions",
        (Edit("app.json", '"options": { "version": "16" }', '"options": { "version": "15" }'),),
    ),
    Breakage(
        "readme-postgresql-15",
        "X",
        "documents PostgreSQL 15 in the README's deploy table",
        "test",
        "test_factor_10_parity_every_file_names_the_same_backing_services_and_major_versions",
        (Edit("README.md", "with PostgreSQL 16 and Redis 7", "with PostgreSQL 15 and Redis 7"),),
    ),
    # --- XI. Logs
    Breakage(
        "job-logger-on-stderr",
        "XI",
        "gives the jobs' logger a handler of its own, to see job lines apart",
        "test",
        "test_factor_11_logs_every_process_type_logs_to_stdout_only",
        (
            Edit(
                WORKER,
                "def register_jobs(app: Celery, engine: Engine, announce: Announce | None = None) -> None:\n",
                "def register_jobs(app: Celery, engine: Engine, announce: Announce | None = None) -> None:\n"
                "    logger.addHandler(logging.StreamHandler())\n",
            ),
        ),
    ),
    Breakage(
        "audit-trail-handler",
        "XI",
        "adds a handler of its own that appends each warning to an audit-trail file",
        "test",
        "test_factor_11_logs_every_process_type_logs_to_stdout_only",
        (
            Edit(
                "src/PKG/logs.py",
                "    root.addHandler(handler)\n",
                "    root.addHandler(handler)\n    root.addHandler(AuditTrail(logging.WARNING))\n",
            ),
            Edit(
                "src/PKG/logs.py",
                "def configure_logging(\n",
                "class AuditTrail(logging.Handler):\n"
                "    def emit(self, record: logging.LogRecord) -> None:\n"
                '        with open(os.path.join(tempfile.gettempdir(), "audit.log"), "a") as trail:\n'
                '            trail.write(self.format(record) + "\\n")\n\n\n'
                "def configure_logging(\n",
            ),
            Edit(
                "src/PKG/logs.py",
                "import logging\nimport sys\n",
                "import logging\nimport os\nimport sys\nimport tempfile\n",
            ),
        ),
    ),
    Breakage(
        "syslog-handler",
        "XI",
        "sends every record to the host's syslog as well, for the ops team's collector",
        "ruff",
        "TID251",
        (
            Edit("src/PKG/logs.py", "import logging\n", "import logging\nimport logging.handlers\n"),
            Edit(
                "src/PKG/logs.py",
                "    root.addHandler(handler)\n",
                "    root.addHandler(handler)\n"
                '    root.addHandler(logging.handlers.SysLogHandler(address="/dev/log"))\n',
            ),
        ),
    ),
    Breakage(
        "basic-config-log-file",
        "XI",
        "configures logging to tasks.log when the task module is imported, to read jobs apart",
        "ruff",
        "TID251",
        (
            Edit(TASKS, "import hashlib\n", "import hashlib\nimport logging\n"),
            Edit(
                TASKS,
                'PROCESS_ITEM = "items.process"\n',
                'PROCESS_ITEM = "items.process"\n'
                "# The jobs' own lines in a file of their own, to read one job's history in one place.\n"
                'logging.basicConfig(filename="tasks.log", level=logging.INFO)\n',
            ),
        ),
    ),
    # --- XII. Admin processes
    Breakage(
        "backfill-shell-script",
        "XII",
        "adds scripts/backfill.sh, which re-queues items with psql",
        "test",
        "test_factor_12_admin_tasks_are_subcommands_of_the_one_console_script",
        (
            Edit(
                "scripts/backfill.sh",
                None,
                "#!/usr/bin/env bash\n# Re-queue the items whose digest never came.\nset -euo pipefail\n"
                'psql "$DATABASE_URL" -c "UPDATE items SET status = \'pending\' WHERE digest IS NULL"\n',
            ),
        ),
    ),
    Breakage(
        "maintenance-main-block",
        "XII",
        "adds a module that purges old items when run with `python -m`",
        "test",
        "test_factor_12_admin_tasks_are_subcommands_of_the_one_console_script",
        (
            Edit(
                "src/PKG/maintenance.py",
                None,
                '"""Purge items older than a year: `python -m PKG.maintenance`."""\n\n'
                "from datetime import UTC, datetime, timedelta\n\n"
                "from sqlalchemy import delete\nfrom sqlalchemy.orm import Session\n\n"
                "from .database import create_sync_database_engine\nfrom .models import Item\n"
                "from .settings import load_settings\n\n\n"
                "def purge_old_items(session: Session) -> None:\n"
                "    cutoff = datetime.now(UTC) - timedelta(days=365)\n"
                "    session.execute(delete(Item).where(Item.created_at < cutoff))\n\n\n"
                'if __name__ == "__main__":\n'
                "    with Session(create_sync_database_engine(load_settings())) as session:\n"
                "        purge_old_items(session)\n"
                "        session.commit()\n",
            ),
        ),
    ),
    Breakage(
        "executable-reindex",
        "XII",
        "adds an executable bin/reindex, a Python script with no extension, for cron",
        "test",
        "test_factor_12_admin_tasks_are_subcommands_of_the_one_console_script",
        (
            Edit(
                "bin/reindex",
                None,
                "#!/usr/bin/env python3\n"
                '"""Recompute every item\'s digest after a change of hash function."""\n\n'
                "from sqlalchemy import select\nfrom sqlalchemy.orm import Session\n\n"
                "from PKG.database import create_sync_database_engine\nfrom PKG.models import Item\n"
                "from PKG.settings import load_settings\nfrom PKG.tasks import process_item\n\n"
                "with Session(create_sync_database_engine(load_settings())) as session:\n"
                "    for item_id in session.scalars(select(Item.id)):\n"
                "        process_item(session, item_id)\n"
                "    session.commit()\n",
                mode=0o755,
            ),
        ),
    ),
]

BREAKAGES = FIRST_CATALOGUE + SECOND_CATALOGUE

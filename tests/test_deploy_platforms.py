"""The other deploy targets of a bake: compose.yaml, Heroku (app.json, the Procfile, bin/post_compile,
.python-version) and the CI workflow.

Fast and offline. check-jsonschema, from the template's tool venv, checks the workflow and compose.yaml
against its vendored schemas. Beyond syntax: the Procfile declares every process type and compose runs its
commands, the grace periods end before Heroku's and compose's SIGKILL, one clock runs, the same Python is
pinned everywhere, and no secret is committed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from deploy_support import (
    PROCESS_TYPES,
    SECRET_VARIABLES,
    VALIDATOR_TIMEOUT,
    compose,
    compose_argv,
    dockerfile_stages,
    graceful_timeout_default,
    load_yaml,
    procfile,
)
from support import TOOLS_BIN, Bake, Baker, explain, run, successful_bake

DEPLOY_FILES = [
    "Dockerfile",
    ".dockerignore",
    "compose.yaml",
    "app.json",
    "Procfile",
    ".python-version",
    "bin/post_compile",
    ".github/workflows/ci.yml",
    "deploy/kubernetes/kustomization.yaml",
    "deploy/kubernetes/configmap.yaml",
    "deploy/kubernetes/service.yaml",
    "deploy/kubernetes/release-job.yaml",
    "deploy/kubernetes/web-deployment.yaml",
    "deploy/kubernetes/worker-deployment.yaml",
    "deploy/kubernetes/clock-deployment.yaml",
]
# Heroku sends SIGKILL this long after SIGTERM, and it cannot be changed.
HEROKU_KILL_AFTER = 30


# --- Reading the artifacts ---------------------------------------------------------------------------------


def app_json(bake: Bake) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((bake.project / "app.json").read_text(encoding="utf-8"))
    return document


def workflow(bake: Bake) -> dict[Any, Any]:
    """The CI workflow. YAML 1.1 (PyYAML) reads its key `on` as True: it is stored under "on" here."""
    document: dict[Any, Any] = load_yaml(bake.project / ".github/workflows/ci.yml")
    if True in document:
        document["on"] = document.pop(True)
    return document


def seconds(duration: str | int) -> float:
    """A compose duration (`30s`, `1m30s`, `1500ms`) in seconds."""
    if isinstance(duration, int):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    assert "".join(amount + unit for amount, unit in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(amount) * units[unit] for amount, unit in parts)


# --- Every artifact, and the validator ---------------------------------------------------------------------


@pytest.mark.parametrize("path", DEPLOY_FILES)
def test_bake_contains_every_deploy_artifact(default_bake: Bake, path: str) -> None:
    assert (default_bake.project / path).is_file()


@pytest.mark.parametrize(
    ("path", "schema"),
    [(".github/workflows/ci.yml", "vendor.github-workflows"), ("compose.yaml", "vendor.compose-spec")],
)
def test_file_matches_its_published_schema(any_bake: Bake, path: str, schema: str) -> None:
    # The vendored copy of the schema: check-jsonschema fetches nothing.
    process = run(
        [TOOLS_BIN / "check-jsonschema", "--builtin-schema", schema, path],
        cwd=any_bake.project,
        timeout=VALIDATOR_TIMEOUT,
    )
    assert process.returncode == 0, explain(process)


# --- The Procfile's commands -------------------------------------------------------------------------------


def test_procfile_declares_every_process_type_as_a_subcommand_of_the_console_script(any_bake: Bake) -> None:
    # Each process type is the subcommand of its name; `release` runs `check`, then `migrate`.
    assert procfile(any_bake) == {process: [any_bake.slug, process] for process in PROCESS_TYPES}


@pytest.mark.parametrize("process", PROCESS_TYPES)
def test_compose_runs_the_procfile_command(any_bake: Bake, process: str) -> None:
    service = compose(any_bake)["services"][process]
    assert compose_argv(any_bake, service) == procfile(any_bake)[process]


# --- Grace periods: every stopping process finishes before SIGKILL -----------------------------------------


def test_graceful_timeout_fits_inside_heroku_kill_deadline(default_bake: Bake) -> None:
    env = app_json(default_bake)["env"]
    graceful = int(env.get("GRACEFUL_TIMEOUT", {}).get("value", graceful_timeout_default(default_bake)))
    assert graceful < HEROKU_KILL_AFTER


@pytest.mark.parametrize("process", ["web", "worker", "clock"])
def test_compose_stop_grace_period_exceeds_the_graceful_timeout(default_bake: Bake, process: str) -> None:
    service = compose(default_bake)["services"][process]
    graceful = int(service["environment"].get("GRACEFUL_TIMEOUT", graceful_timeout_default(default_bake)))
    # Docker's own default (10 s) would kill a draining process.
    assert "stop_grace_period" in service
    assert seconds(service["stop_grace_period"]) > graceful


# --- Releases and formation --------------------------------------------------------------------------------


def test_exactly_one_clock_runs_on_heroku_and_compose(default_bake: Bake) -> None:
    assert app_json(default_bake)["formation"].get("clock", {"quantity": 1})["quantity"] == 1
    assert compose(default_bake)["services"]["clock"].get("deploy", {}).get("replicas", 1) == 1


@pytest.mark.parametrize("process", ["web", "worker", "clock"])
def test_compose_process_waits_for_healthy_backing_services_and_the_release(
    default_bake: Bake, process: str
) -> None:
    services = compose(default_bake)["services"]
    depends_on = services[process]["depends_on"]
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert depends_on["release"]["condition"] == "service_completed_successfully"
    assert services["release"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    assert "healthcheck" in services["redis"]


def test_compose_points_the_service_at_its_own_backing_services(default_bake: Bake) -> None:
    services = compose(default_bake)["services"]
    assert re.fullmatch(r"postgres:\d+", services["postgres"]["image"])
    assert services["redis"]["image"] == "redis:7"
    for process in PROCESS_TYPES:
        environment = services[process]["environment"]
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")


# --- Heroku ------------------------------------------------------------------------------------------------


def test_app_json_declares_what_heroku_needs(default_bake: Bake) -> None:
    app = app_json(default_bake)
    assert app["name"] == default_bake.answers["project_name"]
    assert app["description"] == default_bake.answers["description"]
    plans = [addon["plan"] if isinstance(addon, dict) else addon for addon in app["addons"]]
    assert any(plan.split(":")[0] == "heroku-postgresql" for plan in plans)
    assert any(plan.split(":")[0] == "heroku-redis" for plan in plans)
    formation = app["formation"]
    assert {"web", "worker"} <= set(formation)
    assert set(formation) <= set(procfile(default_bake)) - {"release"}
    assert all(process["quantity"] >= 1 and process["size"] for process in formation.values())
    assert app["env"]["SECRET_KEY"]["generator"] == "secret"
    assert app["env"]["LOG_FORMAT"]["value"] == "json"


def test_app_json_carries_any_accepted_description_intact(bake_into: Baker) -> None:
    # Quotes, ampersands and angle brackets are escaped as JSON, and read back unchanged.
    description = "It's <fine> & 100% {ok}, even with 'single quotes'."
    bake = successful_bake(bake_into(extra_context={"description": description}))
    assert app_json(bake)["description"] == description


def test_heroku_build_installs_the_service_itself(default_bake: Bake) -> None:
    # The buildpack installs requirements.txt, which has the dependencies only; the Procfile needs the script.
    hook = default_bake.project / "bin/post_compile"
    assert hook.stat().st_mode & 0o111, "bin/post_compile is not executable"
    text = hook.read_text()
    assert re.search(r"pip install .*--no-deps .*\.$", text, re.MULTILINE)


def test_same_python_everywhere(default_bake: Bake) -> None:
    python = (default_bake.project / ".python-version").read_text().strip()
    bases = [stage[0][1].split()[0] for stage in dockerfile_stages(default_bake)]
    assert bases == [f"python:{python}-slim"] * len(bases), "every stage on the same pinned Python"
    versions = [
        step["with"]["python-version"]
        for job in workflow(default_bake)["jobs"].values()
        for step in job["steps"]
        if "setup-python" in step.get("uses", "")
    ]
    assert versions == [python]


# --- No secret committed -----------------------------------------------------------------------------------


def test_compose_takes_the_secret_key_from_the_environment(default_bake: Bake) -> None:
    for process in PROCESS_TYPES:
        secret = compose(default_bake)["services"][process]["environment"]["SECRET_KEY"]
        # `${SECRET_KEY:?...}`: filled from the environment or .env, and compose stops when it is unset.
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", secret), secret


def test_app_json_generates_the_secret_key_instead_of_carrying_one(default_bake: Bake) -> None:
    env = app_json(default_bake)["env"]
    assert "value" not in env["SECRET_KEY"]
    assert not [name for name in SECRET_VARIABLES - {"SECRET_KEY"} if name in env]


# --- CI ----------------------------------------------------------------------------------------------------


def test_ci_lints_and_tests_against_service_containers_and_builds_the_image(default_bake: Bake) -> None:
    document = workflow(default_bake)
    assert {"push", "pull_request"} <= set(document["on"])
    jobs = document["jobs"]
    assert all(job.get("timeout-minutes") for job in jobs.values()), "every job needs timeout-minutes"
    runs = [step.get("run", "") for job in jobs.values() for step in job["steps"]]
    for command in ("make install", "make lint", "make test", "make fuzz", "make audit"):
        assert command in runs
    assert any(re.search(r"docker build .*--build-arg RELEASE_ID=", command) for command in runs)
    testing = next(job for job in jobs.values() if any(s.get("run") == "make test" for s in job["steps"]))
    # The fuzz run needs the database and the broker, like the tests.
    assert any(step.get("run") == "make fuzz" for step in testing["steps"])
    services = testing["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert all("--health-cmd" in service["options"] for service in services.values())
    assert testing["env"]["DATABASE_URL"].startswith("postgresql://")
    assert "127.0.0.1:5432" in testing["env"]["DATABASE_URL"]
    assert testing["env"]["REDIS_URL"].startswith("redis://127.0.0.1:6379")


def test_compose_serves_metrics_on_their_own_unpublished_port(default_bake: Bake) -> None:
    services = compose(default_bake)["services"]
    for process in ("web", "worker"):
        environment = services[process]["environment"]
        metrics_port = environment["METRICS_PORT"]
        assert environment["PROMETHEUS_MULTIPROC_DIR"]
        assert services[process]["expose"] == [metrics_port]
        published = [str(port).split(":")[0] for port in services[process].get("ports", [])]
        assert metrics_port not in published


def test_ci_audits_the_hashed_lock_and_the_source(default_bake: Bake) -> None:
    makefile = (default_bake.project / "Makefile").read_text()
    recipe = re.search(r"^audit-dependencies:\n\t(?P<command>.*)$", makefile, re.MULTILINE)
    assert recipe, "no audit-dependencies target"
    # Every locked file checked against its hash; a dependency that could not be checked fails the audit.
    for option in ("--require-hashes", "--strict", "-r requirements.txt"):
        assert option in recipe["command"]
    assert re.search(r"^audit-code:\n\t.*bandit .*src$", makefile, re.MULTILINE)
    assert re.search(r"^audit: audit-dependencies audit-code$", makefile, re.MULTILINE)


# --- Allowed hosts -----------------------------------------------------------------------------------------


def test_heroku_answers_to_its_herokuapp_name_without_allowing_every_host(default_bake: Bake) -> None:
    hosts = app_json(default_bake)["env"]["ALLOWED_HOSTS"]["value"].split(",")
    assert "*.herokuapp.com" in hosts
    assert "*" not in hosts

"""Each optional capability drops out by the service README's recipe, and what is left passes lint and tests.

Fast: the recipe and the marked lines agree in the default bake (every marker names a row of the README's
table, every listed path exists, each hub carries at most three plug-in lines per capability).
Slow: each row, and all of them at once (the core), on fresh bakes: delete, remove the marked lines,
`make format`, `make lock`, a fresh `make install`, then `make lint` and `make test`, one bake at a time.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from drops import drop, marker, recipe, tracked_files
from support import (
    TEMPLATE_DIR,
    TOOLS_BIN,
    Bake,
    assert_every_test_ran_and_passed,
    assert_succeeded,
    clean_environment,
    run,
)

# One bake per row of the README's table, and the core: every optional capability dropped.
DROPS = {
    "events": ("events",),
    "openapi": ("openapi",),
    "tracing": ("tracing",),
    "metrics": ("metrics",),
    "error-reports": ("error-reports",),
    "core": ("events", "openapi", "telemetry"),
}
# The modules through which a capability reaches the rest: the app factory, the worker runner, the command
# group, the settings.
HUBS = ("web/app.py", "jobs/worker.py", "cli.py", "settings.py")
MOST_PLUG_IN_LINES = 3
IMPORT = re.compile(r"^\s*(from \S+ )?import ")
PREPARE_TIMEOUT = 300
LINT_TIMEOUT = 600
TEST_TIMEOUT = 900


def marked_capabilities(project: Path) -> set[str]:
    found: set[str] = set()
    for path in tracked_files(project):
        try:
            found.update(re.findall(r"drop: ([a-z-]+)", path.read_text()))
        except UnicodeDecodeError:
            continue
    return found


def test_every_marked_line_names_a_capability_of_the_readmes_recipe(default_bake: Bake) -> None:
    every = recipe((default_bake.project / "README.md").read_text(), default_bake.package)
    assert marked_capabilities(default_bake.project) <= set(every)
    assert set(every) == {"events", "openapi", "tracing", "metrics", "error-reports", "telemetry"}


def test_every_path_the_recipe_deletes_is_in_the_bake(default_bake: Bake) -> None:
    every = recipe((default_bake.project / "README.md").read_text(), default_bake.package)
    missing = [path for capability in every.values() for path in capability.paths]
    assert [path for path in missing if not (default_bake.project / path).exists()] == []


def test_each_capability_reaches_each_hub_through_at_most_three_lines(default_bake: Bake) -> None:
    package = default_bake.project / "src" / default_bake.package
    every = recipe((default_bake.project / "README.md").read_text(), default_bake.package)
    too_many = {}
    for hub in HUBS:
        lines = (package / hub).read_text().splitlines()
        for name in every:
            plugged = [line for line in lines if marker(name).search(line) and not IMPORT.match(line)]
            if len(plugged) > MOST_PLUG_IN_LINES:
                too_many[f"{hub} ({name})"] = plugged
    assert too_many == {}


def prepare(capabilities: tuple[str, ...], folder: Path) -> Path:
    """Bake, follow the recipe for each capability, and install afresh from the new lock."""
    env = clean_environment()
    assert_succeeded(run([TOOLS_BIN / "cookiecutter", "--no-input", TEMPLATE_DIR], cwd=folder, timeout=120))
    (project,) = [path for path in folder.iterdir() if path.is_dir()]
    package = next(path.name for path in (project / "src").iterdir() if path.is_dir())
    every = recipe((project / "README.md").read_text(), package)
    for capability in capabilities:
        drop(project, every[capability], every)
    for step in (["make", "install"], ["make", "format"], ["make", "lock"]):
        assert_succeeded(run(step, cwd=project, env=env, timeout=PREPARE_TIMEOUT))
    # Only what the new lock names: a dropped dependency left installed would hide a missing declaration.
    shutil.rmtree(project / ".venv")
    assert_succeeded(run(["make", "install"], cwd=project, env=env, timeout=PREPARE_TIMEOUT))
    return project


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DROPS))
def test_dropping_by_the_recipe_leaves_a_service_that_passes_make_lint_and_make_test(
    name: str, tmp_path: Path, backing_services: dict[str, str]
) -> None:
    project = prepare(DROPS[name], tmp_path)

    lint = run(["make", "lint"], cwd=project, env=clean_environment(), timeout=LINT_TIMEOUT)
    assert_succeeded(lint)
    env = clean_environment(**backing_services)
    tests = run(["make", "test"], cwd=project, env=env, timeout=TEST_TIMEOUT)
    assert_every_test_ran_and_passed(tests)


@pytest.mark.slow
def test_the_core_keeps_no_trace_of_a_dropped_capability(tmp_path: Path) -> None:
    core = prepare(DROPS["core"], tmp_path)

    assert marked_capabilities(core) == set()
    assert list((core / "src").glob("*/events")) == []
    assert list((core / "src").glob("*/telemetry")) == []
    lock = (core / "requirements.txt").read_text().splitlines()
    runtime = {line.split("==")[0] for line in lock if "==" in line}
    assert runtime.isdisjoint({"opentelemetry-sdk", "prometheus-client", "sentry-sdk", "apispec", "httpx2"})

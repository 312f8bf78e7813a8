"""Each optional capability drops out by the service README's recipe, and what is left passes lint and tests.

Fast: the recipe and the marked lines agree in the default bake (every marker names a row of the README's
table, every listed path exists, each hub carries at most three plug-in lines per capability).
Slow: each row, and all of them at once (the core), on fresh bakes: delete, remove the marked lines,
`make lock`, `make install`, `make format`, then `make lint`, and tests. The core runs its whole
`make test`: nothing optional is left, so it proves the core stands alone. Each single row runs the tests of
the hubs it was unplugged from (HUB_TESTS: every process type started and doing its work), since mypy
--strict, import-linter and deptry in `make lint` already prove that no dangling name, import or dependency
is left. Three bakes at a time; each suite claims its own databases and Redis.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from drops import drop, marker, recipe, tracked_files
from support import (
    HUB_TESTS,
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
# Bakes prepared and checked at the same time: preparing one mostly waits on the package index.
PARALLEL_BAKES = 3
PREPARE_TIMEOUT = 300
# `make lint` and the tests of one bake, sharing the machine with two others.
SUITE_TIMEOUT = 1200


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


@dataclass
class DroppedBake:
    name: str
    project: Path
    outcome: subprocess.CompletedProcess[str] | None = None


def prepare(name: str, capabilities: tuple[str, ...], folder: Path) -> DroppedBake:
    """Bake, follow the recipe for each capability, and install afresh from the new lock."""
    env = clean_environment()
    assert_succeeded(run([TOOLS_BIN / "cookiecutter", "--no-input", TEMPLATE_DIR], cwd=folder, timeout=120))
    (project,) = [path for path in folder.iterdir() if path.is_dir()]
    package = next(path.name for path in (project / "src").iterdir() if path.is_dir())
    every = recipe((project / "README.md").read_text(), package)
    for capability in capabilities:
        drop(project, every[capability], every)
    # The recipe's `make format`, `make lock`, `make install`, in the order a fresh bake allows: the lock
    # needs no .venv (uv comes with the template's tools), `make format` needs the one `make install` makes.
    # One install, from the new lock: a dropped dependency left installed would hide a missing declaration.
    for step in (["make", "lock"], ["make", "install"], ["make", "format"]):
        assert_succeeded(run(step, cwd=project, env=env, timeout=PREPARE_TIMEOUT))
    return DroppedBake(name, project)


def prepared_and_checked(name: str, folder: Path, backing_services: dict[str, str]) -> DroppedBake:
    """The dropped bake, with the outcome of `make lint` and its tests (the whole suite for the core)."""
    bake = prepare(name, DROPS[name], folder)
    tests = "" if name == "core" else " ".join(HUB_TESTS)
    bake.outcome = run(
        ["make", "lint", "test", f"TESTS={tests}"],
        cwd=bake.project,
        env=clean_environment(**backing_services),
        timeout=SUITE_TIMEOUT,
    )
    return bake


@pytest.fixture(scope="module")
def dropped_bakes(
    tmp_path_factory: pytest.TempPathFactory, backing_services: dict[str, str]
) -> dict[str, DroppedBake]:
    # The core first: its whole suite is the longest job.
    names = sorted(DROPS, key=lambda name: name != "core")
    folders = {name: tmp_path_factory.mktemp(name) for name in names}
    with ThreadPoolExecutor(PARALLEL_BAKES) as pool:
        checked = pool.map(lambda name: prepared_and_checked(name, folders[name], backing_services), names)
        bakes = list(checked)
    return {bake.name: bake for bake in bakes}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DROPS))
def test_dropping_by_the_recipe_leaves_a_service_that_passes_lint_and_its_tests(
    dropped_bakes: dict[str, DroppedBake], name: str
) -> None:
    bake = dropped_bakes[name]
    assert bake.outcome is not None
    assert_every_test_ran_and_passed(bake.outcome)


@pytest.mark.slow
def test_the_core_keeps_no_trace_of_a_dropped_capability(dropped_bakes: dict[str, DroppedBake]) -> None:
    core = dropped_bakes["core"].project
    assert marked_capabilities(core) == set()
    assert not (core / "src" / core.name.replace("-", "_") / "events").exists()
    lock = (core / "requirements.txt").read_text()
    for distribution in ("opentelemetry-sdk", "prometheus-client", "sentry-sdk", "apispec"):
        assert f"\n{distribution}==" not in f"\n{lock}", distribution

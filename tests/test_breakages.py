"""The template's strongest claim: when a change breaks a factor, the generated service's checks say so.

Fast: every breakage still applies to a fresh bake (a change to the service that moves a breakage's text
shows in seconds). Slow: the unbroken bake passes all three layers (lint, the conformance suite, `check`);
then each breakage in tests/breakages.py is applied alone and must be caught by its layer, run alone: ruff
or deptry for what a linter sees, the one named conformance test for what only running the service shows,
`<slug> check` for a deploy's unsafe settings. A layering breach (the web app importing the worker runner)
must fail the bake's `make lint` naming import-linter's contract.

Three default bakes, installed once, take the breakages in turn, three at a time (a conformance test mostly
waits on the processes it starts); each bake's own git restores it after each breakage. Every breakage's
outcome is kept, and each test below judges one.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import subprocess
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from breakages import BREAKAGES, Breakage
from support import (
    DEFAULT_ANSWERS,
    Bake,
    InstalledService,
    clean_environment,
    explain,
    git,
    make_install,
    run,
    successful_bake,
)

LINT_TIMEOUT = 120
# One conformance test, its pytest session's database set-up included, on a machine running three.
TEST_TIMEOUT = 180
SUITE_TIMEOUT = 600
CHECK_TIMEOUT = 60
# All of `make lint`: ruff, mypy --strict and deptry run before lint-imports.
MAKE_LINT_TIMEOUT = 300
# A key long enough for settings.py's rule, used by `check` only.
SECRET_KEY = "breakage-test-" + "0123456789abcdefghijklmnopqrstuvwxyz"
# The contract in the bake's [tool.importlinter] that keeps the worker runner out of the web process.
WEB_RUNS_NO_WORKER = "The web process imports no worker runner"
# Bakes that take breakages at the same time.
PARALLEL_BAKES = 3

# What the breakage's layer said, or the text of the error that kept it from being tried.
Outcome = subprocess.CompletedProcess[str] | str


@pytest.fixture(scope="module")
def services(cookies_session: Any) -> list[InstalledService]:
    """Default bakes of this module's own, installed once: the breakages change them, then restore them."""
    bakes = [
        successful_bake(cookies_session.bake(extra_context=DEFAULT_ANSWERS)) for _ in range(PARALLEL_BAKES)
    ]
    with ThreadPoolExecutor(PARALLEL_BAKES) as pool:
        return list(pool.map(make_install, bakes))


def restore(service: InstalledService) -> None:
    """The bake, put back exactly as generated, whatever a breakage changed."""
    git(service.project, "checkout", "--", ".")
    git(service.project, "clean", "-fdq")
    assert git(service.project, "status", "--porcelain") == ""


@pytest.fixture
def restored(services: list[InstalledService]) -> Iterator[InstalledService]:
    """The first bake, put back exactly as generated after the test, whatever the test changed."""
    yield services[0]
    restore(services[0])


def caught_by(
    breakage: Breakage, service: InstalledService, servers: dict[str, str], workdir: Path
) -> subprocess.CompletedProcess[str]:
    """What the breakage's layer says of the bake with the breakage applied; the bake is restored after."""
    try:
        # Inside: an edit that no longer applies may have left the ones before it in the bake.
        breakage.apply(service.bake)
        if breakage.layer in ("ruff", "deptry"):
            return lint(service, breakage.layer)
        if breakage.layer == "test":
            return conformance(service, servers, breakage.expect)
        return check(service, servers, workdir, **dict(breakage.env))
    finally:
        restore(service)


def selected_breakages(session: pytest.Session) -> list[Breakage]:
    """The breakages whose tests this session runs (all of them, unless some were selected by name)."""
    chosen = []
    for item in session.items:
        breakage = getattr(getattr(item, "callspec", None), "params", {}).get("breakage")
        if isinstance(breakage, Breakage):
            chosen.append(breakage)
    return chosen


@pytest.fixture(scope="module")
def outcomes(
    services: list[InstalledService],
    backing_services: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> dict[str, Outcome]:
    """The outcome of each breakage this session selected, by name: three at a time, each in a free bake."""
    selected = selected_breakages(request.session)
    free: queue.Queue[InstalledService] = queue.Queue()
    for service in services:
        free.put(service)
    workdirs = {breakage.name: tmp_path_factory.mktemp(breakage.name) for breakage in selected}

    def outcome(breakage: Breakage) -> Outcome:
        service = free.get()
        try:
            return caught_by(breakage, service, backing_services, workdirs[breakage.name])
        except (Exception, pytest.fail.Exception):  # a timeout's too: it belongs to this breakage's test
            return traceback.format_exc()
        finally:
            free.put(service)

    with ThreadPoolExecutor(len(services)) as pool:
        return dict(zip([b.name for b in selected], pool.map(outcome, selected), strict=True))


def lint(service: InstalledService, tool: str) -> subprocess.CompletedProcess[str]:
    command = {"ruff": ["ruff", "check", "--output-format", "concise", "."], "deptry": ["deptry", "."]}[tool]
    return run(
        [service.bin / command[0], *command[1:]],
        cwd=service.project,
        env=clean_environment(),
        timeout=LINT_TIMEOUT,
    )


def conformance(
    service: InstalledService, servers: dict[str, str], *tests: str
) -> subprocess.CompletedProcess[str]:
    selected = [f"tests/test_twelve_factors.py::{name}" for name in tests]
    command: list[str | Path] = [service.bin / "pytest", "-q", "-p", "no:cacheprovider", *selected]
    if len(tests) > 1:
        command += ["--numprocesses", str(PARALLEL_BAKES), "--dist", "loadgroup"]
    timeout = TEST_TIMEOUT if len(tests) == 1 else SUITE_TIMEOUT
    return run(command, cwd=service.project, env=clean_environment(**servers), timeout=timeout)


def check(
    service: InstalledService, servers: dict[str, str], workdir: Path, **variables: str
) -> subprocess.CompletedProcess[str]:
    # An empty working directory: the bake's own .env must not fill in anything.
    env = clean_environment(**{**servers, "SECRET_KEY": SECRET_KEY, "API_OPEN": "true", **variables})
    return run([service.script, "check"], cwd=workdir, env=env, timeout=CHECK_TIMEOUT)


@pytest.mark.slow
def test_unbroken_bake_passes_lint_the_conformance_suite_and_check(
    restored: InstalledService, backing_services: dict[str, str], tmp_path: Path
) -> None:
    for tool in ("ruff", "deptry"):
        result = lint(restored, tool)
        assert result.returncode == 0, explain(result)
    # The conformance tests that must catch a breakage below pass on the unbroken bake (the bake's whole
    # suite runs in test_baked_service.py).
    named = sorted({breakage.expect for breakage in BREAKAGES if breakage.layer == "test"})
    suite = conformance(restored, backing_services, *named)
    assert suite.returncode == 0, explain(suite)
    audit = check(restored, backing_services, tmp_path)
    assert audit.returncode == os.EX_OK, explain(audit)


@pytest.mark.slow
@pytest.mark.parametrize("breakage", BREAKAGES, ids=[breakage.name for breakage in BREAKAGES])
def test_breakage_is_caught_by_its_layer(outcomes: dict[str, Outcome], breakage: Breakage) -> None:
    result = outcomes[breakage.name]
    if isinstance(result, str):
        pytest.fail(f"{breakage.name} could not be tried:\n{result}", pytrace=False)
    if breakage.layer in ("ruff", "deptry"):
        assert result.returncode != 0, f"{breakage.layer} missed: {breakage.what}\n{explain(result)}"
        # deptry reports on stderr, ruff on stdout.
        assert breakage.expect in result.stdout + result.stderr, explain(result)
        if breakage.layer == "ruff":
            assert f"Factor {breakage.factor}:" in result.stdout, (
                f"the lint message names no factor\n{explain(result)}"
            )
    elif breakage.layer == "test":
        assert result.returncode == 1, f"{breakage.expect} missed: {breakage.what}\n{explain(result)}"
        assert f"Factor {breakage.factor} is broken" in result.stdout, (
            f"the failure names no factor\n{explain(result)}"
        )
    else:
        assert result.returncode == breakage.status, f"check missed: {breakage.what}\n{explain(result)}"
        assert f" {breakage.expect} (factor {breakage.factor}): " in result.stdout, explain(result)


@pytest.mark.slow
def test_web_app_importing_the_worker_runner_fails_lint_naming_the_contract(
    restored: InstalledService,
) -> None:
    package = restored.bake.package
    lint_imports = run(
        [restored.bin / "lint-imports", "--no-cache", "--no-logo"],
        cwd=restored.project,
        env=clean_environment(),
        timeout=LINT_TIMEOUT,
    )
    assert f"{WEB_RUNS_NO_WORKER} KEPT" in lint_imports.stdout, explain(lint_imports)
    app = restored.project / "src" / package / "web" / "app.py"
    text = app.read_text()
    # In ruff's import order, and used, so that ruff and mypy pass and lint-imports is what objects.
    anchor = "from ..jobs.publish import JobQueue\n"
    assert text.count(anchor) == 1, f"web/app.py no longer contains {anchor!r}"
    text = text.replace(anchor, anchor + "from ..jobs.worker import run_worker\n")
    app.write_text(
        text + "\n\n# A hurried fork's shortcut: jobs run inside the web process.\nRUNNERS = (run_worker,)\n"
    )
    result = run(["make", "lint"], cwd=restored.project, env=clean_environment(), timeout=MAKE_LINT_TIMEOUT)
    assert result.returncode != 0, f"`make lint` let the web app import the worker runner\n{explain(result)}"
    assert f"{WEB_RUNS_NO_WORKER} BROKEN" in result.stdout, explain(result)
    assert f"{package}.web.app -> {package}.jobs.worker" in result.stdout, explain(result)


def test_every_breakage_still_applies_to_a_fresh_bake(default_bake: Bake, tmp_path: Path) -> None:
    stale = []
    for breakage in BREAKAGES:
        copy = tmp_path / breakage.name
        shutil.copytree(default_bake.project, copy, ignore=shutil.ignore_patterns(".git", ".venv"))
        try:
            breakage.apply(dataclasses.replace(default_bake, project=copy))
        except AssertionError as error:
            stale.append(str(error))
    assert stale == []

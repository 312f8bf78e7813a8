"""The template's strongest claim: when a change breaks a factor, the generated service's checks say so.

One bake, installed once. The unbroken bake passes all three layers (lint, the conformance suite, `check`);
then each breakage in tests/breakages.py is applied alone and must be caught by its layer, run alone: ruff
or deptry for what a linter sees, the one named conformance test for what only running the service shows,
`<slug> check` for a deploy's unsafe settings. A layering breach (the web app importing the worker runner)
must fail the bake's `make lint` naming import-linter's contract. The bake's own git restores it in between.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from breakages import BREAKAGES, Breakage
from support import InstalledService, Installer, clean_environment, explain, git, run

pytestmark = pytest.mark.slow

LINT_TIMEOUT = 120
# One conformance test, its pytest session's database set-up included; two web processes at most.
TEST_TIMEOUT = 180
SUITE_TIMEOUT = 600
CHECK_TIMEOUT = 60
# All of `make lint`: ruff, mypy --strict and deptry run before lint-imports.
MAKE_LINT_TIMEOUT = 300
# A key long enough for settings.py's rule, used by `check` only.
SECRET_KEY = "breakage-test-" + "0123456789abcdefghijklmnopqrstuvwxyz"
# The contract in the bake's [tool.importlinter] that keeps the worker runner out of the web process.
WEB_RUNS_NO_WORKER = "The web process imports no worker runner"


@pytest.fixture(scope="module")
def service(cookies_session: Any) -> InstalledService:
    """A default bake of this module's own, installed once: the breakages change it, then restore it."""
    return Installer(cookies_session)("default")


@pytest.fixture
def restored(service: InstalledService) -> Iterator[InstalledService]:
    """The bake, put back exactly as generated after the test, whatever the test changed."""
    yield service
    git(service.project, "checkout", "--", ".")
    git(service.project, "clean", "-fdq")
    assert git(service.project, "status", "--porcelain") == ""


def lint(service: InstalledService, tool: str) -> Any:
    command = {"ruff": ["ruff", "check", "--output-format", "concise", "."], "deptry": ["deptry", "."]}[tool]
    return run(
        [service.bin / command[0], *command[1:]],
        cwd=service.project,
        env=clean_environment(),
        timeout=LINT_TIMEOUT,
    )


def conformance(service: InstalledService, servers: dict[str, str], *tests: str) -> Any:
    selected = [f"tests/test_twelve_factors.py::{name}" for name in tests]
    command: list[str | Path] = [service.bin / "pytest", "-q", "-p", "no:cacheprovider", *selected]
    timeout = TEST_TIMEOUT if len(tests) == 1 else SUITE_TIMEOUT
    return run(command, cwd=service.project, env=clean_environment(**servers), timeout=timeout)


def check(service: InstalledService, servers: dict[str, str], workdir: Path, **variables: str) -> Any:
    # An empty working directory: the bake's own .env must not fill in anything.
    env = clean_environment(**{**servers, "SECRET_KEY": SECRET_KEY, **variables})
    return run([service.script, "check"], cwd=workdir, env=env, timeout=CHECK_TIMEOUT)


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


@pytest.mark.parametrize("breakage", BREAKAGES, ids=[breakage.name for breakage in BREAKAGES])
def test_breakage_is_caught_by_its_layer(
    restored: InstalledService, backing_services: dict[str, str], tmp_path: Path, breakage: Breakage
) -> None:
    breakage.apply(restored.bake)
    if breakage.layer in ("ruff", "deptry"):
        result = lint(restored, breakage.layer)
        assert result.returncode != 0, f"{breakage.layer} missed: {breakage.what}\n{explain(result)}"
        # deptry reports on stderr, ruff on stdout.
        assert breakage.expect in result.stdout + result.stderr, explain(result)
        if breakage.layer == "ruff":
            assert f"Factor {breakage.factor}:" in result.stdout, (
                f"the lint message names no factor\n{explain(result)}"
            )
    elif breakage.layer == "test":
        result = conformance(restored, backing_services, breakage.expect)
        assert result.returncode == 1, f"{breakage.expect} missed: {breakage.what}\n{explain(result)}"
        assert f"Factor {breakage.factor} is broken" in result.stdout, (
            f"the failure names no factor\n{explain(result)}"
        )
    else:
        result = check(restored, backing_services, tmp_path, **dict(breakage.env))
        assert result.returncode == breakage.status, f"check missed: {breakage.what}\n{explain(result)}"
        assert f" {breakage.expect} (factor {breakage.factor}): " in result.stdout, explain(result)


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

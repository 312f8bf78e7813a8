"""A pytest plugin: on CI (the CI variable is set), a test that was skipped or xfailed fails the run.

A test that did not run proved nothing. Locally a skip is only reported; on CI it is an error, so a missing
service or tool can never turn a red check into a green one.
"""

from __future__ import annotations

import os

import pytest


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


class EveryTestMustRun:
    """Collects the tests (and test modules) that did not run, and fails a CI session that has any."""

    def __init__(self) -> None:
        self.not_run: list[str] = []

    def _record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped:
            kind = "xfailed" if hasattr(report, "wasxfail") else "skipped"
            self.not_run.append(f"{report.nodeid or '<collection>'} ({kind})")

    # Under xdist, workers' reports reach these hooks in the main process too.
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.not_run and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.not_run:
            return
        terminalreporter.section("CI: every test must run", sep="=", red=True, bold=True)
        terminalreporter.line(f"{len(self.not_run)} test(s) did not run, so this CI run fails:", red=True)
        for test in self.not_run:
            terminalreporter.line(f"  {test}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    # Judged once, in the main process: an xdist worker's reports are judged there.
    if on_ci() and not hasattr(config, "workerinput"):
        config.pluginmanager.register(EveryTestMustRun(), "every-test-must-run")

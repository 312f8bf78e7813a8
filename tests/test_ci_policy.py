"""On CI a test that did not run fails the run; off CI it is only reported (tests/ci_policy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

ONE_PASSES_ONE_SKIPS = """
import pytest

def test_runs():
    pass

def test_needs_a_missing_service():
    pytest.skip("no service")
"""

ONE_PASSES_ONE_XFAILS = """
import pytest

def test_runs():
    pass

@pytest.mark.xfail(reason="not yet")
def test_not_yet():
    raise AssertionError
"""

ALL_PASS = """
def test_runs():
    pass
"""


def run_with_policy(pytester: pytest.Pytester, *arguments: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "ci_policy", "-p", "no:cacheprovider", *arguments)


@pytest.fixture
def policy_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    # The child pytest (and its xdist workers) import the plugin by module name, from this folder.
    monkeypatch.setenv("PYTHONPATH", str(TESTS_DIR))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


@pytest.mark.usefixtures("policy_importable")
def test_a_skipped_test_fails_the_run_on_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(ONE_PASSES_ONE_SKIPS)
    result = run_with_policy(pytester)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 test(s) did not run*", "*test_needs_a_missing_service (skipped)*"])


@pytest.mark.usefixtures("policy_importable")
def test_an_xfailed_test_fails_the_run_on_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "1")
    pytester.makepyfile(ONE_PASSES_ONE_XFAILS)
    result = run_with_policy(pytester)
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.usefixtures("policy_importable")
def test_a_skipped_test_fails_the_run_on_ci_under_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(ONE_PASSES_ONE_SKIPS)
    result = run_with_policy(pytester, "-n", "2")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.usefixtures("policy_importable")
def test_a_skipped_test_module_fails_the_run_on_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(
        test_runs=ALL_PASS,
        test_skipped_module='import pytest\npytest.skip("no tool", allow_module_level=True)\n',
    )
    result = run_with_policy(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.usefixtures("policy_importable")
def test_a_skipped_test_is_only_reported_off_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(ONE_PASSES_ONE_SKIPS)
    result = run_with_policy(pytester)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.usefixtures("policy_importable")
def test_a_run_where_every_test_ran_passes_on_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(ALL_PASS)
    result = run_with_policy(pytester)
    assert result.ret == pytest.ExitCode.OK

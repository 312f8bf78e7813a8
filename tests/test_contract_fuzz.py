"""A default bake keeps its published API contract under fuzzing, and its code passes bandit.

Slow: the bake is installed from its hashed lock, then its own `make fuzz` runs schemathesis against the
real web process (the console script on a free port, on the real PostgreSQL and Redis named by DATABASE_URL
and REDIS_URL): at least a thousand generated requests, not one 5xx, every answer as documented. Its
size and duration are printed. `make audit-code` (bandit) must find nothing; the dependency half of
`make audit` asks PyPI's advisory data, which only the generated CI reaches (its workflow is checked offline
in test_deploy_platforms.py).
"""

from __future__ import annotations

import re

import pytest
from support import Installer, clean_environment, explain, run

pytestmark = pytest.mark.slow

FUZZ_TIMEOUT = 900
AUDIT_TIMEOUT = 120
MIN_REQUESTS = 1000
# The line the service's fuzz test prints: "fuzz: 1118 requests in 25.2 s; statuses {200: 583, ...}".
FUZZ_SUMMARY = re.compile(
    r"^fuzz: (?P<requests>\d+) requests in (?P<seconds>[\d.]+) s; statuses (?P<statuses>.*)$"
)


def test_make_fuzz_sends_a_thousand_generated_requests_and_gets_no_5xx(
    install: Installer, backing_services: dict[str, str]
) -> None:
    service = install("default")

    process = run(
        ["make", "fuzz"], cwd=service.project, env=clean_environment(**backing_services), timeout=FUZZ_TIMEOUT
    )

    assert process.returncode == 0, f"`make fuzz` failed\n{explain(process)}"
    summary = next(
        (match for line in process.stdout.splitlines() if (match := FUZZ_SUMMARY.match(line.strip()))), None
    )
    assert summary is not None, f"no fuzz summary line\n{explain(process)}"
    print(f"\n{summary.group(0)}")
    assert int(summary["requests"]) >= MIN_REQUESTS
    assert not re.search(r"\b5\d\d:", summary["statuses"]), summary.group(0)


def test_bandit_finds_nothing_in_the_source_of_a_default_bake(install: Installer) -> None:
    service = install("default")

    process = run(["make", "audit-code"], cwd=service.project, env=clean_environment(), timeout=AUDIT_TIMEOUT)

    assert process.returncode == 0, f"`make audit-code` (bandit) found something\n{explain(process)}"

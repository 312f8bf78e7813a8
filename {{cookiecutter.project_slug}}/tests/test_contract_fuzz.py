"""The published contract holds under fuzzing: schemathesis generates requests from /openapi.json (valid
ones, invalid ones, and sequences that follow the API's links) and sends them to the real web process on
real PostgreSQL and Redis, authenticated as production runs it: with a token from a real issuer process
(tests/issuer.py), while schemathesis also checks that requests without it are refused. Not one answer is
a 5xx, every answer conforms to the documented status codes, headers, content type and body schema, and
every error is the JSON error body.

Marked `fuzz`: `make fuzz` runs it (as CI does); `make test` leaves it out, to stay quick. Set FUZZ_SEED to
replay or vary a run; the default seed makes CI runs repeatable.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from issuer import running_issuer
from processes import running_web

pytestmark = pytest.mark.fuzz

# Test cases per operation and phase; schemathesis's coverage, fuzzing and stateful phases together make
# well over a thousand requests from this.
MAX_EXAMPLES = 100
MIN_REQUESTS = 1000
DEFAULT_SEED = "20261129"
FUZZ_TIMEOUT = 900
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    # The operations that declare the bearer scheme refuse requests without the token.
    "ignored_auth",
)
# Longer than the slowest run, so the token never expires mid-run.
TOKEN_LIFETIME = 3 * FUZZ_TIMEOUT


def schemathesis_run(base_url: str, token: str, report: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        os.environ.get("FUZZ_SEED", DEFAULT_SEED),
        "--report",
        "har",
        "--report-har-path",
        str(report),
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=FUZZ_TIMEOUT, check=False)


def test_a_thousand_generated_requests_get_no_5xx_and_only_answers_the_contract_documents(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    report = tmp_path / "fuzz.har"
    with running_issuer() as issuer:
        env = {name: value for name, value in service_env.items() if name != "API_OPEN"}
        env.update(OIDC_ISSUER=issuer.url, OIDC_AUDIENCE="{{ cookiecutter.project_slug }}")
        token = issuer.token(exp=int(time.time()) + TOKEN_LIFETIME)
        with running_web(env, tmp_path) as web:
            started = time.monotonic()
            run = schemathesis_run(f"http://127.0.0.1:{web.port}", token, report, tmp_path)
            seconds = time.monotonic() - started

    assert run.returncode == 0, f"{run.stdout[-20000:]}\n{run.stderr[-5000:]}"
    entries: list[dict[str, Any]] = json.loads(report.read_text())["log"]["entries"]
    statuses = collections.Counter(entry["response"]["status"] for entry in entries)
    # The size and duration of the run, for the record (`make fuzz` shows it).
    print(f"\nfuzz: {len(entries)} requests in {seconds:.1f} s; statuses {dict(sorted(statuses.items()))}")
    assert len(entries) >= MIN_REQUESTS
    assert not [status for status in statuses if status >= 500]
    for entry in entries:
        response = entry["response"]
        assert response["content"]["mimeType"] == "application/json", entry["request"]["url"]
        if response["status"] >= 400:
            body = json.loads(response["content"]["text"])
            assert body["error"]["status"] == response["status"], entry["request"]["url"]

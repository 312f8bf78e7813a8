"""Secrets never leave the process: not in logs, `config` output, error responses or /readyz problems.

The passwords below sit in the URLs the processes are given. PostgreSQL here trusts local connections and
Redis asks for no password, so both are accepted and ignored: what is tested is where they are shown.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx2

from conftest import SECRET_KEY, UNREACHABLE_REDIS_URL
from processes import STARTUP_TIMEOUT, run_command, running_web, running_worker

DATABASE_PASSWORD = "db-hunter2"
REDIS_PASSWORD = "redis-hunter2"
BROKER_PASSWORD = "broker-hunter2"
SECRETS = (SECRET_KEY, DATABASE_PASSWORD, REDIS_PASSWORD, BROKER_PASSWORD)


def with_password(url: str, password: str, user: str = "") -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


def with_passwords(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "DATABASE_URL": with_password(env["DATABASE_URL"], DATABASE_PASSWORD, user="postgres"),
        "REDIS_URL": with_password(env["REDIS_URL"], REDIS_PASSWORD),
    }


def assert_no_secret_in(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} shown in {where}"


def test_web_shows_no_secret_in_logs_responses_or_readiness_problems(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    # The job broker is unreachable, so the failure paths (a publish that fails, readiness) run too.
    env = {**with_passwords(service_env), "BROKER_URL": with_password(UNREACHABLE_REDIS_URL, BROKER_PASSWORD)}
    with running_web(env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=10) as http:
        created = http.post("/items", json={"name": "secret-free"})
        responses = [
            created,
            http.get("/readyz"),
            http.get(created.headers["location"]),
            http.post("/items", content=b"{", headers={"content-type": "application/json"}),
            http.get("/items?limit=abc"),
            http.get("/no/such/route"),
        ]
        stdout, stderr = web.stdout, web.stderr

    assert [response.status_code for response in responses] == [201, 503, 200, 400, 422, 404]
    assert "broker" in responses[1].json()["problems"]
    for response in responses:
        assert_no_secret_in(f"{response.headers}\n{response.text}", f"the answer to {response.request.url}")
    assert_no_secret_in(stdout, "the web's stdout")
    assert_no_secret_in(stderr, "the web's stderr")


def test_config_output_masks_every_secret(service_env: dict[str, str], tmp_path: Path) -> None:
    env = {**with_passwords(service_env), "BROKER_URL": with_password(UNREACHABLE_REDIS_URL, BROKER_PASSWORD)}

    process = run_command(["config"], env, tmp_path)

    assert process.returncode == 0, process.stderr
    assert f"REDIS_URL=redis://:***@{urlsplit(service_env['REDIS_URL']).hostname}" in process.stdout
    assert_no_secret_in(process.stdout + process.stderr, "`config` output")


def test_worker_start_lines_mask_the_redis_password(service_env: dict[str, str], tmp_path: Path) -> None:
    with running_worker(with_passwords(service_env), tmp_path) as worker:
        connected = worker.wait_for_event(
            lambda event: str(event["message"]).startswith("Connected to"), STARTUP_TIMEOUT
        )
        stdout, stderr = worker.stdout, worker.stderr

    assert ":**@" in connected["message"]
    assert_no_secret_in(stdout, "the worker's stdout")
    assert_no_secret_in(stderr, "the worker's stderr")

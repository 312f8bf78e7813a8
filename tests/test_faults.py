"""Real faults, injected into a baked service's real processes: it loses nothing and heals by itself.

Slow: the default bake is installed once; a private Redis and a private PostgreSQL cluster (see
fault_support.py) are started for this module, and the tests stop, restart, freeze or kill what they
need to. The web, worker and clock processes run with default settings unless a test says otherwise.
Every wait is a polled condition with a generous bound; the times measured are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_support import (
    Running,
    Servers,
    item_status,
    private_servers,
    reset,
    row_locked,
    sql,
    started,
    wait_until_done,
)
from processes import http, poll
from support import InstalledService, Installer

pytestmark = pytest.mark.slow

# The promise: an item created while Redis is down is done within this long of Redis returning.
REDIS_HEAL_PROMISE = 30.0
# A worker whose Redis restarted consumes again "within seconds"; this is the bound the test allows.
RESUME_BOUND = 20.0
# A data endpoint must answer (a JSON 503) within this long while PostgreSQL is down: not a hang.
DATABASE_DOWN_ANSWER_BOUND = 8.0
# ...and while it hangs: the statement timeout (10 s) or the connect timeout (5 s), plus slack.
DATABASE_HUNG_ANSWER_BOUND = 20.0
# Generous bound for conditions that usually hold within seconds.
HEAL_BOUND = 60.0
# Shortened for the SIGKILL test, so the broker redelivers after 2 x 3 s instead of 10 minutes.
SHORT_JOB_TIME_LIMIT = "3"


@pytest.fixture(scope="module")
def service(install: Installer) -> InstalledService:
    return install("default")


@pytest.fixture(scope="module")
def module_servers(service: InstalledService) -> Iterator[Servers]:
    with private_servers(service) as servers:
        yield servers


@pytest.fixture
def servers(service: InstalledService, module_servers: Servers) -> Servers:
    return reset(service, module_servers)


def outcomes_of(worker: Running, item_id: int) -> list[str]:
    return [str(e["message"]) for e in worker.events() if e.get("item_id") == item_id and "message" in e]


def test_item_created_while_redis_is_down_is_done_within_30_s_of_its_return_without_a_restart(
    service: InstalledService, servers: Servers, tmp_path: Path
) -> None:
    with (
        started(service, servers, "web", tmp_path) as web,
        started(service, servers, "worker", tmp_path) as worker,
        started(service, servers, "clock", tmp_path),
    ):
        servers.redis.stop()
        began = time.monotonic()
        created = http("POST", f"{web.base_url}/items", {"name": "while redis is down"}, timeout=30)
        create_seconds = time.monotonic() - began
        ready = http("GET", f"{web.base_url}/readyz", timeout=30)
        health = http("GET", f"{web.base_url}/healthz", timeout=30)
        item_id = created.json()["id"]
        pending = item_status(web, item_id)
        servers.redis.start()
        healed_after = wait_until_done(web, item_id, HEAL_BOUND)

    print(
        f"\nRedis down: POST answered {created.status} in {create_seconds:.2f} s; "
        f"the item done {healed_after:.1f} s after Redis returned"
    )
    assert created.status == 201
    assert (ready.status, set(ready.json()["problems"])) == (503, {"broker"})
    assert health.status == 200
    assert pending == "pending"
    assert healed_after < REDIS_HEAL_PROMISE
    assert outcomes_of(worker, item_id) == [f"Item {item_id}: done"]
    assert sql(service, servers.database_url, "SELECT count(*) FROM job_outbox") == [[0]]


def test_worker_resumes_consuming_by_itself_after_redis_restarts(
    service: InstalledService, servers: Servers, tmp_path: Path
) -> None:
    with (
        started(service, servers, "web", tmp_path) as web,
        started(service, servers, "worker", tmp_path) as worker,
    ):
        before = http("POST", f"{web.base_url}/items", {"name": "before the restart"}).json()["id"]
        wait_until_done(web, before, HEAL_BOUND)
        servers.redis.stop()
        servers.redis.start()
        restarted = time.monotonic()
        created = http("POST", f"{web.base_url}/items", {"name": "after the restart"}, timeout=30)
        done_after = wait_until_done(web, created.json()["id"], RESUME_BOUND)
        resumed = time.monotonic() - restarted
        second = http("POST", f"{web.base_url}/items", {"name": "and the next one"}).json()["id"]
        next_after = wait_until_done(web, second, RESUME_BOUND)
        worker_exit = worker.process.poll()

    print(f"\nRedis restarted: a job posted after it done in {resumed:.1f} s, the next in {next_after:.2f} s")
    assert created.status == 201
    assert done_after < RESUME_BOUND
    assert worker_exit is None, "the worker exited instead of reconnecting"


def timed(method: str, url: str, payload: Any = None) -> tuple[float, int, Any]:
    began = time.monotonic()
    answer = http(method, url, payload, timeout=60)
    return time.monotonic() - began, answer.status, answer.json()


def test_postgres_down_is_a_prompt_json_503_and_web_and_worker_heal_when_it_returns(
    service: InstalledService, servers: Servers, tmp_path: Path
) -> None:
    with started(service, servers, "web", tmp_path) as web:
        # Jobs queued while no worker runs; the worker will meet them with the database down.
        item_ids = [http("POST", f"{web.base_url}/items", {"name": f"db {n}"}).json()["id"] for n in range(3)]
        assert http("GET", f"{web.base_url}/items/{item_ids[0]}").status == 200  # the pool holds connections
        servers.postgres.stop()
        answers = [
            timed("GET", f"{web.base_url}/items/{item_ids[0]}"),
            timed("GET", f"{web.base_url}/items"),
            timed("POST", f"{web.base_url}/items", {"name": "refused"}),
            timed("GET", f"{web.base_url}/items/{item_ids[1]}"),
        ]
        ready = http("GET", f"{web.base_url}/readyz", timeout=30)
        health = http("GET", f"{web.base_url}/healthz", timeout=30)
        with started(service, servers, "worker", tmp_path) as worker:
            retried = poll(lambda: any("retry" in m.lower() for m in worker.messages()), HEAL_BOUND)
            servers.postgres.start()
            returned = time.monotonic()
            assert poll(lambda: http("GET", f"{web.base_url}/items/{item_ids[0]}").status == 200, HEAL_BOUND)
            web_healed = time.monotonic() - returned
            for item_id in item_ids:
                wait_until_done(web, item_id, HEAL_BOUND)
            jobs_healed = time.monotonic() - returned

    slowest = max(seconds for seconds, _status, _body in answers)
    print(
        f"\nPostgreSQL down: 503s in at most {slowest:.2f} s; "
        f"web healed {web_healed:.2f} s, jobs done {jobs_healed:.1f} s after it returned"
    )
    for seconds, status, body in answers:
        assert (status, body["error"]["status"]) == (503, 503)
        assert seconds < DATABASE_DOWN_ANSWER_BOUND
    assert (ready.status, "database" in ready.json()["problems"]) == (503, True)
    assert health.status == 200
    assert retried, "no job was retried while the database was down"
    for item_id in item_ids:
        assert outcomes_of(worker, item_id) == [f"Item {item_id}: done"]


def test_postgres_hung_is_a_json_503_within_the_timeouts_and_the_web_recovers_when_it_answers_again(
    service: InstalledService, servers: Servers, tmp_path: Path
) -> None:
    with started(service, servers, "web", tmp_path) as web:
        item_id = http("POST", f"{web.base_url}/items", {"name": "frozen"}).json()["id"]
        assert http("GET", f"{web.base_url}/items/{item_id}").status == 200  # the pool holds connections
        servers.postgres.freeze()
        try:
            answers = [
                timed("GET", f"{web.base_url}/items/{item_id}"),
                timed("POST", f"{web.base_url}/items", {"name": "refused"}),
            ]
            ready_seconds, ready_status, _ = timed("GET", f"{web.base_url}/readyz")
            health = http("GET", f"{web.base_url}/healthz", timeout=30)
        finally:
            servers.postgres.thaw()
        thawed = time.monotonic()
        assert poll(lambda: http("GET", f"{web.base_url}/items/{item_id}").status == 200, HEAL_BOUND)
        healed = time.monotonic() - thawed

    print(
        f"\nPostgreSQL hung: answers in {', '.join(f'{s:.1f} s ({status})' for s, status, _ in answers)}; "
        f"/readyz {ready_status} in {ready_seconds:.1f} s; healed {healed:.2f} s after it answered again"
    )
    for seconds, status, body in answers:
        assert (status, body["error"]["status"]) == (503, 503)
        assert seconds < DATABASE_HUNG_ANSWER_BOUND
    assert ready_status == 503
    assert ready_seconds < DATABASE_HUNG_ANSWER_BOUND
    assert health.status == 200


def test_worker_killed_mid_job_has_the_job_delivered_again_and_done_once(
    service: InstalledService, servers: Servers, tmp_path: Path
) -> None:
    limits = {"JOB_TIME_LIMIT": SHORT_JOB_TIME_LIMIT}
    with started(service, servers, "web", tmp_path) as web:
        item_id = http("POST", f"{web.base_url}/items", {"name": "killed mid-job"}).json()["id"]
        with row_locked(service, servers.database_url, item_id) as locker:
            with started(service, servers, "worker", tmp_path, **limits) as first:
                assert locker.stdout is not None
                # The job has started and waits for the row: the worker is mid-job.
                assert locker.stdout.readline().strip() == "waited on"
                os.killpg(first.process.pid, signal.SIGKILL)
                first.process.wait(timeout=30)
            assert locker.stdin is not None
            locker.stdin.write("\n")
            locker.stdin.flush()
        killed = time.monotonic()
        with started(service, servers, "worker", tmp_path, **limits) as second:
            redelivered_after = wait_until_done(web, item_id, HEAL_BOUND)
            since_kill = time.monotonic() - killed

    print(f"\nWorker SIGKILLed mid-job: done by the next worker {since_kill:.1f} s after the kill")
    assert outcomes_of(first, item_id) == []
    assert outcomes_of(second, item_id) == [f"Item {item_id}: done"]
    assert redelivered_after < HEAL_BOUND

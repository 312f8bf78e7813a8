"""Real faults, injected into a baked service's real processes: it loses nothing and heals by itself.

Slow: the default bake is installed once; a private Redis and a private PostgreSQL cluster (see
fault_support.py) are started for this module and stopped, restarted or starved by the tests. The web,
worker and clock processes run with default settings unless a test says otherwise. Every wait is a
polled condition with a generous bound; the times measured are printed (`pytest -s`) for the record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_support import (
    Outcome,
    PrivatePostgres,
    PrivateRedis,
    private_postgres,
    private_redis,
    request,
    row_locked,
    rss_kib,
    run_load,
    sql,
)
from processes import answers_health, free_port, http, poll, process_group
from support import InstalledService, Installer, assert_succeeded, clean_environment, run

pytestmark = pytest.mark.slow

SECRET_KEY = secrets.token_urlsafe(48)
# The promise: an item created while Redis is down is done within this long of Redis returning.
REDIS_HEAL_PROMISE = 30.0
# A worker whose Redis restarted consumes again "within seconds"; this is the bound the test allows.
RESUME_BOUND = 20.0
# A data endpoint must answer (a JSON 503) within this long while PostgreSQL is down: not a hang.
DATABASE_DOWN_ANSWER_BOUND = 8.0
# ...and while it hangs: the statement timeout (10 s) or the connect timeout (5 s), plus slack.
DATABASE_HUNG_ANSWER_BOUND = 20.0
# Generous bounds for conditions that usually hold within a second or two.
STARTUP = 120.0
HEAL_BOUND = 60.0
# Shortened for the SIGKILL test, so the broker redelivers after 2 x 3 s instead of 10 minutes.
SHORT_JOB_TIME_LIMIT = "3"
# Requests the SIGTERM test lets the web process serve before it sends the signal.
REQUESTS_BEFORE_SIGTERM = 300
# A request counts as accepted before SIGTERM if it was sent this long before it. uvicorn closes the
# listening socket at its next 0.1 s tick after the signal and, with it, connections whose request it has
# not read yet: the kernel resets those. The margin leaves the server one tick, plus slack for a busy
# machine, to have read what was sent before the signal. (On a platform, readiness turns 503 first.)
ACCEPTED_MARGIN = 0.25
# The sustained-load test: requests, client threads, and the web process's allowed memory growth.
LOAD_REQUESTS = 3000
LOAD_CLIENTS = 8
RSS_GROWTH_BOUND_KIB = 16 * 1024


@dataclasses.dataclass(frozen=True)
class Servers:
    postgres: PrivatePostgres
    redis: PrivateRedis
    database_url: str


@pytest.fixture(scope="module")
def service(install: Installer) -> InstalledService:
    return install("default")


@pytest.fixture(scope="module")
def module_servers(service: InstalledService) -> Iterator[Servers]:
    with private_postgres() as postgres, private_redis() as redis:
        sql(service, postgres.server_url, "CREATE DATABASE faults")
        database_url = postgres.server_url.rsplit("/", 1)[0] + "/faults"
        env = clean_environment(DATABASE_URL=database_url, REDIS_URL=redis.url, SECRET_KEY=SECRET_KEY)
        assert_succeeded(run([service.script, "migrate"], cwd=service.project, env=env, timeout=120))
        yield Servers(postgres, redis, database_url)


@pytest.fixture
def servers(service: InstalledService, module_servers: Servers) -> Servers:
    """Both private servers running, with no items, no outbox rows and an empty broker."""
    if not module_servers.postgres.is_running():
        module_servers.postgres.start()
    if module_servers.redis.process is None:
        module_servers.redis.start()
    sql(service, module_servers.database_url, "TRUNCATE items, job_outbox RESTART IDENTITY")
    cli = ["redis-cli", "-p", str(module_servers.redis.port), "flushall"]
    assert_succeeded(run(cli, cwd=service.project, timeout=30))
    return module_servers


@dataclasses.dataclass
class Running:
    """A service process started by a test: its process, output file and (for web) base URL."""

    process: subprocess.Popen[bytes]
    output: Path
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.output.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    found.append(event)
        return found

    def messages(self) -> list[str]:
        return [str(event.get("message")) for event in self.events()]


@contextlib.contextmanager
def started(
    service: InstalledService, servers: Servers, command: str, tmp_path: Path, **settings: str
) -> Iterator[Running]:
    """`<slug> <command>` on the private servers, default settings plus `settings`; killed at the end."""
    port = free_port()
    env = clean_environment(
        DATABASE_URL=servers.database_url,
        REDIS_URL=servers.redis.url,
        SECRET_KEY=SECRET_KEY,
        LOG_FORMAT="json",
        PORT=str(port),
        **settings,
    )
    output = tmp_path / f"{command}-{port}.log"
    workdir = tmp_path / "workdir"
    workdir.mkdir(exist_ok=True)
    with process_group([service.script, command], workdir, env, output) as process:
        running = Running(process, output, port)
        if command == "web":
            assert answers_health(running.base_url), f"web never answered /healthz:\n{output.read_text()}"
        if command == "worker":
            ready = poll(lambda: any(m.endswith(" ready.") for m in running.messages()), STARTUP)
            assert ready, f"the worker never said it was ready:\n{output.read_text()}"
        yield running


def item_status(web: Running, item_id: int) -> str | None:
    answer = http("GET", f"{web.base_url}/items/{item_id}", timeout=10)
    return str(answer.json()["status"]) if answer.status == 200 else None


def wait_until_done(web: Running, item_id: int, bound: float) -> float:
    """Seconds until the item is done; fails the test past `bound`."""
    began = time.monotonic()
    assert poll(lambda: item_status(web, item_id) == "done", bound), (
        f"item {item_id} not done within {bound} s"
    )
    return time.monotonic() - began


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


def test_web_under_load_finishes_every_request_accepted_before_sigterm(
    service: InstalledService, servers: Servers, tmp_path: Path
) -> None:
    with started(service, servers, "web", tmp_path) as web:
        item_id = http("POST", f"{web.base_url}/items", {"name": "read under load"}).json()["id"]

        made: list[int] = []

        def make(number: int) -> Outcome:
            made.append(number)
            if number % 3 == 0:
                return request(web.port, "POST", "/items", {"name": f"load {number}"})
            return request(web.port, "GET", f"/items/{item_id}")

        stop = threading.Event()
        results: list[list[Outcome]] = []
        load = threading.Thread(
            target=lambda: results.append(run_load(make, clients=8, per_client=400, stop=stop)), daemon=True
        )
        load.start()
        # Let the load build up, then ask the web process to stop, as a platform does.
        assert poll(lambda: len(made) >= REQUESTS_BEFORE_SIGTERM, STARTUP)
        signalled = time.monotonic()
        web.process.send_signal(signal.SIGTERM)
        exit_status = web.process.wait(timeout=60)
        stop.set()
        load.join(timeout=120)

    (outcomes,) = results
    accepted = [o for o in outcomes if o.sent_at < signalled - ACCEPTED_MARGIN]
    failed_accepted = [o for o in accepted if o.error is not None or (o.status or 0) >= 500]
    late = [o for o in outcomes if o.sent_at >= signalled - ACCEPTED_MARGIN]
    print(
        f"\nSIGTERM under load: {len(accepted)} requests accepted before it, {len(failed_accepted)} failed; "
        f"{len(late)} sent around or after it: {sorted({o.error or str(o.status) for o in late})}"
    )
    for o in late:
        print(f"  {o.sent_at - signalled:+.3f} s {o.method} {o.error or o.status}")
    assert len(accepted) > REQUESTS_BEFORE_SIGTERM / 2
    assert failed_accepted == []
    assert all((o.status or 0) < 500 for o in outcomes), "a 5xx, before or after the signal"
    assert exit_status == -signal.SIGTERM


def database_connections(service: InstalledService, servers: Servers) -> int:
    """Client connections to the service's database, not counting the one asking."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'faults' "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    count: int = sql(service, servers.database_url, query)[0][0]
    return count


def test_sustained_mixed_load_has_no_errors_and_no_growth_in_connections_or_memory(
    service: InstalledService, servers: Servers, tmp_path: Path
) -> None:
    with started(service, servers, "web", tmp_path) as web:
        item_id = http("POST", f"{web.base_url}/items", {"name": "read under load"}).json()["id"]

        def make(number: int) -> Outcome:
            kind = number % 10
            if kind < 4:
                return request(web.port, "GET", f"/items/{item_id}")
            if kind < 6:
                return request(web.port, "POST", "/items", {"name": f"sustained {number}"})
            if kind < 8:
                return request(web.port, "GET", "/items?limit=20")
            if kind < 9:
                return request(web.port, "GET", "/items/999999999")  # a 404 is an answer, not an error
            return request(web.port, "GET", "/readyz")

        never = threading.Event()
        warm_up = run_load(make, clients=LOAD_CLIENTS, per_client=50, stop=never)
        rss_before = rss_kib(web.process.pid)
        peak_connections = 0
        sampling = threading.Event()

        def sample() -> None:
            nonlocal peak_connections
            while not sampling.wait(0.5):
                peak_connections = max(peak_connections, database_connections(service, servers))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.monotonic()
        outcomes = run_load(make, clients=LOAD_CLIENTS, per_client=LOAD_REQUESTS // LOAD_CLIENTS, stop=never)
        seconds = time.monotonic() - began
        sampling.set()
        sampler.join(timeout=60)
        rss_after = rss_kib(web.process.pid)
        idle_connections = database_connections(service, servers)

    errors = [o for o in warm_up + outcomes if o.error is not None or o.status not in (200, 201, 404)]
    growth = rss_after - rss_before
    print(
        f"\nSustained load: {len(outcomes)} requests in {seconds:.1f} s ({len(outcomes) / seconds:.0f}/s), "
        f"{len(errors)} errors; database connections peak {peak_connections}, idle {idle_connections}; "
        f"web RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB"
    )
    assert len(outcomes) == LOAD_REQUESTS
    assert errors == []
    # The pool's bound (DB_POOL_SIZE 10 + DB_MAX_OVERFLOW 10), and back to the pool size at rest.
    assert 0 < peak_connections <= 20
    assert idle_connections <= 10
    assert growth < RSS_GROWTH_BOUND_KIB

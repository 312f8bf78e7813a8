"""Factor VIII: jobs run in the worker process type, fed through the real broker by the web process.

Every test here starts the real console script (`<slug> worker`, `clock`, `web`) on the real PostgreSQL
and Redis servers and reads what the processes log on stdout. Waits are bounded; processes are always
killed at the end.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from {{ cookiecutter.package_name }}.jobs.celery_app import create_celery
from {{ cookiecutter.package_name }}.jobs.outbox import (
    pending_jobs,
    publish_failed,
    record_job,
)
from {{ cookiecutter.package_name }}.jobs.tasks import (
    PROCESS_ITEM,
)
from {{ cookiecutter.package_name }}.models import ItemStatus
from {{ cookiecutter.package_name }}.settings import Settings

from conftest import (
    add_items,
    get_item,
)
from processes import (
    STARTUP_TIMEOUT,
    ServiceProcess,
    is_ready,
    json_events,
    run_command,
    running,
    running_worker,
    settled_readiness,
    wait_until,
)

if TYPE_CHECKING:
    from starlette.testclient import TestClient

WORKER_LOGGER = "{{ cookiecutter.package_name }}.jobs.worker"
TRACE_LOGGER = "celery.app.trace"
NOTICE_LOGGER = "celery.apps.worker"
# Seconds from enqueue to done that these tests tolerate; the worker usually takes a few milliseconds.
JOB_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0


@pytest.fixture
def worker_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "WORKER_CONCURRENCY": "2", "GRACEFUL_TIMEOUT": "3"}


def outcomes(worker: ServiceProcess, item_id: int) -> list[str]:
    """What the worker logged having done with an item's job, in order."""
    return [
        event["message"]
        for event in worker.events()
        if event["logger"] == WORKER_LOGGER and event.get("item_id") == item_id
    ]


def wait_for_outcomes(worker: ServiceProcess, item_id: int, count: int = 1) -> list[str]:
    return wait_until(
        lambda: found if len(found := outcomes(worker, item_id)) >= count else None,
        JOB_TIMEOUT,
        f"{count} outcome(s) of item {item_id}'s job",
    )


def digest_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def test_posted_item_is_done_by_the_worker_whose_log_lines_carry_the_request_id(
    client: TestClient, worker_env: dict[str, str], tmp_path: Path
) -> None:
    with running_worker(worker_env, tmp_path) as worker:
        created = client.post("/items", json={"name": "end to end"}, headers={"X-Request-ID": "job-trace-1"})
        location = created.headers["location"]
        done = wait_until(
            lambda: item if (item := client.get(location).json())["status"] == "done" else None,
            JOB_TIMEOUT,
            "the posted item done",
        )
        succeeded = worker.wait_for_event(
            lambda event: event["logger"] == TRACE_LOGGER and "succeeded" in event["message"], JOB_TIMEOUT
        )

    assert created.status_code == 201
    assert done["digest"] == digest_of("end to end")
    item_id = created.json()["id"]
    (outcome,) = [event for event in worker.events() if event["logger"] == WORKER_LOGGER]
    assert (outcome["message"], outcome["item_id"]) == (f"Item {item_id}: done", item_id)
    # The id came with the message, in a header, and every line the job logged carries it.
    assert outcome["request_id"] == "job-trace-1"
    assert succeeded["request_id"] == "job-trace-1"


def test_running_worker_finds_every_posted_item_because_jobs_follow_the_commit(
    client: TestClient, worker_env: dict[str, str], tmp_path: Path
) -> None:
    # (test_jobs.py checks the order itself, at the moment of publishing.)
    with running_worker(worker_env, tmp_path) as worker:
        # An idle worker takes a message within milliseconds: a job published before the commit could
        # look for an item that is not there yet, and log "gone".
        item_ids = [
            client.post("/items", json={"name": f"race {number}"}).json()["id"] for number in range(10)
        ]
        for item_id in item_ids:
            wait_for_outcomes(worker, item_id)

    assert {item_id: outcomes(worker, item_id) for item_id in item_ids} == {
        item_id: [f"Item {item_id}: done"] for item_id in item_ids
    }


def test_job_delivered_twice_does_its_work_once(
    settings: Settings, engine: Engine, worker_env: dict[str, str], tmp_path: Path
) -> None:
    (item_id,) = add_items(engine, 1)
    producer = create_celery(settings)
    try:
        with running_worker(worker_env, tmp_path) as worker:
            # Two deliveries of one job, as after a lost worker or a relay that died mid-round; with two pool
            # processes they may well run at the same moment.
            producer.send_task(PROCESS_ITEM, args=[item_id])
            producer.send_task(PROCESS_ITEM, args=[item_id])
            logged = wait_for_outcomes(worker, item_id, count=2)
    finally:
        producer.close()

    assert sorted(logged) == [f"Item {item_id}: already done, or gone", f"Item {item_id}: done"]
    item = get_item(engine, item_id)
    assert (item.status, item.digest) == (ItemStatus.DONE, digest_of("item 0"))


def test_clock_relays_a_job_whose_publish_failed_and_the_worker_does_it(
    engine: Engine, worker_env: dict[str, str], tmp_path: Path
) -> None:
    # An item committed with its job while the broker was down: the web's publish failed and said so.
    (item_id,) = add_items(engine, 1)
    with Session(engine) as session, session.begin():
        job = record_job(PROCESS_ITEM, [item_id], "request-while-broker-down")
        session.add(job)
        session.flush()
        session.execute(publish_failed(job.id))

    with running_worker(worker_env, tmp_path) as worker, running("clock", worker_env, tmp_path) as clock:
        # The clock's start (seconds on a busy machine) counts against the start-up bound, not the job's.
        relayed = clock.wait_for_event(lambda event: event.get("jobs") == 1, STARTUP_TIMEOUT)
        wait_for_outcomes(worker, item_id)

    assert relayed["message"] == "Relayed 1 jobs from the outbox"
    (outcome,) = [event for event in worker.events() if event.get("item_id") == item_id]
    # The relayed job is traced by the request that recorded it.
    assert outcome["request_id"] == "request-while-broker-down"
    assert get_item(engine, item_id).status is ItemStatus.DONE
    with Session(engine) as session:
        assert pending_jobs(session) == []


def test_worker_stdout_is_one_json_object_per_line_shutdown_notices_included(
    client: TestClient, worker_env: dict[str, str], tmp_path: Path
) -> None:
    with running_worker(worker_env, tmp_path) as worker:
        item_id = client.post("/items", json={"name": "logged"}).json()["id"]
        wait_for_outcomes(worker, item_id)
        exit_code = worker.stop(timeout=STOP_TIMEOUT)

    assert exit_code == 0
    events = json_events(worker.stdout)  # fails on any line that is not a JSON log event
    notices = [event["message"] for event in events if event["logger"] == NOTICE_LOGGER]
    assert "worker: Warm shutdown (MainProcess)" in notices
    assert worker.stderr == ""


def test_zero_server_configuration_runs_a_job_on_local_files(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **service_env,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.sqlite3'}",
        "BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
    }
    del env["REDIS_URL"]

    # The processes start while the release step runs: both take seconds just to import.
    with running("worker", env, tmp_path) as worker, running("web", env, tmp_path) as web:
        migrate = run_command(["migrate"], env, tmp_path)
        assert migrate.returncode == 0, migrate.stderr
        web.wait_until_serving()
        worker.wait_for_event(is_ready, STARTUP_TIMEOUT)
        with httpx2.Client(base_url=web.base_url, timeout=5) as http:
            ready = settled_readiness(http.get)
            created = http.post("/items", json={"name": "no servers"})
            location = created.headers["location"]
            done = wait_until(
                lambda: item if (item := http.get(location).json())["status"] == "done" else None,
                JOB_TIMEOUT,
                "the item done through the SQLite broker",
            )

    assert ready.status_code == 200, ready.text
    assert created.status_code == 201
    assert done["digest"] == digest_of("no servers")


def test_clock_stops_on_sigterm_and_keeps_no_schedule_file(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    def is_starting(event: dict[str, Any]) -> bool:
        return bool(event["message"] == "beat: Starting...")

    with running("clock", service_env, tmp_path) as clock:
        clock.wait_for_event(is_starting, STARTUP_TIMEOUT)
        # Within STOP_TIMEOUT (typically well under a second), far inside the platforms' 30 s.
        exit_code = clock.stop(timeout=STOP_TIMEOUT)

    assert exit_code == 0
    # Factor VI: the schedule lives in memory; nothing is written to the working directory.
    assert list((tmp_path / "workdir").iterdir()) == []
    json_events(clock.stdout)
    assert clock.stderr == ""

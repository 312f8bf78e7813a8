"""Factor IX: processes stop on SIGTERM without dropping a request or losing a job.

The web process stops being ready at once and finishes what it has in hand; the worker hands back what it
cannot finish within GRACEFUL_TIMEOUT, acknowledged jobs only after they ran, so the next worker does it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from sqlalchemy import Engine

from {{ cookiecutter.package_name }}.jobs.celery_app import create_celery
from {{ cookiecutter.package_name }}.jobs.tasks import PROCESS_ITEM
from {{ cookiecutter.package_name }}.models import ItemStatus
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.web.resources import Resources

from conftest import (
    add_items,
    get_item,
    items_by_id,
    job_waits_for_a_lock,
    row_locked,
)
from processes import (
    ServiceProcess,
    running,
    running_worker,
    settled_readiness,
    wait_until,
)

if TYPE_CHECKING:
    from starlette.testclient import TestClient

ACCESS_LOGGER = "{{ cookiecutter.package_name }}.web.access"
SHUTDOWN_LOGGER = "{{ cookiecutter.package_name }}.web.shutdown"
WORKER_LOGGER = "{{ cookiecutter.package_name }}.jobs.worker"
# The service's queue, and the hash where kombu's Redis transport keeps delivered, unacknowledged jobs.
QUEUE = "{{ cookiecutter.package_name }}"
UNACKED = "unacked"
BACKLOG = 40
DRAIN_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# Seconds a worker may take to exit beyond GRACEFUL_TIMEOUT: closing the pool and the broker connection take
# 2-3 s; wide, for a loaded machine, and still far inside the platforms' 30 s.
STOP_MARGIN = 10
# A worker whose last job is done exits in 2-3 s (Celery's own warm shutdown); far more on a busy machine
# is still far below the GRACEFUL_TIMEOUT of 25 s that the test sets.
SHORT_JOB_STOP_BOUND = 15


def test_readyz_names_process_stopping_once_a_stop_is_requested(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert settled_readiness(client.get).status_code == 200
    resources: Resources = client.app_state["resources"]

    with caplog.at_level(logging.INFO, logger=SHUTDOWN_LOGGER):
        resources.draining.begin()
    response = settled_readiness(client.get)

    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "problems": {"process": "stopping"}}
    (stop_requested,) = [record for record in caplog.records if record.name == SHUTDOWN_LOGGER]
    assert stop_requested.getMessage().startswith("Stop requested")
    # Liveness is another matter: a stopping process is not a dead one.
    assert client.get("/healthz").status_code == 200


@pytest.fixture
def backlog(engine: Engine, client: TestClient, redis_url: str) -> list[int]:
    """BACKLOG items created through the web app with no worker running: their jobs wait in Redis.

    (After `engine`, which empties the items table when it is set up.)
    """
    item_ids = [
        client.post("/items", json={"name": f"backlog {number}"}).json()["id"] for number in range(BACKLOG)
    ]
    with redis.Redis.from_url(redis_url) as database:
        assert database.llen(QUEUE) == BACKLOG
    return item_ids


@pytest.fixture
def stop_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "GRACEFUL_TIMEOUT": "2", "WORKER_CONCURRENCY": "2"}


def done_outcomes(*workers: ServiceProcess) -> list[int]:
    """Ids of the items the workers logged as done (not "already done"), in order."""
    return [
        event["item_id"]
        for worker in workers
        for event in worker.events()
        if event["logger"] == WORKER_LOGGER and str(event["message"]).endswith(": done")
    ]


def stop_timed(worker: ServiceProcess) -> tuple[int, float]:
    """SIGTERM, then the exit code and how many seconds the worker took to exit."""
    started = time.monotonic()
    exit_code = worker.stop(timeout=STOP_TIMEOUT)
    return exit_code, time.monotonic() - started


def assert_no_job_lost(
    first_worker: Callable[[], tuple[tuple[int, float], ServiceProcess]],
    backlog: list[int],
    stop_env: dict[str, str],
    engine: Engine,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """Stop a first worker (as `first_worker` does), then let a second one finish the backlog."""
    (first_exit, first_took), first = first_worker()
    with running_worker(stop_env, tmp_path, "worker-2") as second:
        wait_until(
            lambda: len(done_outcomes(first, second)) >= BACKLOG or None,
            DRAIN_TIMEOUT,
            "the backlog finished by the second worker",
        )
        second_exit, second_took = stop_timed(second)

    assert (first_exit, second_exit) == (0, 0)
    # Jobs in hand get GRACEFUL_TIMEOUT; the platform's SIGKILL, 30 s after SIGTERM, is never needed.
    assert max(first_took, second_took) < int(stop_env["GRACEFUL_TIMEOUT"]) + STOP_MARGIN
    # Every job ran to completion exactly once, whichever worker ran it.
    assert sorted(done_outcomes(first, second)) == backlog
    items = items_by_id(engine)
    assert {items[item_id].status for item_id in backlog} == {ItemStatus.DONE}
    with redis.Redis.from_url(redis_url) as database:
        assert (database.llen(QUEUE), database.hlen(UNACKED)) == (0, 0)


def test_worker_stopped_one_second_after_start_loses_no_job(
    backlog: list[int], stop_env: dict[str, str], engine: Engine, redis_url: str, tmp_path: Path
) -> None:
    def stop_after_one_second() -> tuple[tuple[int, float], ServiceProcess]:
        with running("worker", stop_env, tmp_path, "worker-1") as first:
            time.sleep(1)
            return stop_timed(first), first

    assert_no_job_lost(stop_after_one_second, backlog, stop_env, engine, redis_url, tmp_path)


def test_worker_stopped_in_the_middle_of_a_backlog_loses_no_job(
    backlog: list[int], stop_env: dict[str, str], engine: Engine, redis_url: str, tmp_path: Path
) -> None:
    def stop_after_first_job() -> tuple[tuple[int, float], ServiceProcess]:
        with running_worker(stop_env, tmp_path, "worker-1") as first:
            wait_until(lambda: done_outcomes(first) or None, DRAIN_TIMEOUT, "a first job done")
            return stop_timed(first), first

    assert_no_job_lost(stop_after_first_job, backlog, stop_env, engine, redis_url, tmp_path)


def is_warm_shutdown(event: dict[str, Any]) -> bool:
    return bool(event["message"] == "worker: Warm shutdown (MainProcess)")


def test_worker_with_a_short_job_in_hand_stops_once_the_job_is_done_not_at_graceful_timeout(
    settings: Settings, engine: Engine, service_env: dict[str, str], tmp_path: Path
) -> None:
    # A grace period far longer than the bound below: a worker that waited it out would fail the test.
    env = {**service_env, "GRACEFUL_TIMEOUT": "25"}
    (item_id,) = add_items(engine, 1)
    producer = create_celery(settings)
    try:
        with running_worker(env, tmp_path) as worker, row_locked(engine, item_id) as holder:
            producer.send_task(PROCESS_ITEM, args=[item_id])
            wait_until(lambda: job_waits_for_a_lock(engine), DRAIN_TIMEOUT, "the job in hand")
            # As platforms send it: to every process of the worker, pool processes included.
            os.killpg(worker.process.pid, signal.SIGTERM)
            worker.wait_for_event(is_warm_shutdown, STOP_TIMEOUT)
            # The job, in hand through the stop request, finishes now.
            holder.rollback()
            try:
                exit_code = worker.process.wait(timeout=SHORT_JOB_STOP_BOUND)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running {SHORT_JOB_STOP_BOUND} s after its job:\n{worker.stdout}")
    finally:
        producer.close()

    assert exit_code == 0
    assert done_outcomes(worker) == [item_id]
    assert get_item(engine, item_id).status is ItemStatus.DONE
    assert worker.stderr == ""


def test_job_still_running_at_graceful_timeout_is_requeued_and_done_by_the_next_worker(
    settings: Settings,
    engine: Engine,
    stop_env: dict[str, str],
    redis_url: str,
    tmp_path: Path,
) -> None:
    grace = int(stop_env["GRACEFUL_TIMEOUT"])
    (item_id,) = add_items(engine, 1)
    producer = create_celery(settings)
    try:
        with row_locked(engine, item_id) as holder:
            with running_worker(stop_env, tmp_path, "worker-1") as first:
                producer.send_task(PROCESS_ITEM, args=[item_id])
                wait_until(lambda: job_waits_for_a_lock(engine), DRAIN_TIMEOUT, "the job in hand")
                started = time.monotonic()
                os.killpg(first.process.pid, signal.SIGTERM)
                # The job cannot finish while the lock is held: only the deadline stops this worker.
                first_exit = first.process.wait(timeout=grace + STOP_MARGIN)
                first_took = time.monotonic() - started
            holder.rollback()
        with running_worker(stop_env, tmp_path, "worker-2") as second:
            wait_until(lambda: done_outcomes(second) or None, DRAIN_TIMEOUT, "the job done by worker 2")
            second_exit = second.stop(timeout=STOP_TIMEOUT)
    finally:
        producer.close()

    assert (first_exit, second_exit) == (0, 0)
    # Cancelled at the deadline, not before: the job had its whole grace period.
    assert first_took >= grace
    # Every line of the stop, cancellation notices included, is a log event (`events()` parses each).
    assert done_outcomes(first, second) == [item_id]
    assert first.stderr == ""
    assert get_item(engine, item_id).status is ItemStatus.DONE
    with redis.Redis.from_url(redis_url) as database:
        assert (database.llen(QUEUE), database.hlen(UNACKED)) == (0, 0)

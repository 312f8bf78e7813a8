"""Job throughput: how many jobs per second go from "asked for" to "done", service and bare references."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import redis

from . import measure
from .backing import done_count
from .context import TEMPLATE_ROOT, Run
from .reference import bare_celery
from .report import Comparison

# Clients posting items at once: enough to keep a one-process web server busy without queueing in it.
POSTING_CLIENTS = 8
# How long a round may take before the benchmark gives up on it, and how often it looks.
ROUND_TIMEOUT = 120.0
POLL_INTERVAL = 0.01


def wait_until(reached: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + ROUND_TIMEOUT
    while not reached():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {ROUND_TIMEOUT:.0f} s")
        time.sleep(POLL_INTERVAL)


def post_items(port: int, count: int) -> list[int]:
    """POST `count` items from POSTING_CLIENTS keep-alive connections; returns their ids."""
    local = threading.local()

    def post(number: int) -> int:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"name": f"bench job {number}"})
        local.connection.request("POST", "/items", body, {"Content-Type": "application/json"})
        response = local.connection.getresponse()
        payload = response.read()
        if response.status != 201:
            raise RuntimeError(f"POST /items answered {response.status}: {payload!r}")
        item_id: int = json.loads(payload)["id"]
        return item_id

    with ThreadPoolExecutor(POSTING_CLIENTS) as clients:
        return list(clients.map(post, range(count)))


def items_done_per_second(port: int, database_url: str, count: int) -> float:
    """Items per second from the first POST /items to the last of them `done` (its job ran)."""
    started = time.monotonic()
    item_ids = post_items(port, count)
    wait_until(lambda: done_count(database_url, item_ids) == count, f"{count} items done")
    return count / (time.monotonic() - started)


def bare_tasks_per_second(broker_url: str, count: int, round_name: str) -> float:
    """Tasks per second from the first publish to the last task run, on a bare Celery worker."""
    app = bare_celery.create_app(broker_url)
    counter = redis.Redis.from_url(broker_url)
    key = f"bench:count:{round_name}"
    try:
        started = time.monotonic()
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                app.send_task(bare_celery.TASK, args=[key], producer=producer)
        wait_until(lambda: int(counter.get(key) or 0) == count, f"{count} bare tasks run")
        return count / (time.monotonic() - started)
    finally:
        counter.close()
        app.close()


def job_figures(run: Run) -> list[Comparison]:
    """The service's web and worker against the same work done bare, and against a bare task round trip."""
    service: list[float] = []
    bare_jobs: list[float] = []
    bare_tasks: list[float] = []
    service_port, reference_port = measure.free_port(), measure.free_port()
    with ExitStack() as stack:
        started: dict[str, tuple[list[str | Path], dict[str, str], Path]] = {
            "jobs web": (
                [run.script, "web"],
                run.service_env(PORT=str(service_port)),
                run.workdir,
            ),
            "worker": ([run.script, "worker"], run.service_env(), run.workdir),
            "bare jobs web": (
                run.uvicorn("bench.reference.bare_jobs:web", reference_port),
                run.reference_env(),
                TEMPLATE_ROOT,
            ),
            "bare jobs worker": (
                run.celery_worker("bench.reference.bare_jobs"),
                run.reference_env(),
                TEMPLATE_ROOT,
            ),
            "bare celery worker": (
                run.celery_worker("bench.reference.bare_celery"),
                run.reference_env(),
                TEMPLATE_ROOT,
            ),
        }
        processes = {
            name: stack.enter_context(measure.running(command, env=env, cwd=cwd, log=run.log_path(name)))
            for name, (command, env, cwd) in started.items()
        }
        measure.wait_for_status(service_port, "/healthz", processes["jobs web"], interval=0.1)
        measure.wait_for_status(reference_port, "/healthz", processes["bare jobs web"], interval=0.1)
        # One job each first: every worker is up and connected before anything is timed.
        items_done_per_second(service_port, run.database_url, 1)
        items_done_per_second(reference_port, run.database_url, 1)
        bare_tasks_per_second(run.redis_url, 1, "warm-up")
        for number in range(run.args.rounds):
            # Swap who goes first each round.
            sides = [(service, service_port), (bare_jobs, reference_port)]
            for figures, port in sides if number % 2 == 0 else reversed(sides):
                figures.append(items_done_per_second(port, run.database_url, run.args.jobs))
            bare_tasks.append(bare_tasks_per_second(run.redis_url, run.args.jobs, str(number)))
            run.say(
                f"jobs round {number + 1}: service {service[-1]:,.0f} items/s, bare jobs "
                f"{bare_jobs[-1]:,.0f} items/s, bare tasks {bare_tasks[-1]:,.0f} tasks/s"
            )
    return [
        Comparison(
            "jobs, `POST /items` to `done`",
            "items/s",
            service,
            "bare Starlette and Celery doing the same work",
            bare_jobs,
            (">=", 0.7),
        ),
        Comparison(
            "jobs, `POST /items` to `done` (old reference)",
            "items/s",
            service,
            "bare Celery task round trip",
            bare_tasks,
            None,
            reference_unit="tasks/s",
        ),
    ]

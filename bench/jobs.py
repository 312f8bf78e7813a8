"""Job throughput: how many jobs per second go from "asked for" to "done", service and bare Celery."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from .backing import done_count
from .reference.bare_celery import TASK, create_app

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


def service_jobs_per_second(port: int, database_url: str, count: int) -> float:
    """Items per second from the first POST /items to the last of them `done` (the worker's job ran)."""
    started = time.monotonic()
    item_ids = post_items(port, count)
    wait_until(lambda: done_count(database_url, item_ids) == count, f"{count} items done")
    return count / (time.monotonic() - started)


def bare_jobs_per_second(broker_url: str, count: int, round_name: str) -> float:
    """Tasks per second from the first publish to the last task run, on a bare Celery worker."""
    app = create_app(broker_url)
    counter = redis.Redis.from_url(broker_url)
    key = f"bench:count:{round_name}"
    try:
        started = time.monotonic()
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                app.send_task(TASK, args=[key], producer=producer)
        wait_until(lambda: int(counter.get(key) or 0) == count, f"{count} bare tasks run")
        return count / (time.monotonic() - started)
    finally:
        counter.close()
        app.close()

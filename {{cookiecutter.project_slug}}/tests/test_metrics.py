"""Metrics: Prometheus on METRICS_PORT, summed over every process when WEB_CONCURRENCY and WORKER_CONCURRENCY
are above 1, scraped for real from the running web and worker."""

from __future__ import annotations

from pathlib import Path

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.jobs.tasks import PROCESS_ITEM

from processes import free_port, running_web, running_worker, wait_until

REQUESTS = 20
# Every job done, on a busy 2-core machine.
JOBS_TIMEOUT = 60.0


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} from a real scrape of the endpoint."""
    text = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_and_jobs_are_counted_once_each_across_two_web_and_two_job_processes(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    web_metrics, worker_metrics = free_port(), free_port()
    base = {**service_env, "WEB_CONCURRENCY": "2", "WORKER_CONCURRENCY": "2"}
    web_env = {
        **base,
        "METRICS_PORT": str(web_metrics),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "web-metrics"),
    }
    worker_env = {
        **base,
        "METRICS_PORT": str(worker_metrics),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "worker-metrics"),
    }
    with running_web(web_env, tmp_path) as web, running_worker(worker_env, tmp_path) as worker:
        for number in range(REQUESTS):
            # A new connection each time, so both web processes take some of them.
            created = httpx2.post(f"{web.base_url}/items", json={"name": f"counted {number}"}, timeout=30)
            assert created.status_code == 201
        assert httpx2.get(f"{web.base_url}/items/0", timeout=30).status_code == 404
        worker_samples = wait_until(
            lambda: (
                samples
                if value(samples := scrape(worker_metrics), "jobs_total", job=PROCESS_ITEM, outcome="success")
                >= REQUESTS
                else None
            ),
            JOBS_TIMEOUT,
            "every job counted",
        )
        web_samples = scrape(web_metrics)
        public = httpx2.get(f"{web.base_url}/metrics", timeout=10)
        assert web.process.poll() is None
        assert worker.process.poll() is None

    post = {"method": "POST", "route": "/items", "status": "201"}
    assert value(web_samples, "http_requests_total", **post) == REQUESTS
    assert value(web_samples, "http_request_duration_seconds_count", **post) == REQUESTS
    # Errors are the same metric by status, under the route template rather than each id.
    missing = {"method": "GET", "route": "/items/{item_id}", "status": "404"}
    assert value(web_samples, "http_requests_total", **missing) == 1
    assert value(worker_samples, "jobs_total", job=PROCESS_ITEM, outcome="success") == REQUESTS
    job_durations = value(worker_samples, "job_duration_seconds_count", job=PROCESS_ITEM, outcome="success")
    assert job_durations == REQUESTS
    queue = ("queue", "{{ cookiecutter.package_name }}")
    assert ("jobs_queued", frozenset({queue})) in worker_samples
    assert any(name == "db_pool_connections_in_use" for name, _ in web_samples)
    assert any(name == "db_pool_connections_in_use" for name, _ in worker_samples)
    # Never on the public port.
    assert public.status_code == 404
    # Which processes wrote the numbers summed above (shown by `pytest -s`; the kernel picks who serves).
    for kind in ("web-metrics", "worker-metrics"):
        print(kind, sorted(path.name for path in (tmp_path / kind).glob("*.db")))

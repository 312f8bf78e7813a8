"""The web process under load: nothing lost when it is stopped, nothing growing while it runs.

Slow: the default bake is installed once and runs on a private PostgreSQL and Redis (see
fault_support.py), so the connections counted are the service's alone. Load is generated on loopback
by a bounded number of client threads, each making a bounded number of requests on fresh connections.
The numbers measured are printed (`pytest -s`).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_support import STARTUP, Servers, private_servers, reset, sql, started
from load_support import Outcome, request, rss_kib, run_load
from processes import http, poll
from support import InstalledService, Installer

pytestmark = pytest.mark.slow

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
# The web process's pools with default settings: reads keep DB_POOL_SIZE 10; writes keep 10 and may open
# DB_MAX_OVERFLOW 10 more under load.
POOL_SIZE = 10 + 10
POOL_BOUND = 10 + 10 + 10


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


def test_web_under_load_finishes_every_request_accepted_before_sigterm(
    service: InstalledService, servers: Servers, tmp_path: Path
) -> None:
    with started(service, servers, "web", tmp_path) as web:
        item_id = http("POST", f"{web.base_url}/items", {"name": "read under load"}).json()["id"]

        # When each answered request was sent: the signal waits for enough of them to count as accepted.
        sent: list[float] = []

        def make(number: int) -> Outcome:
            if number % 3 == 0:
                outcome = request(web.port, "POST", "/items", {"name": f"load {number}"})
            else:
                outcome = request(web.port, "GET", f"/items/{item_id}")
            sent.append(outcome.sent_at)
            return outcome

        def accepted_so_far() -> bool:
            before = time.monotonic() - ACCEPTED_MARGIN
            return sum(1 for sent_at in list(sent) if sent_at < before) >= REQUESTS_BEFORE_SIGTERM

        stop = threading.Event()
        results: list[list[Outcome]] = []
        load = threading.Thread(
            target=lambda: results.append(run_load(make, clients=8, per_client=400, stop=stop)), daemon=True
        )
        load.start()
        # Let the load build up until that many requests were sent ACCEPTED_MARGIN ago (a count, not a time
        # that a faster server would fill with fewer), then ask the web process to stop, as a platform does.
        assert poll(accepted_so_far, STARTUP)
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
    assert len(accepted) >= REQUESTS_BEFORE_SIGTERM
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
    # The pools' bound, and back to what they keep at rest.
    assert 0 < peak_connections <= POOL_BOUND
    assert idle_connections <= POOL_SIZE
    assert growth < RSS_GROWTH_BOUND_KIB

"""The benchmarks keep working: `make bench` (template and service) in a smoke mode, one short round.

These check that every figure is measured and that nothing failed under load; they never judge a figure's
size (speed is reported by the benchmark, not asserted by tests).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import TEMPLATE_DIR, Installer, assert_succeeded, clean_environment, run

pytestmark = pytest.mark.slow

BENCH_TIMEOUT = 900
# The baked service's own `make bench` measures these; the template's adds the rest.
SERVICE_ENDPOINT_ROWS = ("`GET /healthz`", "`GET /version`", "`GET /items/{id}`")
ENDPOINT_ROWS = (*SERVICE_ENDPOINT_ROWS, "`GET /items/{id}, tracing on`", "`GET /items/{id}, bearer token`")
COMPARISON_ROWS = (
    "start to first `/healthz` 200",
    "start to first `/healthz` 200 (old reference)",
    "RSS of a fresh web process after a 2 s burst",
    "peak RSS of the web process, after every round",
    "jobs, `POST /items` to `done`",
    "jobs, `POST /items` to `done` (old reference)",
)


def table_row(text: str, name: str) -> list[str]:
    """The cells of the one markdown table row that starts with `name`."""
    (row,) = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
    return [cell.strip() for cell in row.strip("|").split("|")]


def number(cell: str) -> float:
    """The figure at the start of a cell such as `1,234 ms` or `0.62`."""
    return float(cell.split()[0].replace(",", ""))


def test_make_bench_measures_every_endpoint_startup_memory_and_jobs_against_the_bare_stack(
    tmp_path: Path, backing_services: dict[str, str]
) -> None:
    out = tmp_path / "bench"
    smoke = ["BENCH_ROUNDS=1", "BENCH_SECONDS=1", "BENCH_JOBS=20", "BENCH_STARTS=1", f"BENCH_DIR={out}"]
    process = run(
        ["make", "bench", *smoke],
        cwd=TEMPLATE_DIR,
        env=clean_environment(**backing_services),
        timeout=BENCH_TIMEOUT,
    )
    assert_succeeded(process)

    results = (out / "results.md").read_text()
    assert results in process.stdout, "the table on stdout and in results.md differ"
    for name in ENDPOINT_ROWS:
        _, _, service, reference, ratio, *_, errors, _goal = table_row(results, name)
        assert min(number(cell) for cell in (service, reference, ratio)) > 0, name
        # Under load, neither the service nor a reference answered with an error or dropped a connection.
        assert errors == "0 / 0", f"{name}: {errors} errors (service / reference)"
    for name in COMPARISON_ROWS:
        _, service, reference, ratio, _goal = table_row(results, name)
        assert min(number(cell) for cell in (service, reference, ratio)) > 0, name
    # The traced web really exported its spans to the benchmark's receiver.
    exports = re.search(r"\(([\d,]+) exports, ", results)
    assert exports is not None, "the notes name no span exports"
    assert number(exports[1]) > 0, "no span export reached the OTLP receiver"


def test_baked_service_make_bench_measures_each_endpoint_startup_and_memory(
    install: Installer, backing_services: dict[str, str]
) -> None:
    installed = install("default")

    process = run(
        ["make", "bench", "BENCH_ARGS=--rounds 1 --seconds 1"],
        cwd=installed.project,
        env=clean_environment(**backing_services),
        timeout=BENCH_TIMEOUT,
    )
    assert_succeeded(process)

    for name in SERVICE_ENDPOINT_ROWS:
        _, requests_per_second, p50, p99, errors = table_row(process.stdout, name)
        assert min(number(cell) for cell in (requests_per_second, p50, p99)) > 0, name
        assert errors == "0", f"{name}: {errors} errors"
    for name in ("start to first `/healthz` 200", "peak RSS of the web process"):
        assert number(table_row(process.stdout, name)[1]) > 0, name

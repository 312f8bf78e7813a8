"""The results table: medians of alternating rounds, each figure next to its bare-stack reference."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence

from .measure import Load


@dataclasses.dataclass(frozen=True)
class EndpointRounds:
    """One service endpoint and its reference, measured in the same rounds."""

    endpoint: str
    reference: str
    # Service goal: the lowest acceptable median ratio of its req/s to the reference's, and optionally the
    # highest acceptable ratio of its p99 latency to the reference's.
    min_ratio: float | None
    max_p99_ratio: float | None
    rounds: list[tuple[Load, Load]] = dataclasses.field(default_factory=list)

    def median(self, figure: Callable[[Load, Load], float]) -> float:
        return statistics.median(figure(service, reference) for service, reference in self.rounds)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A figure that is not a load test: start-up, memory, jobs."""

    measure: str
    unit: str
    service: Sequence[float]
    reference_name: str
    reference: Sequence[float]
    # The goal on service / reference, as "<= 2.5" or ">= 0.5"; None when there is none.
    goal: tuple[str, float] | None
    # When the reference counts something else (tasks, not items).
    reference_unit: str | None = None


def met(value: float, goal: tuple[str, float] | None) -> str:
    if goal is None:
        return ""
    relation, bound = goal
    # Judged as printed: a ratio shown as 0.70 meets a goal of 0.7.
    shown = round(value, 2)
    held = shown <= bound if relation == "<=" else shown >= bound
    return f"{relation.replace('<=', '≤').replace('>=', '≥')} {bound:g} {'met' if held else 'NOT met'}"


def endpoint_table(endpoints: Sequence[EndpointRounds]) -> list[str]:
    lines = [
        "| endpoint | reference | service req/s | reference req/s | ratio | service p50 / p99 ms "
        "| reference p50 / p99 ms | p99 ratio | CPU µs/request | CPU ratio | errors | goal |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in endpoints:
        ratio = row.median(lambda s, r: s.requests_per_second / r.requests_per_second)
        p99_ratio = row.median(lambda s, r: s.p99_ms / max(r.p99_ms, 0.001))
        goals = [met(ratio, (">=", row.min_ratio))] if row.min_ratio is not None else []
        if row.max_p99_ratio is not None:
            goals.append("p99 " + met(p99_ratio, ("<=", row.max_p99_ratio)))
        errors = sum(service.errors for service, _ in row.rounds)
        reference_errors = sum(reference.errors for _, reference in row.rounds)
        lines.append(
            f"| `{row.endpoint}` | {row.reference} "
            f"| {row.median(lambda s, r: s.requests_per_second):,.0f} "
            f"| {row.median(lambda s, r: r.requests_per_second):,.0f} "
            f"| {ratio:.2f} "
            f"| {row.median(lambda s, r: s.p50_ms):.1f} / {row.median(lambda s, r: s.p99_ms):.1f} "
            f"| {row.median(lambda s, r: r.p50_ms):.1f} / {row.median(lambda s, r: r.p99_ms):.1f} "
            f"| {p99_ratio:.1f}x "
            f"| {row.median(lambda s, r: s.cpu_us_per_request):.0f} / "
            f"{row.median(lambda s, r: r.cpu_us_per_request):.0f} "
            f"| {row.median(lambda s, r: r.cpu_us_per_request / s.cpu_us_per_request):.2f} "
            f"| {errors} / {reference_errors} | {', '.join(goals)} |"
        )
    return lines


def comparison_table(comparisons: Sequence[Comparison]) -> list[str]:
    lines = [
        "| measure | service | reference | ratio | goal |",
        "|---|--:|---|--:|---|",
    ]
    for row in comparisons:
        service = statistics.median(row.service)
        reference = statistics.median(row.reference)
        ratio = service / reference
        lines.append(
            f"| {row.measure} | {service:,.0f} {row.unit} "
            f"| {reference:,.0f} {row.reference_unit or row.unit} ({row.reference_name}) "
            f"| {ratio:.2f} | {met(ratio, row.goal)} |"
        )
    return lines

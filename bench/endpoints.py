"""The load rounds: each service endpoint and its reference under wrk, alternating."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from . import issuer, measure, otlp
from .context import TEMPLATE_ROOT, Run
from .report import Comparison, EndpointRounds


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    command: list[str | Path]
    env: dict[str, str]
    cwd: Path
    # Answers 200 once the server is ready.
    ready_path: str


@dataclasses.dataclass(frozen=True)
class Target:
    """One row: what wrk loads on the service side and on the reference side."""

    row: EndpointRounds
    service: tuple[str, str]
    reference: tuple[str, str]
    # GET /items/<random id up to this> instead of the path.
    random_items: int | None = None
    # Sent by the service side only.
    service_headers: tuple[str, ...] = ()


def servers(run: Run, ports: dict[str, int], traces_endpoint: str, issuer_url: str) -> list[Server]:
    """The service as production runs it, the same with tracing on, and with bearer tokens required,
    and the bare references."""
    return [
        Server(
            "service web",
            [run.script, "web"],
            run.service_env(PORT=str(ports["service web"])),
            run.workdir,
            "/healthz",
        ),
        Server(
            "traced web",
            [run.script, "web"],
            run.service_env(
                PORT=str(ports["traced web"]),
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_ENDPOINT=traces_endpoint,
            ),
            run.workdir,
            "/healthz",
        ),
        Server(
            "guarded web",
            [run.script, "web"],
            run.service_env(
                PORT=str(ports["guarded web"]),
                API_OPEN="false",
                OIDC_ISSUER=issuer_url,
                OIDC_AUDIENCE=run.args.slug,
            ),
            run.workdir,
            "/healthz",
        ),
        Server(
            "hello",
            run.uvicorn("bench.reference.hello:app", ports["hello"]),
            run.reference_env(),
            TEMPLATE_ROOT,
            "/hello",
        ),
        Server(
            "pk read",
            run.uvicorn("bench.reference.pk_read:app", ports["pk read"]),
            run.reference_env(),
            TEMPLATE_ROOT,
            "/items/1",
        ),
    ]


def targets(item_count: int, token: str) -> list[Target]:
    hello = ("hello", "/hello")
    return [
        Target(
            EndpointRounds("GET /healthz", "bare Starlette JSON hello", 0.95, None),
            ("service web", "/healthz"),
            hello,
        ),
        Target(
            EndpointRounds("GET /version", "bare Starlette JSON hello", 0.55, None),
            ("service web", "/version"),
            hello,
        ),
        Target(
            EndpointRounds("GET /items/{id}", "raw asyncpg one-row read", 0.55, 1.5),
            ("service web", "/items/"),
            ("pk read", "/items/"),
            item_count,
        ),
        Target(
            EndpointRounds("GET /items/{id}, tracing on", "the service, tracing off", 0.8, None),
            ("traced web", "/items/"),
            ("service web", "/items/"),
            item_count,
        ),
        Target(
            EndpointRounds("GET /items/{id}, bearer token", "the service, open", None, None),
            ("guarded web", "/items/"),
            ("service web", "/items/"),
            item_count,
            (f"Authorization: Bearer {token}",),
        ),
    ]


@dataclasses.dataclass(frozen=True)
class WebFigures:
    endpoints: list[EndpointRounds]
    memory: Comparison
    # Span exports and bytes the traced web sent to the local OTLP receiver.
    exports: int
    export_bytes: int


class Rounds:
    def __init__(self, run: Run, ports: dict[str, int], pids: dict[str, int]) -> None:
        self.run = run
        self.ports = ports
        self.pids = pids

    def load(
        self, where: tuple[str, str], random_items: int | None, seconds: float, headers: tuple[str, ...] = ()
    ) -> measure.Load:
        server, path = where
        return measure.load(
            f"http://127.0.0.1:{self.ports[server]}{path}",
            server=self.pids[server],
            seconds=seconds,
            connections=self.run.args.connections,
            threads=self.run.args.threads,
            random_items=random_items,
            headers=headers,
        )

    def measure(self, rows: list[Target]) -> None:
        warm_up = min(2.0, self.run.args.seconds)
        seconds = self.run.args.seconds
        for target in rows:
            # Not counted: connections opened, statements prepared, the issuer's keys fetched.
            self.load(target.service, target.random_items, warm_up, target.service_headers)
            self.load(target.reference, target.random_items, warm_up)
        for number in range(self.run.args.rounds):
            for target in rows:
                # Swap who goes first each round, so a trend in the machine's load favours neither.
                if number % 2 == 0:
                    service = self.load(target.service, target.random_items, seconds, target.service_headers)
                    reference = self.load(target.reference, target.random_items, seconds)
                else:
                    reference = self.load(target.reference, target.random_items, seconds)
                    service = self.load(target.service, target.random_items, seconds, target.service_headers)
                target.row.rounds.append((service, reference))
                self.run.say(
                    f"round {number + 1} {target.row.endpoint}: {service.requests_per_second:,.0f} vs "
                    f"{reference.requests_per_second:,.0f} req/s"
                )


@contextmanager
def serving(run: Run, traces_endpoint: str, issuer_url: str) -> Iterator[Rounds]:
    """Every web server up and answering before this yields; all stopped after."""
    names = ("service web", "traced web", "guarded web", "hello", "pk read")
    ports = {name: measure.free_port() for name in names}
    pids: dict[str, int] = {}
    with ExitStack() as stack:
        for server in servers(run, ports, traces_endpoint, issuer_url):
            process = stack.enter_context(
                measure.running(server.command, env=server.env, cwd=server.cwd, log=run.log_path(server.name))
            )
            measure.wait_for_status(ports[server.name], server.ready_path, process, interval=0.1)
            pids[server.name] = process.pid
        yield Rounds(run, ports, pids)


def web_figures(run: Run, item_count: int) -> WebFigures:
    with (
        otlp.receiving() as receiver,
        issuer.running_issuer(run) as issuer_url,
        serving(run, receiver.endpoint, issuer_url) as rounds,
    ):
        rows = targets(item_count, issuer.token(issuer_url))
        rounds.measure(rows)
        # After every round: the high-water mark of the whole run.
        memory = Comparison(
            "peak RSS of the web process, after every round",
            "MiB",
            [measure.peak_rss_mib(rounds.pids["service web"])],
            "bare Starlette JSON hello",
            [measure.peak_rss_mib(rounds.pids["hello"])],
            None,
        )
    return WebFigures([target.row for target in rows], memory, receiver.exports, receiver.bytes)

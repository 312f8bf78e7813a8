"""The Starlette application factory: explicit wiring of routes, middleware, error handlers and lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from .. import telemetry  # drop: telemetry
from ..database import Reads, create_async_database_engine, session_factory
from ..events import incoming  # drop: events
from ..jobs.celery_app import create_celery, declare_embedded_queue, propagate_request_context
from ..jobs.publish import JobQueue
from ..logs import configure_logging
from ..schema import SchemaExpectation
from ..settings import Settings, load_settings
from . import health, items
from .auth import authentication, requires
from .edge import Edge
from .errors import EXCEPTION_HANDLERS
from .middleware.hosts import AllowedHosts
from .middleware.limits import BodyLimit
from .openapi import openapi_route  # drop: openapi
from .resources import Resources
from .shutdown import Draining, announce_stop_signals

PROBE_PATHS = frozenset({"/healthz", "/readyz"})
# Named in each 401's WWW-Authenticate challenge.
REALM = "{{ cookiecutter.project_slug }}"


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            engine = create_async_database_engine(settings)
            stack.push_async_callback(engine.dispose)
            reads = Reads(settings)
            stack.push_async_callback(reads.engine.dispose)
            celery = create_celery(settings)
            stack.callback(celery.close)
            declare_embedded_queue(celery, settings)
            propagate_request_context()
            authenticator = await stack.enter_async_context(authentication(settings.auth, REALM))
            stack.enter_context(telemetry.watching(settings, engine, reads))  # drop: telemetry
            jobs = JobQueue(celery, engine)
            # Before the engine closes: the last published jobs' outbox rows.
            stack.push_async_callback(jobs.close)
            resources = Resources(
                engine=engine,
                sessions=session_factory(engine),
                reads=reads,
                schema=SchemaExpectation.from_migrations(),
                jobs=jobs,
                draining=Draining(),
                authenticator=authenticator,
            )
            # Start-up's objects last as long as the process: collections skip them (bench/PROFILE.md).
            # The collector is off from `web`'s start (cli.py) until they are frozen.
            gc.freeze()
            gc.enable()
            with announce_stop_signals(resources.draining):
                # Starlette copies this into each request's `request.state`.
                yield {"resources": resources}

    routes: list[BaseRoute] = [
        Route("/healthz", health.healthz(), methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/version", health.version(settings.release_id), methods=["GET"]),
        # One route per path: Starlette's 405 names only the first matching route's methods in Allow.
        Route("/items", requires(items.items_collection), methods=["GET", "POST"]),
        Route("/items/{item_id}", requires(items.get_item), methods=["GET"]),
        incoming.route(settings.events),  # drop: events
    ]
    routes.append(openapi_route(routes))  # drop: openapi
    # Outermost first: refusals too get the security headers and a request id (web/edge.py).
    middleware = [
        *telemetry.web_middleware(settings, routes, PROBE_PATHS),  # drop: telemetry
        Middleware(
            Edge,
            hosts=AllowedHosts(settings.web.allowed_hosts, exempt_paths=PROBE_PATHS),
            body_limit=BodyLimit(settings.web.max_body_bytes),
            quiet_paths=PROBE_PATHS,
        ),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )


def app_from_environment() -> Starlette:
    """The factory uvicorn calls in each web process of `{{ cookiecutter.project_slug }} web`."""
    settings = load_settings()
    configure_logging(settings.logs.level, settings.logs.format, settings.release_id)
    telemetry.start_web_worker(settings)  # drop: telemetry
    return create_app(settings)

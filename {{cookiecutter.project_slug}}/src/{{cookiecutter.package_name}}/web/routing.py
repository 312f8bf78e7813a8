"""Route templates: what traces and metrics name a request by, so ids in paths don't make each one unique."""

from __future__ import annotations

from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def route_template(routes: list[BaseRoute], scope: Scope) -> str:
    """The template of the route taking this request (`/items/{item_id}`), or "unmatched"."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"

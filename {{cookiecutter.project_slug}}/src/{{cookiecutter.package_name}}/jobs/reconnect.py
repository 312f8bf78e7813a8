"""A worker whose broker went away consumes again within seconds of its return, however long it was gone.

Celery's worker retries a lost broker with kombu's schedule: 2 s, then 2 s longer each time, up to 30 s
between attempts, and Celery 5.7 has no setting for it. After an outage of a few minutes a worker would
sit idle for up to 30 s after the broker came back. Capped at 5 s, a worker costs the broker one refused
connection every 5 s while it is down, and is back at most 5 s after it returns.
"""

from __future__ import annotations

from typing import Any

from kombu.connection import Connection

# The longest wait between two attempts to reach a broker that went away.
RECONNECT_INTERVAL_MAX = 5.0
# `ensure_connection(errback, max_retries, interval_start, interval_step, interval_max, ...)`
INTERVAL_MAX_POSITION = 4


class PromptlyReconnecting(Connection):
    """A broker connection that retries at most `RECONNECT_INTERVAL_MAX` seconds apart, unless told."""

    def ensure_connection(self, *args: Any, **kwargs: Any) -> Connection:
        if len(args) <= INTERVAL_MAX_POSITION:
            kwargs.setdefault("interval_max", RECONNECT_INTERVAL_MAX)
        # kombu leaves this method unannotated; it returns the connection itself.
        super().ensure_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        return self

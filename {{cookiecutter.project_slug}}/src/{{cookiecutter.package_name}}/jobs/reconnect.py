"""A worker whose broker went away consumes again within seconds of its return, however long it was gone.

kombu's schedule retries up to 30 s apart, and Celery 5.7 has no setting for it.
"""

from __future__ import annotations

from typing import Any

from kombu.connection import Connection

# Costs a down broker one refused connection per interval.
RECONNECT_INTERVAL_MAX = 5.0
# Where `interval_max` comes in `ensure_connection`'s positional arguments.
INTERVAL_MAX_POSITION = 4


class PromptlyReconnecting(Connection):
    def ensure_connection(self, *args: Any, **kwargs: Any) -> Connection:
        if len(args) <= INTERVAL_MAX_POSITION:
            kwargs.setdefault("interval_max", RECONNECT_INTERVAL_MAX)
        # kombu leaves this method unannotated; it returns the connection itself.
        super().ensure_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        return self

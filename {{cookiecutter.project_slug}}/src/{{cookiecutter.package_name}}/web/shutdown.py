"""Readiness ends the moment a stop is requested, before in-flight requests have drained.

uvicorn installs its own SIGTERM/SIGINT handlers while it serves; `announce_stop_signals` chains onto them
so that `/readyz` answers 503 from the first signal on, while uvicorn goes on finishing in-flight requests
for up to GRACEFUL_TIMEOUT seconds. A load balancer polling readiness then stops routing here first.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Draining:
    """Whether this process has been asked to stop."""

    def __init__(self) -> None:
        self.started = False

    def begin(self) -> None:
        if not self.started:
            self.started = True
            logger.info("Stop requested: /readyz now answers 503 while in-flight requests finish")


@contextmanager
def announce_stop_signals(draining: Draining) -> Iterator[None]:
    """While active, a stop signal marks `draining` before reaching the server's own handler."""
    if threading.current_thread() is not threading.main_thread():
        # Signal handlers live in the main thread; an app run elsewhere (a test client) has none to chain.
        yield
        return
    previous = {stop: signal.getsignal(stop) for stop in STOP_SIGNALS}

    def on_stop(signum: int, frame: FrameType | None) -> None:
        draining.begin()
        handler = previous[signal.Signals(signum)]
        if callable(handler):
            handler(signum, frame)

    for stop in STOP_SIGNALS:
        signal.signal(stop, on_stop)
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)

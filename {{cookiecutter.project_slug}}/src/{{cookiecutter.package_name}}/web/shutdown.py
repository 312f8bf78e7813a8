"""Readiness ends the moment a stop is requested, before in-flight requests have drained."""

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
        # Only the main thread has signal handlers (a test client's app has none).
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

"""Connections end with a FIN the client can read up to, never with a reset.

Closing a socket with the client's bytes unread in it resets the connection, losing the unread response.
So every close lingers, as nginx's `lingering_close`: FIN, then discard what still comes, within bounds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .server import ServingConfig, ServingState

# Long enough to finish writing a body begun before reading the 413.
LINGER_SECONDS = 3.0
LINGER_BODIES = 8
# At a stop, an idle connection's request already on its way is still answered.
IDLE_GRACE_SECONDS = 0.5


class LingeringTransport(asyncio.Transport):
    def __init__(self, transport: asyncio.Transport, linger: Callable[[], None]) -> None:
        super().__init__()
        self.transport, self.linger = transport, linger
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.linger()

    def is_closing(self) -> bool:
        return self.closed or self.transport.is_closing()

    def abort(self) -> None:
        self.closed = True
        self.transport.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.transport.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def is_reading(self) -> bool:
        return self.transport.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.transport.get_protocol()


class LingeringHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        max_body_bytes = config.max_body_bytes if isinstance(config, ServingConfig) else 0
        self.linger_bytes = LINGER_BODIES * max_body_bytes
        self.lingering = False
        self.discarded = 0
        self.raw: asyncio.Transport | None = None
        self.timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, but have every method of one.
        self.raw = cast(asyncio.Transport, transport)
        super().connection_made(LingeringTransport(self.raw, self.linger))

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self.timers:
            timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self.lingering:
            super().data_received(data)
            return
        self.discarded += len(data)
        if self.discarded > self.linger_bytes and self.raw is not None:
            self.raw.close()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.stopping and self.cycle is not None:
            # Tells the client, or the router, to take its next request elsewhere.
            self.cycle.keep_alive = False

    @property
    def stopping(self) -> bool:
        return isinstance(self.server_state, ServingState) and self.server_state.stopping

    def idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def shutdown(self) -> None:
        """The server stops: close after the response in progress, or, if idle, after IDLE_GRACE_SECONDS."""
        if not self.idle():
            self.cycle.keep_alive = False
        elif not self.timers:
            self.timers.append(self.loop.call_later(IDLE_GRACE_SECONDS, self.close_if_idle))

    def close_if_idle(self) -> None:
        if self.idle():
            self.transport.close()

    def linger(self) -> None:
        """In place of the transport's close: FIN after what was written, then discard what still comes."""
        raw = self.raw
        if self.lingering or raw is None or raw.is_closing():
            return
        self.lingering = True
        self._unset_keepalive_if_required()
        if not raw.can_write_eof():
            raw.close()
            return
        raw.write_eof()
        # uvicorn may have paused reading (a body it did not want yet): the discarding reads it now.
        raw.resume_reading()
        # The client's own close (eof_received) ends the linger sooner.
        self.timers.append(self.loop.call_later(LINGER_SECONDS, raw.close))

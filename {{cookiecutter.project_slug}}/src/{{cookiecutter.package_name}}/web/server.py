"""uvicorn's server and supervisor, stopping so that no connection the kernel accepted is reset.

On SIGTERM the door shuts first (door.py) and the server accepts until the queue is empty; then uvicorn's own
graceful shutdown runs. With workers, the supervisor alone shuts the shared socket's door.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Sequence
from multiprocessing.synchronize import Event
from types import FrameType
from typing import Any

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.server import Server, ServerState
from uvicorn.supervisors import ChangeReload
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from . import door

logger = logging.getLogger(__name__)

# Handshakes begun before the door shut complete within a round trip to the router; well within this.
SETTLE_SECONDS = 0.1
# Accepting a full queue takes milliseconds; the bound is for a server too busy to accept at all.
DRAIN_SECONDS = 2.0
POLL_SECONDS = 0.01


class ServingConfig(Config):
    def __init__(self, app: str, *, max_body_bytes: int, **options: Any) -> None:
        super().__init__(app, **options)
        self.max_body_bytes = max_body_bytes
        # Whether this process shuts the door, or waits for the supervisor's event (never under --reload).
        self.shuts_door = False
        self.door_shut: Event | None = None


class ServingState(ServerState):
    def __init__(self) -> None:
        super().__init__()
        self.stopping = False


def drained(listeners: Sequence[socket.socket], door_is_shut: bool, elapsed: float) -> bool:
    return door_is_shut and elapsed >= SETTLE_SECONDS and door.queued(listeners) == 0


class DrainingServer(Server):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.serving_state = self.server_state = ServingState()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # From the signal on, every response tells its client to take the next request elsewhere.
        self.serving_state.stopping = True
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        listeners = [listener for server in self.servers for listener in server.sockets]
        await self.shut_door(listeners)
        await super().shutdown(sockets)

    async def shut_door(self, listeners: Sequence[socket.socket]) -> None:
        """Shut the door (or wait for the supervisor to), then keep accepting until the queue is empty."""
        config = self.config
        if not isinstance(config, ServingConfig) or not door.supported() or not listeners:
            return
        if config.shuts_door:
            door.shut(listeners)
        elif config.door_shut is None:
            return
        supervisor_shut = config.door_shut
        for connection in list(self.serving_state.connections):
            connection.shutdown()
        logger.info("Door shut: answering %d queued connections first", door.queued(listeners))
        started = time.monotonic()
        # A worker the supervisor only replaces (SIGHUP, SIGTTOU) waits this out: the door stays open.
        for _ in range(int(DRAIN_SECONDS / POLL_SECONDS)):
            elapsed = time.monotonic() - started
            door_is_shut = supervisor_shut is None or supervisor_shut.is_set()
            if elapsed > DRAIN_SECONDS or drained(listeners, door_is_shut, elapsed):
                return
            await asyncio.sleep(POLL_SECONDS)


class DrainingProcess(Process):
    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


class DrainingMultiprocess(Multiprocess):
    """uvicorn's supervisor with DrainingServer workers (its worker-starting methods: uvicorn 0.54's)."""

    def __init__(self, config: ServingConfig, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.serving = config

    def terminate_all(self) -> None:
        # Called once, when the supervisor itself stops: the workers still accept while the queue empties.
        if door.supported() and self.serving.door_shut is not None:
            door.shut(self.sockets)
            self.serving.door_shut.set()
            started = time.monotonic()
            for _ in range(int(DRAIN_SECONDS / POLL_SECONDS)):
                elapsed = time.monotonic() - started
                if elapsed > DRAIN_SECONDS or drained(self.sockets, True, elapsed):
                    break
                time.sleep(POLL_SECONDS)
        super().terminate_all()

    def new_process(self) -> Process:
        process = DrainingProcess(self.config, self.sockets)
        process.start()
        return process

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            self.processes.append(self.new_process())

    def restart_all(self) -> None:
        for idx, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self.new_process()
            if not new_process.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    logger.error("Worker [%s] not ready; keeping [%s]", new_process.pid, old_process.pid)
                return
            old_process.terminate()
            old_process.join()
            self.processes[idx] = new_process

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error("Worker [%s] failed to start, stopping the web process", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info("Worker [%s] died", process.pid)
            self.processes[idx] = self.new_process()

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self.new_process())


def serve(config: ServingConfig) -> None:
    if config.should_reload:
        server = DrainingServer(config)
        ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
        return
    if config.workers > 1:
        import multiprocessing

        config.door_shut = multiprocessing.get_context("spawn").Event()
        DrainingMultiprocess(config, sockets=[config.bind_socket()]).run()
        return
    config.shuts_door = True
    server = DrainingServer(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)

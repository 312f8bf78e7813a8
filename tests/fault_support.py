"""Private backing services that the fault tests may stop, freeze and start, and the service's processes
running on them.

The shared PostgreSQL (5432) and Redis (6379) are never touched: each fault test module starts its own
`redis-server` and its own PostgreSQL cluster (`initdb` + `pg_ctl`, run as the `postgres` user because
PostgreSQL refuses to run as root) on free ports, in a temporary folder of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import DEVNULL, Popen
from typing import Any

import pytest
from processes import answers_health, free_port, http, poll, process_group
from support import InstalledService, assert_succeeded, clean_environment, run

# Seconds a private server may take to start or stop on a busy machine.
SERVER_TIMEOUT = 60.0


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps them out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    if not found:
        pytest.fail("no PostgreSQL server programs under /usr/lib/postgresql (apt-get install postgresql)")
    return found[-1].parent


def as_postgres(*command: str | Path) -> list[str]:
    """`command` run as the `postgres` user when we are root (PostgreSQL refuses to run as root)."""
    argv = [str(part) for part in command]
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port; `stop()` and `start()` it at will."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.bin = postgres_bin()

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        command = as_postgres(
            self.bin / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8"
        )
        assert_succeeded(run(command, cwd=self.folder, timeout=SERVER_TIMEOUT))

    def start(self) -> None:
        # TCP on 127.0.0.1 only; the socket in our own folder, never the shared server's /var/run/postgresql.
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        command = as_postgres(
            self.bin / "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.folder / "server.log",
            "-o",
            options,
            "-w",
            "start",
        )
        assert_succeeded(run(command, cwd=self.folder, timeout=SERVER_TIMEOUT))

    def stop(self) -> None:
        # "fast": the server ends every session at once, as a crash or failover does to its clients.
        command = as_postgres(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        assert_succeeded(run(command, cwd=self.folder, timeout=SERVER_TIMEOUT))

    def postmaster_and_children(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> None:
        """Stop every server process in place (SIGSTOP): connections stay open and nothing answers, as
        when a server hangs or the network drops packets. The postmaster first, so it forks no more."""
        for pid in self.postmaster_and_children():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in reversed(self.postmaster_and_children()):
            os.kill(pid, signal.SIGCONT)

    def is_running(self) -> bool:
        status = run(as_postgres(self.bin / "pg_ctl", "-D", self.data, "status"), cwd=self.folder, timeout=30)
        return status.returncode == 0


@contextlib.contextmanager
def private_folder(prefix: str) -> Iterator[Path]:
    """A folder under /tmp that the postgres user owns (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    with private_folder("tf-faults-pg-") as folder:
        server = PrivatePostgres(folder)
        server.init()
        server.start()
        try:
            yield server
        finally:
            if server.is_running():
                server.stop()


class PrivateRedis:
    """A Redis server on a free port, with no persistence; `stop()` and `start()` it at will."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no",
            "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        self.process = Popen(command, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        if not poll(lambda: self.answers(), SERVER_TIMEOUT, interval=0.05):
            pytest.fail(f"the private redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=SERVER_TIMEOUT)
        self.process = None

    def answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    with private_folder("tf-faults-redis-") as folder:
        server = PrivateRedis(folder)
        server.start()
        try:
            yield server
        finally:
            if server.process is not None:
                server.stop()


# --- SQL through the service's own driver (the template's venv has none) ------------------------------------

SQL_RUNNER = """
import json, sys
import psycopg

url, query = sys.argv[1:3]
with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
    cursor = connection.execute(query)
    print(json.dumps(cursor.fetchall() if cursor.description else [], default=str))
"""


def sql(installed: InstalledService, url: str, query: str) -> list[list[Any]]:
    process = run([installed.bin / "python", "-c", SQL_RUNNER, url, query], cwd=installed.project, timeout=60)
    assert_succeeded(process)
    rows: list[list[Any]] = json.loads(process.stdout)
    return rows


ROW_LOCKER = """
import sys, time
import psycopg

url, item_id = sys.argv[1], int(sys.argv[2])
with psycopg.connect(url, connect_timeout=10) as connection:
    connection.execute("SELECT id FROM items WHERE id = %s FOR UPDATE", (item_id,))
    print("locked", flush=True)
    with psycopg.connect(url, autocommit=True) as observer:
        for _ in range(600):
            waiting = observer.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]
            if waiting:
                print("waited on", flush=True)
                break
            time.sleep(0.1)
    sys.stdin.readline()
    connection.rollback()
print("released", flush=True)
"""


@contextlib.contextmanager
def row_locked(installed: InstalledService, url: str, item_id: int) -> Iterator[Popen[str]]:
    """Hold item `item_id`'s row lock in another session until the block ends; a job for it waits."""
    locker = Popen(
        [str(installed.bin / "python"), "-c", ROW_LOCKER, url, str(item_id)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        yield locker
    finally:
        if locker.poll() is None:
            locker.kill()
        locker.wait(timeout=30)


# --- The service's processes on the private servers -----------------------------------------------------

# Shared by every process of one test run, as on a platform.
SECRET_KEY = secrets.token_urlsafe(48)
# Seconds a process may take to start on a busy machine.
STARTUP = 120.0


@dataclasses.dataclass(frozen=True)
class Servers:
    postgres: PrivatePostgres
    redis: PrivateRedis
    database_url: str


@contextlib.contextmanager
def private_servers(service: InstalledService) -> Iterator[Servers]:
    """A private PostgreSQL cluster with the service's database migrated, and a private Redis."""
    with private_postgres() as postgres, private_redis() as redis:
        sql(service, postgres.server_url, "CREATE DATABASE faults")
        database_url = postgres.server_url.rsplit("/", 1)[0] + "/faults"
        env = clean_environment(
            DATABASE_URL=database_url, REDIS_URL=redis.url, SECRET_KEY=SECRET_KEY, API_OPEN="true"
        )
        assert_succeeded(run([service.script, "migrate"], cwd=service.project, env=env, timeout=120))
        yield Servers(postgres, redis, database_url)


def reset(service: InstalledService, servers: Servers) -> Servers:
    """Both private servers running (an earlier test may have failed with one stopped), with no items,
    no outbox rows and an empty broker."""
    if not servers.postgres.is_running():
        servers.postgres.start()
    if servers.redis.process is None:
        servers.redis.start()
    sql(service, servers.database_url, "TRUNCATE items, job_outbox RESTART IDENTITY")
    cli = ["redis-cli", "-p", str(servers.redis.port), "flushall"]
    assert_succeeded(run(cli, cwd=service.project, timeout=30))
    return servers


@dataclasses.dataclass
class Running:
    """A service process started by a test: its process, output file and (for web) base URL."""

    process: subprocess.Popen[bytes]
    output: Path
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.output.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    found.append(event)
        return found

    def messages(self) -> list[str]:
        return [str(event.get("message")) for event in self.events()]


@contextlib.contextmanager
def started(
    service: InstalledService, servers: Servers, command: str, tmp_path: Path, **settings: str
) -> Iterator[Running]:
    """`<slug> <command>` on the private servers, default settings plus `settings`; killed at the end."""
    port = free_port()
    env = clean_environment(
        DATABASE_URL=servers.database_url,
        REDIS_URL=servers.redis.url,
        SECRET_KEY=SECRET_KEY,
        API_OPEN="true",
        LOG_FORMAT="json",
        PORT=str(port),
        **settings,
    )
    output = tmp_path / f"{command}-{port}.log"
    workdir = tmp_path / "workdir"
    workdir.mkdir(exist_ok=True)
    with process_group([service.script, command], workdir, env, output) as process:
        running = Running(process, output, port)
        if command == "web":
            assert answers_health(running.base_url), f"web never answered /healthz:\n{output.read_text()}"
        if command == "worker":
            ready = poll(lambda: any(m.endswith(" ready.") for m in running.messages()), STARTUP)
            assert ready, f"the worker never said it was ready:\n{output.read_text()}"
        yield running


def item_status(web: Running, item_id: int) -> str | None:
    answer = http("GET", f"{web.base_url}/items/{item_id}", timeout=10)
    return str(answer.json()["status"]) if answer.status == 200 else None


def wait_until_done(web: Running, item_id: int, bound: float) -> float:
    """Seconds until the item is done; fails the test past `bound`."""
    began = time.monotonic()
    assert poll(lambda: item_status(web, item_id) == "done", bound), (
        f"item {item_id} not done within {bound} s"
    )
    return time.monotonic() - began

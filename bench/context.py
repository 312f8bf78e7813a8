"""What every part of a benchmark run shares: its options, its backing services, how to start a process."""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
import time
from pathlib import Path

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Run:
    args: argparse.Namespace
    database_url: str
    redis_url: str
    # The service's working directory: no .env there, so it sees only what the benchmark exports.
    workdir: Path
    # Each process's output, from this run only: the service's JSON lines are its log sink.
    logs: Path

    @property
    def python(self) -> Path:
        """The service's interpreter: the references run on the same Starlette, uvicorn, asyncpg, Celery."""
        service: Path = self.args.service
        return service / ".venv" / "bin" / "python"

    @property
    def script(self) -> Path:
        service: Path = self.args.service
        return service / ".venv" / "bin" / str(self.args.slug)

    def service_env(self, **extra: str) -> dict[str, str]:
        """The service's production configuration: defaults everywhere, JSON logs, one web process."""
        return {
            **self.base_env(),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": secrets.token_urlsafe(48),
            # The bare references check no token either.
            "API_OPEN": "true",
            "LOG_FORMAT": "json",
            "RELEASE_ID": "bench",
            **extra,
        }

    def reference_env(self) -> dict[str, str]:
        return {**self.base_env(), "BENCH_DSN": self.database_url, "BENCH_BROKER_URL": self.redis_url}

    @staticmethod
    def base_env() -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
        }

    def uvicorn(self, app: str, port: int) -> list[str | Path]:
        """A reference app under the service's uvicorn, with the same choices as `<slug> web`."""
        return [
            *(self.python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)),
            *("--no-access-log", "--log-level", "warning", "--no-server-header"),
        ]

    def celery_worker(self, app: str) -> list[str | Path]:
        """A reference Celery worker with the service worker's concurrency (WORKER_CONCURRENCY = 2)."""
        return [
            *(self.python, "-m", "celery", "-A", app, "worker", "-c", "2"),
            *("--without-mingle", "--without-gossip", "-l", "WARNING"),
        ]

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name.replace(' ', '-')}.log"

    @staticmethod
    def say(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

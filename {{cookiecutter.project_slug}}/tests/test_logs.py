"""Factor XI: one stream of events on stdout, one line per event, in one format; never a file."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import select
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from {{ cookiecutter.package_name }}.logs import (
    configure_logging,
    request_id,
)

from processes import COMMAND_TIMEOUT, STARTUP_TIMEOUT, console_script, run_command, running_web

if TYPE_CHECKING:
    from starlette.testclient import TestClient

ACCESS_LOGGER = "{{ cookiecutter.package_name }}.web.access"
TEST_LOGGER = "{{ cookiecutter.package_name }}.test"
CLI_LOGGER = "{{ cookiecutter.package_name }}.cli"
AT_HEAD = "Database schema is at head"


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of the output parsed as JSON; fails on any line that is not one JSON object."""
    events = [json.loads(line) for line in output.splitlines()]
    assert all(isinstance(event, dict) for event in events)
    return events


def access_events(output: str) -> list[dict[str, Any]]:
    return [event for event in json_lines(output) if event["logger"] == ACCESS_LOGGER]


def test_json_format_writes_one_object_per_line_with_time_level_logger_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(logging.INFO, "json")

    logging.getLogger(TEST_LOGGER).info("hello %s", "world", extra={"answer": 42})
    logging.getLogger(TEST_LOGGER).warning("two\nlines")

    first, second = json_lines(capsys.readouterr().out)
    assert set(first) >= {"time", "level", "logger", "message"}
    assert first["level"] == "INFO"
    assert first["logger"] == TEST_LOGGER
    assert first["message"] == "hello world"
    assert first["answer"] == 42
    assert second["message"] == "two\nlines"


def test_json_time_is_utc_iso_8601_with_milliseconds(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json")

    before = int(time.time() * 1000) / 1000
    logging.getLogger(TEST_LOGGER).info("now")
    after = time.time()

    (event,) = json_lines(capsys.readouterr().out)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00", event["time"])
    logged = datetime.fromisoformat(event["time"])
    assert logged.utcoffset() == UTC.utcoffset(None)
    assert before <= logged.timestamp() <= after


def test_alembic_plugin_announcements_are_not_logged(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json")

    logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.schemas")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade")

    assert [event["logger"] for event in json_lines(capsys.readouterr().out)] == ["alembic.runtime.migration"]


def test_json_format_includes_the_exception(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json")

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger(TEST_LOGGER).exception("failed")

    (event,) = json_lines(capsys.readouterr().out)
    assert event["level"] == "ERROR"
    assert "RuntimeError: boom" in event["exception"]


def test_access_line_of_a_request_carries_its_request_id(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(logging.INFO, "json")

    client.get("/items", headers={"X-Request-ID": "trace-in-the-log"})

    (event,) = access_events(capsys.readouterr().out)
    assert event["request_id"] == "trace-in-the-log"
    assert event["method"] == "GET"
    assert event["path"] == "/items"
    assert event["status"] == 200
    assert isinstance(event["duration_ms"], float | int)


def test_probes_are_not_access_logged(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json")

    client.get("/healthz")
    client.get("/readyz")
    client.get("/items/12345")

    assert [event["path"] for event in access_events(capsys.readouterr().out)] == ["/items/12345"]


def test_console_format_is_one_readable_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "console")

    token = request_id.set("console-id")
    try:
        logging.getLogger(TEST_LOGGER).warning("disk at %d%%", 91, extra={"mount": "/data"})
    finally:
        request_id.reset(token)

    (line,) = capsys.readouterr().out.splitlines()
    assert not line.startswith("{")
    assert f" WARNING {TEST_LOGGER} disk at 91% " in line
    assert "mount=/data" in line
    assert "request_id=console-id" in line


def test_log_level_drops_lower_events(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.WARNING, "json")

    logging.getLogger(TEST_LOGGER).info("hidden")
    logging.getLogger(TEST_LOGGER).warning("shown")

    assert [event["message"] for event in json_lines(capsys.readouterr().out)] == ["shown"]


def test_configuring_twice_leaves_exactly_one_root_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json")
    configure_logging(logging.INFO, "json")

    logging.getLogger("uvicorn.error").info("once")

    assert len(logging.getLogger().handlers) == 1
    assert [event["message"] for event in json_lines(capsys.readouterr().out)] == ["once"]


def test_no_log_handler_writes_to_a_file(client: TestClient) -> None:
    configure_logging(logging.INFO, "json")
    client.get("/items")

    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    file_handlers = [
        (logger.name, handler)
        for logger in loggers
        for handler in logger.handlers
        if isinstance(handler, logging.FileHandler)
    ]
    assert file_handlers == []


def test_every_json_line_names_the_release_that_wrote_it(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json", release="v42-abc1234")

    logging.getLogger(TEST_LOGGER).info("one")
    logging.getLogger("uvicorn.error").info("two")

    assert [event["release"] for event in json_lines(capsys.readouterr().out)] == ["v42-abc1234"] * 2


def test_web_start_up_says_where_it_listens_and_nothing_of_library_internals(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    def is_listening(event: dict[str, Any]) -> bool:
        return str(event["message"]).startswith("Uvicorn running on")

    with running_web(service_env, tmp_path) as web:
        listening = web.wait_for_event(is_listening, STARTUP_TIMEOUT)
        start_up = web.events()

    assert listening["logger"] == "uvicorn.error"
    # Alembic's "setup plugin" lines, one per plugin, used to open every start.
    assert [event["message"] for event in start_up if event["logger"].startswith("alembic")] == []
    assert web.stderr == ""


def output_at_a_terminal(command: list[str], env: dict[str, str], cwd: Path) -> str:
    """What `command` writes when its stdout and stderr are a pseudo-terminal, as in a person's shell."""
    primary, secondary = pty.openpty()
    chunks: list[bytes] = []
    with subprocess.Popen(
        command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary
    ):
        os.close(secondary)
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while time.monotonic() < deadline:
            readable, _, _ = select.select([primary], [], [], deadline - time.monotonic())
            try:
                chunk = os.read(primary, 65536) if readable else b""
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
    os.close(primary)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_with_log_format_unset_a_terminal_gets_readable_lines_and_anything_else_json(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {name: value for name, value in service_env.items() if name != "LOG_FORMAT"}

    at_a_terminal = output_at_a_terminal([console_script(), "migrate"], env, tmp_path)
    piped = run_command(["migrate"], env, tmp_path)

    (line,) = [line for line in at_a_terminal.splitlines() if AT_HEAD in line]
    assert not line.startswith("{"), at_a_terminal
    assert f" INFO    {CLI_LOGGER} {AT_HEAD}" in line
    assert "release=" in line
    assert piped.returncode == 0, piped.stderr
    (event,) = [event for event in json_lines(piped.stdout) if event["message"].startswith(AT_HEAD)]
    assert (event["logger"], event["level"]) == (CLI_LOGGER, "INFO")
    assert "release" in event

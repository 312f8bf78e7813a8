"""Factor XII: every process type and admin task is a subcommand of one console script."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.schema import head_revisions
from {{ cookiecutter.package_name }}.settings import Settings

from conftest import SECRET_KEY, schema_of, url_string
from processes import json_events

CLI_LOGGER = "{{ cookiecutter.package_name }}.cli"


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])

    assert result.exit_code == 0
    for command in ("web", "worker", "clock", "release", "check", "migrate", "config", "shell"):
        assert f"  {command} " in result.stdout


def test_config_prints_every_setting_with_secrets_masked(
    environment: pytest.MonkeyPatch, database_url: URL, redis_url: str
) -> None:
    environment.setenv("DATABASE_URL", url_string(database_url.set(password="db-hunter2")))
    environment.setenv("REDIS_URL", redis_url)
    environment.setenv("SECRET_KEY", SECRET_KEY)
    environment.setenv("API_OPEN", "true")

    result = CliRunner().invoke(main, ["config"])

    assert result.exit_code == 0, result.output
    assert "SECRET_KEY=********" in result.stdout.splitlines()
    masked = f"postgresql://postgres:***@{database_url.host}:{database_url.port}/{database_url.database}"
    assert f"DATABASE_URL={masked}" in result.stdout.splitlines()
    assert SECRET_KEY not in result.output
    assert "db-hunter2" not in result.output


def test_config_error_exits_78_naming_every_bad_variable_on_stderr(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("REDIS_URL", "http://not-redis")
    environment.setenv("PORT", "abc")

    result = CliRunner().invoke(main, ["config"])

    assert result.exit_code == os.EX_CONFIG == 78
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PORT"):
        assert name in result.stderr
    assert result.stdout == ""


def test_migrate_is_idempotent(
    environment: pytest.MonkeyPatch, empty_database_url: URL, redis_url: str
) -> None:
    environment.setenv("DATABASE_URL", url_string(empty_database_url))
    environment.setenv("REDIS_URL", redis_url)
    environment.setenv("SECRET_KEY", SECRET_KEY)
    environment.setenv("API_OPEN", "true")

    first = CliRunner().invoke(main, ["migrate"])
    second = CliRunner().invoke(main, ["migrate"])

    assert (first.exit_code, second.exit_code) == (0, 0), first.output + second.output
    # A log event on stdout, like every other line the command writes.
    (at_head,) = [event for event in json_events(second.stdout) if event["logger"] == CLI_LOGGER]
    assert at_head["message"] == f"Database schema is at head {', '.join(sorted(head_revisions()))}"
    assert at_head["level"] == "INFO"
    revisions, tables = schema_of(empty_database_url)
    assert revisions == head_revisions()
    assert "items" in tables


def test_shell_runs_stdin_with_settings_session_and_select_loaded(
    settings: Settings, environment: pytest.MonkeyPatch
) -> None:
    environment.setenv("PORT", "8123")
    code = "print(settings.web.port, session.execute(select(1)).scalar())\n"

    result = CliRunner().invoke(main, ["shell"], input=code)

    assert result.exit_code == 0, result.output
    # The interactive prompt goes to stdout too; what the code printed follows it.
    assert "8123 1" in result.stdout.replace(">>> ", "").splitlines()
    assert "Loaded: settings, engine, session, models, select" in result.stderr

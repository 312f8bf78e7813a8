"""`<slug> check`, the release-time audit: one line per problem naming its variable and factor, and an exit
status that says why a release must stop (78 misconfigured, 69 a backing service unavailable, 0 sound)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import NullPool, create_engine, inspect
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.database import sync_url
from {{ cookiecutter.package_name }}.schema import head_revisions

from conftest import (
    UNREACHABLE_DATABASE_URL,
    UNREACHABLE_REDIS_URL,
    url_string,
)
from processes import run_command

# A build's release id: without one, `check` warns (factor V).
RELEASE_ID = "build-7"
# `check` reads where the identity provider is but does not ask it: an API with one is sound.
GUARDED = (
    ("OIDC_ISSUER", "https://login.example.com"),
    ("OIDC_AUDIENCE", "{{ cookiecutter.project_slug }}"),
)


def check_json(*variables: tuple[str, str], unset: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    """`check --format json` in process, with the `settings` fixture's environment changed as given."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RELEASE_ID", RELEASE_ID)
        patch.delenv("API_OPEN", raising=False)
        for name, value in GUARDED:
            patch.setenv(name, value)
        for name in unset:
            patch.delenv(name)
        for name, value in variables:
            patch.setenv(name, value)
        result = CliRunner().invoke(main, ["check", "--format", "json"])
    document: dict[str, Any] = json.loads(result.stdout)
    return result.exit_code, document


def guarded(env: dict[str, str]) -> dict[str, str]:
    """`env` with an identity provider instead of API_OPEN."""
    return {**{name: value for name, value in env.items() if name != "API_OPEN"}, **dict(GUARDED)}


def problems(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(problem["severity"], problem["variable"], problem["factor"]) for problem in document["problems"]]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections into its backlog and never answers (as behind a dropping firewall)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


# --- The three outcomes, from the console script in its own process ----------------------------------------


def test_check_exits_0_on_a_sound_configuration_and_reports_the_schema(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_command(["check"], {**guarded(service_env), "RELEASE_ID": RELEASE_ID}, tmp_path)

    assert result.returncode == os.EX_OK, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"schema: at head {', '.join(sorted(head_revisions()))}",
        "check: sound (exit 0)",
    ]


def test_check_exits_78_naming_secret_key_when_it_is_a_placeholder(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_command(["check"], {**service_env, "SECRET_KEY": "changethis"}, tmp_path)

    assert result.returncode == os.EX_CONFIG
    (problem,) = [line for line in result.stdout.splitlines() if line.startswith("ERROR ")]
    assert problem.startswith("ERROR SECRET_KEY (factor III): ")
    assert "placeholder" in problem
    assert result.stdout.splitlines()[-1] == "check: misconfigured (exit 78)"


def test_check_exits_69_naming_database_url_when_the_database_is_unreachable(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_command(["check"], {**service_env, "DATABASE_URL": UNREACHABLE_DATABASE_URL}, tmp_path)

    assert result.returncode == os.EX_UNAVAILABLE
    (problem,) = [line for line in result.stdout.splitlines() if line.startswith("UNAVAILABLE ")]
    assert problem.startswith("UNAVAILABLE DATABASE_URL (factor IV): no answer: ")
    assert result.stdout.splitlines()[-1] == "check: unavailable (exit 69)"


def test_check_gives_up_on_a_silent_database_within_its_timeout(
    service_env: dict[str, str], tmp_path: Path, silent_port: int
) -> None:
    silent = f"postgresql://postgres@127.0.0.1:{silent_port}/silent"
    # run_command's own timeout (30 s) fails the test if check waits without a bound.
    env = {**guarded(service_env), "DATABASE_URL": silent, "RELEASE_ID": RELEASE_ID}
    result = run_command(["check", "--format", "json"], env, tmp_path)

    assert result.returncode == os.EX_UNAVAILABLE
    assert problems(json.loads(result.stdout)) == [("unavailable", "DATABASE_URL", "IV")]


# --- Each rule, in process ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("settings")
def test_check_exits_69_naming_redis_url_when_the_broker_is_unreachable() -> None:
    status, document = check_json(("REDIS_URL", UNREACHABLE_REDIS_URL))

    assert status == os.EX_UNAVAILABLE
    assert document["status"] == "unavailable"
    assert problems(document) == [("unavailable", "REDIS_URL", "IV")]


@pytest.mark.usefixtures("settings")
def test_check_refuses_trusting_every_proxy_without_the_explicit_opt_in() -> None:
    refused_status, refused = check_json(("FORWARDED_ALLOW_IPS", "127.0.0.1, *"))
    accepted_status, accepted = check_json(("FORWARDED_ALLOW_IPS", "*"), ("FORWARDED_ALLOW_ALL", "true"))

    assert refused_status == os.EX_CONFIG
    assert problems(refused) == [("error", "FORWARDED_ALLOW_IPS", "VII")]
    assert "FORWARDED_ALLOW_ALL=true" in refused["problems"][0]["message"]
    assert (accepted_status, problems(accepted)) == (os.EX_OK, [])


@pytest.mark.usefixtures("settings")
def test_check_refuses_a_database_and_a_queue_in_local_files_without_creating_them(tmp_path: Path) -> None:
    status, document = check_json(
        ("DATABASE_URL", f"sqlite:///{tmp_path / 'app.sqlite3'}"),
        ("BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"),
    )

    assert status == os.EX_CONFIG
    assert problems(document) == [("error", "DATABASE_URL", "VI"), ("error", "BROKER_URL", "VI")]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("settings")
def test_check_warns_of_debug_logging_but_stays_sound() -> None:
    status, document = check_json(("LOG_LEVEL", "DEBUG"))

    assert status == os.EX_OK
    assert document["status"] == "sound"
    assert problems(document) == [("warning", "LOG_LEVEL", "XI")]


@pytest.mark.usefixtures("settings")
def test_check_warns_of_a_wildcard_in_allowed_hosts_but_stays_sound() -> None:
    status, document = check_json(("ALLOWED_HOSTS", "*"))

    assert status == os.EX_OK
    assert problems(document) == [("warning", "ALLOWED_HOSTS", "VII")]


@pytest.mark.usefixtures("settings")
def test_check_warns_of_an_open_api_but_stays_sound() -> None:
    status, document = check_json(("API_OPEN", "true"), unset=("OIDC_ISSUER", "OIDC_AUDIENCE"))

    assert status == os.EX_OK
    assert problems(document) == [("warning", "API_OPEN", "IV")]


@pytest.mark.usefixtures("settings")
def test_check_warns_when_no_build_names_the_release_but_stays_sound() -> None:
    status, document = check_json(unset=("RELEASE_ID",))

    assert status == os.EX_OK
    assert problems(document) == [("warning", "RELEASE_ID", "V")]


@pytest.mark.usefixtures("settings")
def test_check_names_every_invalid_variable_at_once() -> None:
    status, document = check_json(("PORT", "abc"), ("SECRET_KEY", "short"), unset=("DATABASE_URL",))

    assert status == os.EX_CONFIG
    assert document["schema"] == "not checked (settings invalid)"
    assert sorted(problems(document)) == [
        ("error", "DATABASE_URL", "III"),
        ("error", "PORT", "III"),
        ("error", "SECRET_KEY", "III"),
    ]


@pytest.mark.usefixtures("settings")
def test_check_reports_a_database_never_migrated_and_leaves_it_so(empty_database_url: URL) -> None:
    status, document = check_json(("DATABASE_URL", url_string(empty_database_url)))

    assert status == os.EX_OK
    assert document["schema"].startswith("never migrated")
    engine = create_engine(sync_url(empty_database_url), poolclass=NullPool)
    with engine.connect() as connection:
        assert inspect(connection).get_table_names() == []
    engine.dispose()

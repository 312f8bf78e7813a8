"""Factor III: configuration comes from the environment, is validated at start, and every problem is named."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.settings import (
    ConfigurationError,
    environment_names,
    load_settings,
)

from conftest import SECRET_KEY, problems_of, url_string

ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
# `NAME=value` (a variable to set) or `# NAME=value` (an optional one, showing its default).
EXAMPLE_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
# The zero-server broker: a queue in a local file (never opened by these tests).
SQLITE_BROKER_URL = "sqla+sqlite:///broker.sqlite3"


def example_lines() -> list[re.Match[str]]:
    return [match for line in ENV_EXAMPLE.read_text().splitlines() if (match := EXAMPLE_LINE.match(line))]


def test_every_missing_or_invalid_variable_is_named_in_one_error(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    environment.setenv("PORT", "abc")

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {"DATABASE_URL", "SECRET_KEY", "PORT", "OIDC_ISSUER"}
    for name in ("DATABASE_URL", "SECRET_KEY", "PORT", "OIDC_ISSUER"):
        assert name in str(error.value)


def test_an_api_is_guarded_by_an_issuer_unless_it_is_explicitly_open(required: pytest.MonkeyPatch) -> None:
    required.delenv("API_OPEN")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert problems_of(error) == {"OIDC_ISSUER"}
    assert "API_OPEN=true" in str(error.value)

    required.setenv("OIDC_ISSUER", "https://login.example.com")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert problems_of(error) == {"OIDC_AUDIENCE"}

    required.setenv("OIDC_AUDIENCE", "{{ cookiecutter.project_slug }}")
    assert load_settings().auth.issuer == "https://login.example.com"

    required.setenv("API_OPEN", "true")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert problems_of(error) == {"API_OPEN"}


def test_an_issuer_that_is_no_http_url_is_named(required: pytest.MonkeyPatch) -> None:
    required.delenv("API_OPEN")
    required.setenv("OIDC_ISSUER", "login.example.com")
    required.setenv("OIDC_AUDIENCE", "{{ cookiecutter.project_slug }}")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert problems_of(error) == {"OIDC_ISSUER"}


def test_defaults_apply_to_every_optional_variable(required: pytest.MonkeyPatch) -> None:
    settings = load_settings()

    assert settings.web.port == 8000
    assert settings.web.concurrency == 1
    assert settings.web.forwarded_allow_ips == "127.0.0.1"
    assert settings.logs.level == logging.INFO
    assert settings.logs.format == "json"
    assert settings.database.pool_size == 10
    assert settings.database.max_overflow == 10
    assert settings.graceful_timeout == 20
    assert settings.jobs.broker_url is None
    assert settings.jobs.concurrency == 2
    assert settings.jobs.time_limit == 300
    assert settings.web.allowed_hosts == ("localhost", "127.0.0.1", "[::1]")
    assert settings.web.max_body_bytes == 1024 * 1024


def test_dotenv_in_the_working_directory_is_read(
    environment: pytest.MonkeyPatch, tmp_path: Path, database_url: URL, redis_url: str
) -> None:
    (tmp_path / ".env").write_text(
        f"DATABASE_URL={url_string(database_url)}\nREDIS_URL={redis_url}\nSECRET_KEY={SECRET_KEY}\nPORT=9001\n"
        "API_OPEN=true\n"
    )

    settings = load_settings()

    assert settings.database.url == database_url
    assert settings.secret_key == SECRET_KEY
    assert settings.web.port == 9001


def test_dotenv_never_overrides_an_exported_variable(required: pytest.MonkeyPatch, tmp_path: Path) -> None:
    required.setenv("PORT", "9002")
    (tmp_path / ".env").write_text(f"PORT=9001\nSECRET_KEY={'d' * 40}\n")

    settings = load_settings()

    assert settings.web.port == 9002
    assert settings.secret_key == SECRET_KEY


def test_dotenv_in_a_parent_folder_is_not_read(
    environment: pytest.MonkeyPatch, tmp_path: Path, database_url: URL, redis_url: str
) -> None:
    (tmp_path / ".env").write_text(
        f"DATABASE_URL={url_string(database_url)}\nREDIS_URL={redis_url}\nSECRET_KEY={SECRET_KEY}\n"
    )
    child = tmp_path / "child"
    child.mkdir()
    environment.chdir(child)

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "OIDC_ISSUER"}


@pytest.mark.parametrize("secret_key", ["change-me", "changethis", "secret", "dev", "", "s" * 31])
def test_placeholder_or_short_secret_key_is_refused(required: pytest.MonkeyPatch, secret_key: str) -> None:
    required.setenv("SECRET_KEY", secret_key)

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {"SECRET_KEY"}


def test_secret_key_of_32_characters_is_accepted(required: pytest.MonkeyPatch) -> None:
    required.setenv("SECRET_KEY", "s" * 32)

    assert load_settings().secret_key == "s" * 32


def test_unsupported_database_scheme_is_refused(required: pytest.MonkeyPatch) -> None:
    required.setenv("DATABASE_URL", "mysql://root:pw@127.0.0.1:3306/app")

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {"DATABASE_URL"}
    assert "mysql" in str(error.value)


def test_non_redis_redis_url_is_refused(required: pytest.MonkeyPatch) -> None:
    required.setenv("REDIS_URL", "http://127.0.0.1:6379/0")

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {"REDIS_URL"}


def test_jobs_go_to_redis_url_when_broker_url_is_unset(required: pytest.MonkeyPatch, redis_url: str) -> None:
    settings = load_settings()

    assert settings.jobs.broker_url is None
    assert settings.jobs.broker == redis_url


def test_redis_url_may_be_unset_when_broker_url_is_set(required: pytest.MonkeyPatch) -> None:
    required.delenv("REDIS_URL")
    required.setenv("BROKER_URL", SQLITE_BROKER_URL)

    settings = load_settings()

    assert settings.jobs.redis_url is None
    assert settings.jobs.broker == SQLITE_BROKER_URL


def test_broker_url_wins_over_redis_url(required: pytest.MonkeyPatch) -> None:
    required.setenv("BROKER_URL", "redis://127.0.0.1:6379/9")

    assert load_settings().jobs.broker == "redis://127.0.0.1:6379/9"


def test_redis_url_is_named_when_neither_it_nor_broker_url_is_set(required: pytest.MonkeyPatch) -> None:
    required.delenv("REDIS_URL")

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {"REDIS_URL"}
    assert "BROKER_URL" in str(error.value)


@pytest.mark.parametrize(
    "broker_url", ["http://127.0.0.1:6379/0", "amqp://guest@127.0.0.1//", "sqla+mysql://root@127.0.0.1/q"]
)
def test_broker_url_with_an_unsupported_scheme_is_refused(
    required: pytest.MonkeyPatch, broker_url: str
) -> None:
    required.setenv("BROKER_URL", broker_url)

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {"BROKER_URL"}


def test_empty_broker_url_means_unset(required: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> None:
    # As `.env.example` shows it (`# BROKER_URL=`), uncommented into a `.env`.
    (tmp_path / ".env").write_text("BROKER_URL=\n")

    settings = load_settings()

    assert settings.jobs.broker_url is None
    assert settings.jobs.broker == redis_url


def test_empty_broker_url_and_redis_url_name_redis_url(required: pytest.MonkeyPatch) -> None:
    required.setenv("REDIS_URL", "")
    required.setenv("BROKER_URL", "")

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {"REDIS_URL"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GRACEFUL_TIMEOUT", "30"),
        ("GRACEFUL_TIMEOUT", "-1"),
        ("WORKER_CONCURRENCY", "0"),
        ("WORKER_CONCURRENCY", "65"),
        ("JOB_TIME_LIMIT", "0"),
    ],
)
def test_job_and_shutdown_settings_out_of_range_are_refused(
    required: pytest.MonkeyPatch, name: str, value: str
) -> None:
    required.setenv(name, value)

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {name}


# One malformed value (wrong type, range or form) for every variable that has a type, range or form.
MALFORMED = {
    "DATABASE_URL": "not a url",
    "REDIS_URL": "http://127.0.0.1:6379/0",
    "BROKER_URL": "ftp://127.0.0.1/queue",
    "SECRET_KEY": "too-short",
    "PORT": "http",
    "WEB_CONCURRENCY": "0",
    "LOG_LEVEL": "LOUD",
    "LOG_FORMAT": "xml",
    "DB_POOL_SIZE": "ten",
    "DB_MAX_OVERFLOW": "-1",
    "FORWARDED_ALLOW_ALL": "sometimes",
    "GRACEFUL_TIMEOUT": "30",
    "WORKER_CONCURRENCY": "1.5",
    "JOB_TIME_LIMIT": "0",
    "ALLOWED_HOSTS": "https://example.com",
    "MAX_BODY_BYTES": "1MB",
    "OIDC_ISSUER": "login.example.com",
    "API_OPEN": "yes please",
    "EVENTS_URL": "ftp://other.example.com/events",  # drop: events
    "EVENTS_SECRET": "too-short",  # drop: events
    "EVENTS_SECRET_PREVIOUS": "too-short",  # drop: events
    "EVENTS_MAX_ATTEMPTS": "0",  # drop: events
    "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318",  # drop: tracing
    "OTEL_TRACES_EXPORTER": "zipkin",  # drop: tracing
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",  # drop: tracing
    "METRICS_PORT": "metrics",  # drop: metrics
    "SENTRY_DSN": "not a url",  # drop: error-reports
    "SENTRY_SEND_REQUEST_BODIES": "sometimes",  # drop: error-reports
}
# Free text: any value is a valid proxy list (uvicorn reads it), audience, release name, service name or
# directory.
FREE_TEXT = {
    "FORWARDED_ALLOW_IPS",
    "OIDC_AUDIENCE",
    "RELEASE_ID",
    "OTEL_SERVICE_NAME",  # drop: tracing
    "PROMETHEUS_MULTIPROC_DIR",  # drop: metrics
}


def test_every_typed_variable_has_a_malformed_case_here() -> None:
    # A variable added to settings.py without a case below fails here: keep the next test complete.
    assert set(MALFORMED) == set(environment_names()) - FREE_TEXT


def test_every_malformed_variable_is_named_in_one_error(environment: pytest.MonkeyPatch) -> None:
    for name, value in MALFORMED.items():
        environment.setenv(name, value)

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == set(MALFORMED)
    for name in MALFORMED:
        assert f"  {name}: " in str(error.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_BODY_BYTES", "abc"),
        ("MAX_BODY_BYTES", "0"),
        ("MAX_BODY_BYTES", "1023"),
        ("MAX_BODY_BYTES", str(100 * 1024 * 1024 + 1)),
        ("ALLOWED_HOSTS", ""),
        ("ALLOWED_HOSTS", " , "),
        ("ALLOWED_HOSTS", "example.com:8000"),
        ("ALLOWED_HOSTS", "example.com/api"),
        ("ALLOWED_HOSTS", "exa mple.com"),
        ("ALLOWED_HOSTS", "*example.com"),
        ("ALLOWED_HOSTS", "api.*.example.com"),
    ],
)
def test_web_input_settings_of_a_wrong_type_range_or_form_are_refused(
    required: pytest.MonkeyPatch, name: str, value: str
) -> None:
    required.setenv(name, value)

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {name}


def test_allowed_hosts_are_trimmed_and_lowercased(required: pytest.MonkeyPatch) -> None:
    required.setenv("ALLOWED_HOSTS", " API.Example.com ,*.Example.org,[::1], 10.0.0.1 ")

    assert load_settings().web.allowed_hosts == ("api.example.com", "*.example.org", "[::1]", "10.0.0.1")


def test_allowed_hosts_star_anywhere_in_the_list_allows_any_host(required: pytest.MonkeyPatch) -> None:
    required.setenv("ALLOWED_HOSTS", "example.com,*")

    assert load_settings().web.allowed_hosts == ("*",)


def test_displayed_masks_the_secret_key_and_url_passwords(required: pytest.MonkeyPatch) -> None:
    required.setenv("DATABASE_URL", "postgres://app:db-hunter2@db.example.com:5432/app")
    required.setenv("REDIS_URL", "redis://:redis-hunter2@cache.example.com:6379/0")
    required.setenv("BROKER_URL", "rediss://:broker-hunter2@queue.example.com:6380/0")

    displayed = dict(load_settings().displayed())

    assert list(displayed) == environment_names()
    assert displayed["SECRET_KEY"] == "********"
    assert displayed["DATABASE_URL"] == "postgres://app:***@db.example.com:5432/app"
    assert displayed["REDIS_URL"] == "redis://:***@cache.example.com:6379/0"
    assert displayed["BROKER_URL"] == "rediss://:***@queue.example.com:6380/0"
    assert displayed["LOG_LEVEL"] == "INFO"
    shown = "\n".join(displayed.values())
    for secret in (SECRET_KEY, "db-hunter2", "redis-hunter2", "broker-hunter2"):
        assert secret not in shown


def test_repr_never_shows_the_secret_key_or_database_password(required: pytest.MonkeyPatch) -> None:
    required.setenv("DATABASE_URL", "postgres://app:db-hunter2@db.example.com:5432/app")

    shown = repr(load_settings())

    assert SECRET_KEY not in shown
    assert "db-hunter2" not in shown


def test_env_example_lists_exactly_the_settings_variables() -> None:
    names = [match["name"] for match in example_lines()]

    assert len(names) == len(set(names)), "a variable is listed twice"
    assert sorted(names) == sorted(environment_names())


def test_env_example_documents_the_real_defaults(required: pytest.MonkeyPatch) -> None:
    documented = {match["name"]: match["value"] for match in example_lines() if match["comment"]}
    assert documented, "no `# NAME=default` line found"
    implicit = load_settings()

    for name, value in documented.items():
        required.setenv(name, value)
    explicit = load_settings()

    assert explicit == implicit


def test_release_id_is_unknown_when_nothing_provides_it(required: pytest.MonkeyPatch) -> None:
    required.delenv("HEROKU_RELEASE_VERSION", raising=False)

    assert load_settings().release_id == "unknown"


def test_release_id_comes_from_the_image_build_argument(required: pytest.MonkeyPatch) -> None:
    required.setenv("RELEASE_ID", "3f2c9e1")
    required.setenv("HEROKU_RELEASE_VERSION", "v42")

    assert load_settings().release_id == "3f2c9e1"


def test_release_id_falls_back_to_herokus_release_version(required: pytest.MonkeyPatch) -> None:
    # An image built without --build-arg RELEASE_ID carries an empty value: that means unset.
    required.setenv("RELEASE_ID", "")
    required.setenv("HEROKU_RELEASE_VERSION", "v42")

    assert load_settings().release_id == "v42"

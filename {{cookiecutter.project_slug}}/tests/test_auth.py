"""Bearer tokens against a real issuer process (tests/issuer.py) and real web processes (web/auth.py).

One issuer and one web process serve the module; the tests that stop an issuer or swap it start their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from jwt import PyJWK
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.web.issuer import REFRESH_FLOOR
from {{ cookiecutter.package_name }}.web.tokens import LEEWAY_SECONDS, Principal, Verified

from conftest import service_environment
from issuer import IssuerProcess, running_issuer
from processes import ServiceProcess, running_web, running_worker, wait_until

# All in one xdist worker: they share the issuer and the web process.
pytestmark = pytest.mark.xdist_group("auth")

AUDIENCE = "{{ cookiecutter.project_slug }}"
REALM = 'Bearer realm="{{ cookiecutter.project_slug }}"'


def guarded_environment(database_url: URL, redis_url: str, issuer_url: str) -> dict[str, str]:
    env = service_environment(database_url, redis_url)
    del env["API_OPEN"]
    return {**env, "OIDC_ISSUER": issuer_url, "OIDC_AUDIENCE": AUDIENCE}


@pytest.fixture(scope="module")
def issuer() -> Iterator[IssuerProcess]:
    with running_issuer() as issuer:
        yield issuer


@pytest.fixture(scope="module")
def guarded_web(
    issuer: IssuerProcess, database_url: URL, redis_keyspace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = guarded_environment(database_url, redis_keyspace, issuer.url)
    with running_web(env, tmp_path_factory.mktemp("guarded")) as web:
        yield web


def get(web: ServiceProcess, path: str, token: str | None = None, **headers: str) -> httpx2.Response:
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx2.get(web.base_url + path, headers=headers, timeout=30)


def create(web: ServiceProcess, token: str) -> httpx2.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx2.post(web.base_url + "/items", json={"name": "x"}, headers=headers, timeout=30)


def assert_refused(response: httpx2.Response, status: int, error: str | None) -> None:
    """A JSON error body with `status`, and RFC 6750's challenge naming `error` (or none)."""
    assert response.status_code == status, response.text
    assert response.json()["error"]["status"] == status
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(REALM)
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge


def test_a_valid_token_reads_and_writes(guarded_web: ServiceProcess, issuer: IssuerProcess) -> None:
    token = issuer.token()
    assert get(guarded_web, "/items", token).status_code == 200
    created = create(guarded_web, token)
    assert created.status_code == 201, created.text
    assert get(guarded_web, created.headers["location"], token).status_code == 200


def test_no_token_is_401_with_a_bare_challenge(guarded_web: ServiceProcess) -> None:
    assert_refused(get(guarded_web, "/items"), 401, None)
    assert_refused(httpx2.post(guarded_web.base_url + "/items", json={"name": "x"}), 401, None)


OPEN_PATHS = [
    "/healthz",
    "/readyz",
    "/version",
    "/openapi.json",  # drop: openapi
]


def test_probes_version_and_contract_stay_open(guarded_web: ServiceProcess) -> None:
    for path in OPEN_PATHS:
        assert get(guarded_web, path).status_code == 200, path


# Claims relative to the moment the token is made: (name, seconds from now, or a value, or None to omit).
WRONG_CLAIMS: dict[str, tuple[str, Any]] = {
    "expired": ("exp", -120),
    "not-yet-valid": ("nbf", 120),
    "wrong-audience": ("aud", "another-service"),
    "wrong-issuer": ("iss", "http://127.0.0.1:1/impostor"),
    "no-expiry": ("exp", None),
    "no-subject": ("sub", None),
}


@pytest.mark.parametrize("case", WRONG_CLAIMS)
def test_a_token_with_a_wrong_claim_is_401_invalid_token(
    guarded_web: ServiceProcess, issuer: IssuerProcess, case: str
) -> None:
    name, value = WRONG_CLAIMS[case]
    if isinstance(value, int):
        value = int(time.time()) + value
    assert_refused(get(guarded_web, "/items", issuer.token(**{name: value})), 401, "invalid_token")


def test_clock_skew_within_the_leeway_is_accepted(guarded_web: ServiceProcess, issuer: IssuerProcess) -> None:
    token = issuer.token(exp=int(time.time()) - 5, nbf=int(time.time()) + 5)
    assert get(guarded_web, "/items", token).status_code == 200


@pytest.mark.parametrize("signer", ["rogue", "none", "hmac-with-public-key"])
def test_a_token_not_signed_by_a_published_key_pair_is_401(
    guarded_web: ServiceProcess, issuer: IssuerProcess, signer: str
) -> None:
    """A key the issuer never published, `alg: none`, and HS256 keyed with the public key (the confusion)."""
    assert_refused(get(guarded_web, "/items", issuer.token(signer)), 401, "invalid_token")


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c"])
def test_garbage_in_place_of_a_token_is_401(guarded_web: ServiceProcess, token: str) -> None:
    assert_refused(get(guarded_web, "/items", token), 401, "invalid_token")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer two tokens", "bearer"])
def test_a_malformed_authorization_header_is_400_invalid_request(
    guarded_web: ServiceProcess, header: str
) -> None:
    assert_refused(get(guarded_web, "/items", authorization=header), 400, "invalid_request")


def test_a_missing_scope_is_403_naming_it(guarded_web: ServiceProcess, issuer: IssuerProcess) -> None:
    reader = issuer.token(scope="items:read")
    assert get(guarded_web, "/items", reader).status_code == 200
    refused = create(guarded_web, reader)
    assert_refused(refused, 403, "insufficient_scope")
    assert 'scope="items:write"' in refused.headers["www-authenticate"]
    # Some issuers list scopes in `scp`.
    assert create(guarded_web, issuer.token(scope=None, scp=["items:write"])).status_code == 201
    assert_refused(get(guarded_web, "/items", issuer.token(scope=None)), 403, "insufficient_scope")


def test_the_subject_is_logged_and_the_token_never(
    guarded_web: ServiceProcess, issuer: IssuerProcess
) -> None:
    token = issuer.token(sub="reader-42")
    response = get(guarded_web, "/items?limit=3", token)
    rid = response.headers["x-request-id"]
    line = guarded_web.wait_for_event(lambda event: event.get("request_id") == rid, 30)
    assert line["subject"] == "reader-42"
    assert line["status"] == 200
    assert token not in guarded_web.stdout
    assert token.split(".")[2] not in guarded_web.stdout


def test_forged_key_ids_cannot_make_the_service_hammer_the_issuer(
    guarded_web: ServiceProcess, issuer: IssuerProcess
) -> None:
    forged = [issuer.token("rogue", jti=str(number)) for number in range(20)]
    before = issuer.fetches()["jwks"]
    started = time.monotonic()
    for token in forged:
        assert get(guarded_web, "/items", token).status_code == 401
    elapsed = time.monotonic() - started
    # One fetch per REFRESH_FLOOR at most, however many forged ids arrive (a slow machine may span two).
    assert issuer.fetches()["jwks"] - before <= 1 + int(elapsed / REFRESH_FLOOR)


def test_the_service_follows_a_key_rotation_within_one_refresh(
    guarded_web: ServiceProcess, issuer: IssuerProcess
) -> None:
    old = issuer.token()
    assert get(guarded_web, "/items", old).status_code == 200
    issuer.rotate()
    new = issuer.token()
    before = issuer.fetches()["jwks"]
    # Until the refresh floor has passed, the new key may be unknown; then one fetch finds it.
    accepted = wait_until(
        lambda: get(guarded_web, "/items", new).status_code == 200, REFRESH_FLOOR + 30, "the new key accepted"
    )
    assert accepted
    assert issuer.fetches()["jwks"] - before == 1
    # The issuer no longer publishes the old key.
    assert_refused(get(guarded_web, "/items", old), 401, "invalid_token")


def test_issuer_down_cached_keys_still_verify_and_uncached_ones_are_503(
    database_url: URL, redis_keyspace: str, tmp_path: Path
) -> None:
    with running_issuer() as issuer:
        env = guarded_environment(database_url, redis_keyspace, issuer.url)
        token = issuer.token()
        (tmp_path / "cached").mkdir()
        (tmp_path / "cold").mkdir()
        with running_web(env, tmp_path / "cached") as cached, running_web(env, tmp_path / "cold") as cold:
            assert get(cached, "/items", token).status_code == 200
            issuer.stop()
            assert get(cached, "/items", token).status_code == 200
            refused = get(cold, "/items", token)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["status"] == 503
            assert int(refused.headers["retry-after"]) > 0
            # The issuer's absence is no readiness problem: tokens already verified keep working.
            assert get(cold, "/readyz").status_code == 200


def test_factor_04_the_issuer_is_swapped_by_its_url_alone(
    database_url: URL, redis_keyspace: str, tmp_path: Path
) -> None:
    with running_issuer() as first, running_issuer() as second:
        for attached, other in ((first, second), (second, first)):
            env = guarded_environment(database_url, redis_keyspace, attached.url)
            folder = tmp_path / attached.url.rsplit(":", 1)[1]
            folder.mkdir()
            with running_web(env, folder) as web:
                assert get(web, "/items", attached.token()).status_code == 200
                assert_refused(get(web, "/items", other.token()), 401, "invalid_token")


def test_a_job_carries_the_subject_to_the_worker_log_lines(
    guarded_web: ServiceProcess, issuer: IssuerProcess, database_url: URL, redis_keyspace: str, tmp_path: Path
) -> None:
    env = guarded_environment(database_url, redis_keyspace, issuer.url)
    with running_worker(env, tmp_path) as worker:
        created = create(guarded_web, issuer.token(sub="writer-7"))
        rid = created.headers["x-request-id"]
        worker.wait_for_event(
            lambda event: event.get("request_id") == rid and "succeeded" in str(event["message"]), 60
        )
    job_lines = [event for event in worker.events() if event.get("request_id") == rid]
    assert len(job_lines) >= 2, worker.stdout
    assert {event.get("subject") for event in job_lines} == {"writer-7"}


def test_a_remembered_token_holds_only_from_its_nbf_to_its_exp_within_the_leeway() -> None:
    key = PyJWK({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"})
    remembered = Verified(Principal("user-1", frozenset()), "key-1", key, not_before=1000, expires=2000)

    assert [remembered.in_time(now) for now in (1000 - LEEWAY_SECONDS - 1, 1000 - LEEWAY_SECONDS)] == [
        False,
        True,
    ]
    assert [remembered.in_time(now) for now in (2000 + LEEWAY_SECONDS, 2000 + LEEWAY_SECONDS + 1)] == [
        True,
        False,
    ]

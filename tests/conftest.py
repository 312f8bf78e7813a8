"""Fixtures shared by the template's tests.

Read-only tests share session bakes (one per xdist worker), so the fast tier bakes only a handful of times.
Tests that change a bake, or must see a bake fail, bake their own into an empty folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_cookies.plugin import Cookies
from support import (
    DEFAULT_ANSWERS,
    LONGEST_ANSWERS,
    TEMPLATE_DIR,
    UNUSUAL_ANSWERS,
    Bake,
    Baker,
    Installer,
    successful_bake,
)

# `pytester` runs the CI-policy tests; `ci_policy` fails a CI run that skipped a test.
pytest_plugins = ("pytester", "ci_policy")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # pytest-cookies bakes `--template`, by default the current folder: pin it to this template, so the
    # suite means the same thing from any working directory.
    config.option.template = str(TEMPLATE_DIR)


@pytest.fixture(scope="session", autouse=True)
def no_git_configuration() -> Iterator[None]:
    """Every bake runs as on a fresh machine: no global or system git configuration, no identity variables.

    The post-gen hook must make its first commit anyway, with the identity from the answers.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
        patch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        for name in (
            "GIT_AUTHOR_NAME",
            "GIT_AUTHOR_EMAIL",
            "GIT_COMMITTER_NAME",
            "GIT_COMMITTER_EMAIL",
            "EMAIL",
            "GIT_DIR",
            "GIT_WORK_TREE",
        ):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def default_bake(cookies_session: Any) -> Bake:
    """The template baked with every default answer. Read it; never change it."""
    return successful_bake(cookies_session.bake(extra_context=DEFAULT_ANSWERS))


@pytest.fixture(scope="session")
def unusual_bake(cookies_session: Any) -> Bake:
    """Baked from a name with accents and spaces ("Café Ünïcode Service"). Read it; never change it."""
    return successful_bake(cookies_session.bake(extra_context=UNUSUAL_ANSWERS))


@pytest.fixture(scope="session")
def longest_bake(cookies_session: Any) -> Bake:
    """Baked from a name that gives the longest slug and package the hook accepts (40 characters)."""
    return successful_bake(cookies_session.bake(extra_context=LONGEST_ANSWERS))


@pytest.fixture(params=["default_bake", "longest_bake"])
def any_bake(request: pytest.FixtureRequest) -> Bake:
    """The default bake, then the bake with the longest slug and package the hook accepts."""
    bake: Bake = request.getfixturevalue(request.param)
    return bake


@pytest.fixture(scope="session")
def twin_bakes(cookies_session: Any) -> tuple[Bake, Bake]:
    """Two more bakes with the default answers, to compare with each other."""
    return (
        successful_bake(cookies_session.bake(extra_context=DEFAULT_ANSWERS)),
        successful_bake(cookies_session.bake(extra_context=DEFAULT_ANSWERS)),
    )


@pytest.fixture
def bake(cookies: Any) -> Bake:
    """A default bake of this test's own, free to change."""
    return successful_bake(cookies.bake(extra_context=DEFAULT_ANSWERS))


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    """An empty folder that `bake_into` bakes into, to check what a bake leaves behind."""
    folder = tmp_path / "output"
    folder.mkdir()
    return folder


@pytest.fixture
def bake_into(output_dir: Path, _cookiecutter_config_file: Any, pytestconfig: pytest.Config) -> Baker:
    """`bake_into(extra_context={...})`: pytest-cookies' bake, with `output_dir` as the output folder."""
    cookies = Cookies(pytestconfig.option.template, lambda _name: output_dir, _cookiecutter_config_file)
    bake: Baker = cookies.bake
    return bake


@pytest.fixture(scope="session")
def install(cookies_session: Any) -> Installer:
    return Installer(cookies_session)


@pytest.fixture(scope="session")
def backing_services() -> dict[str, str]:
    """DATABASE_URL (a server's maintenance database) and REDIS_URL: this tier never runs without them."""
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not set: the slow tests need a real PostgreSQL server and Redis. "
            "Run them with `make test` (which exports local defaults) or export, for example, "
            "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0",
            pytrace=False,
        )
    return {"DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"]}

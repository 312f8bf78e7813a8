"""Every bake records its template in .cruft.json, and cruft sees no drift right after baking.

`cruft check`, `cruft diff` and `cruft update` then work in a service made with `cruft create` or with plain
`cookiecutter`, with no `cruft link`; the slow tests bake a one-commit copy of this template to show it.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from support import TEMPLATE_DIR, TOOLS_BIN, Bake, assert_succeeded, clean_environment, explain, git, run
from update_support import cookiecutter_bake, cruft, cruft_create, one_commit_template

UP_TO_DATE = "SUCCESS: Good work! Project's cruft is up to date and as clean as possible :)."
DEFAULT_ANSWER_NAMES = (
    "project_name",
    "project_slug",
    "package_name",
    "description",
    "author_name",
    "author_email",
)

# `make(template, output_folder)` bakes a default service and returns its folder.
Maker = Callable[[Path, Path], Path]


def test_a_bake_records_this_template_its_commit_and_its_answers(default_bake: Bake) -> None:
    record = json.loads((default_bake.project / ".cruft.json").read_text())

    assert record["template"] == str(TEMPLATE_DIR)
    assert record["commit"] == git(TEMPLATE_DIR, "rev-parse", "HEAD").strip()
    answers = record["context"]["cookiecutter"]
    assert {name: answers[name] for name in DEFAULT_ANSWER_NAMES} == {
        name: default_bake.answers[name] for name in DEFAULT_ANSWER_NAMES
    }
    # Nothing about where this one bake ran, so two bakes of one commit record the same.
    assert not {"_output_dir", "_repo_dir"} & answers.keys()


def test_files_the_hooks_write_are_never_part_of_a_template_diff(default_bake: Bake) -> None:
    pyproject = tomllib.loads((default_bake.project / "pyproject.toml").read_text())

    assert {".env", ".git", ".cruft.json"} <= set(pyproject["tool"]["cruft"]["skip"])


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return one_commit_template(tmp_path / "template")


@pytest.mark.slow
@pytest.mark.parametrize("make", [cruft_create, cookiecutter_bake], ids=["cruft create", "cookiecutter"])
def test_a_new_service_is_up_to_date_with_no_drift(template: Path, tmp_path: Path, make: Maker) -> None:
    service = make(template, tmp_path / "out")

    check = cruft(service, "check")
    diff = cruft(service, "diff", "--exit-code")

    assert check.returncode == 0, explain(check)
    assert UP_TO_DATE in check.stdout
    assert diff.returncode == 0, explain(diff)
    assert diff.stdout == ""


@pytest.mark.slow
@pytest.mark.parametrize("make", [cruft_create, cookiecutter_bake], ids=["cruft create", "cookiecutter"])
def test_the_first_commit_holds_the_cruft_record(template: Path, tmp_path: Path, make: Maker) -> None:
    service = make(template, tmp_path / "out")

    assert ".cruft.json" in git(service, "ls-files").splitlines()
    assert git(service, "status", "--porcelain", "--untracked-files=all") == ""


@pytest.mark.slow
def test_cookiecutter_records_what_cruft_create_records(template: Path, tmp_path: Path) -> None:
    by_cruft = cruft_create(template, tmp_path / "cruft")
    by_cookiecutter = cookiecutter_bake(template, tmp_path / "cookiecutter")

    record = json.loads((by_cookiecutter / ".cruft.json").read_text())
    assert record["template"] == str(template)
    assert record["commit"] == git(template, "rev-parse", "HEAD").strip()
    assert (by_cookiecutter / ".cruft.json").read_bytes() == (by_cruft / ".cruft.json").read_bytes()


@pytest.mark.slow
def test_a_bake_from_a_template_address_records_that_address(template: Path, tmp_path: Path) -> None:
    # cookiecutter clones a template given by address (https://, gh:, git+file://) before baking it; the
    # record names the address the clone came from, which cruft clones too.
    config = tmp_path / "cookiecutter.yaml"
    config.write_text(f"cookiecutters_dir: {tmp_path / 'clones'}\nreplay_dir: {tmp_path / 'replay'}\n")
    address = template.as_uri()
    output = tmp_path / "out"
    output.mkdir()
    command: list[str | Path] = [TOOLS_BIN / "cookiecutter", "--no-input", "--config-file", config]
    command += ["--output-dir", output, f"git+{address}"]
    assert_succeeded(run(command, cwd=tmp_path, env=clean_environment(), timeout=120))
    service = output / "my-service"

    assert json.loads((service / ".cruft.json").read_text())["template"] == address
    assert_succeeded(cruft(service, "check"))
    assert_succeeded(cruft(service, "diff", "--exit-code"))

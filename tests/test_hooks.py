"""The pre-generation hook: bad answers stop the bake with one clear line each, and leave nothing behind."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException
from support import TEMPLATE_DIR, TOOLS_BIN, Baker, clean_environment, explain, run, successful_bake

# (field, rejected value, the rule it breaks); each field is answered alone, everything else is the default.
REJECTED = [
    ("project_slug", "My-Service", "uppercase"),
    ("project_slug", "my_service", "underscore"),
    ("project_slug", "1st-service", "leading digit"),
    ("project_slug", "my--service", "double hyphen"),
    ("project_slug", "my-service-", "trailing hyphen"),
    ("project_slug", "-my-service", "leading hyphen"),
    ("project_slug", "my service", "space"),
    ("project_slug", "café", "non-ASCII"),
    ("package_name", "class", "keyword"),
    ("package_name", "match", "soft keyword"),
    ("package_name", "os", "standard-library module"),
    ("package_name", "json", "standard-library module"),
    ("package_name", "logging", "standard-library module"),
    ("package_name", "celery", "dependency"),
    ("package_name", "starlette", "dependency"),
    ("package_name", "sqlalchemy", "dependency"),
    ("package_name", "tests", "the test package"),
    ("package_name", "2fa", "not an identifier"),
    ("package_name", "my-pkg", "not an identifier"),
    ("package_name", "café", "non-ASCII identifier"),
    ("package_name", "MyPkg", "not lowercase"),
    ("author_email", "you", "no @"),
    ("author_email", "you@", "nothing after @"),
    ("author_email", "@example.com", "nothing before @"),
    ("author_email", "you@@example.com", "two @"),
    ("author_email", "you @example.com", "space"),
    # With an explicit slug: the derived slug of an empty name is empty too (see the test further down).
    ("project_name", "", "empty, with project_slug='empty-name'"),
    ("project_name", 'Say "Hi"', "double quote (breaks pyproject.toml and the docstring)"),
    ("description", "C:\\new\\path", "backslash (breaks pyproject.toml and the docstring)"),
    ("description", "two\nlines", "newline (breaks pyproject.toml)"),
    ("author_name", 'Jane "JD" Doe', "double quote (breaks pyproject.toml)"),
    ("author_email", 'a"b@example.com', "double quote (breaks pyproject.toml)"),
    ("project_name", "A" * 61, "longer than 60 characters"),
    ("project_slug", "a" * 41, "longer than 40 characters"),
    ("package_name", "a" * 41, "longer than 40 characters"),
]


def case_id(field: str, value: str, rule: str) -> str:
    return f"{field}={value!r} ({rule})"


def answers(field: str, value: str) -> dict[str, str]:
    if field == "project_name" and not value:
        return {field: value, "project_slug": "empty-name"}
    return {field: value}


@pytest.mark.parametrize(
    ("field", "value", "rule"), [pytest.param(*case, id=case_id(*case)) for case in REJECTED]
)
class TestRejectedAnswer:
    def test_stops_the_bake(self, bake_into: Baker, field: str, value: str, rule: str) -> None:
        result = bake_into(extra_context=answers(field, value))
        assert result.exit_code != 0
        assert isinstance(result.exception, FailedHookException)

    def test_error_line_names_the_field_and_the_value(
        self, bake_into: Baker, capfd: pytest.CaptureFixture[str], field: str, value: str, rule: str
    ) -> None:
        bake_into(extra_context=answers(field, value))
        errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR: ")]
        prefix = f"ERROR: {field} {value!r} "
        assert any(line.startswith(prefix) for line in errors), f"no line starts with {prefix!r}: {errors}"

    def test_leaves_no_output_folder(
        self, bake_into: Baker, output_dir: Path, field: str, value: str, rule: str
    ) -> None:
        bake_into(extra_context=answers(field, value))
        assert list(output_dir.iterdir()) == []


def test_a_name_without_letters_or_digits_stops_the_bake_and_leaves_nothing(
    bake_into: Baker, output_dir: Path
) -> None:
    # Its slug is empty, so cookiecutter itself refuses (the project folder would be the output folder)
    # before the hook can run; the message is cookiecutter's, not the hook's.
    result = bake_into(extra_context={"project_name": "!!!"})
    assert result.exit_code != 0
    assert result.exception is not None
    assert list(output_dir.iterdir()) == []


def test_every_bad_answer_gets_its_own_one_line_error(
    bake_into: Baker, capfd: pytest.CaptureFixture[str]
) -> None:
    bake_into(extra_context={"project_slug": "Bad_Slug", "package_name": "os", "author_email": "nobody"})
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR: ")]
    hook_errors = [line for line in errors if "hook script" not in line]
    assert [line.split()[1] for line in hook_errors] == ["project_slug", "package_name", "author_email"]


def test_rejection_from_the_command_line_exits_non_zero_and_leaves_nothing(tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    process = run(
        [TOOLS_BIN / "cookiecutter", "--no-input", "--output-dir", output, TEMPLATE_DIR, "package_name=json"],
        cwd=tmp_path,
        env=clean_environment(),
        timeout=120,
    )
    assert process.returncode != 0, explain(process)
    assert "ERROR: package_name 'json' " in process.stderr, explain(process)
    assert list(output.iterdir()) == []


# Answers near the edges of the rules, each of which must bake.
ACCEPTED = [
    ("project_slug", "x"),
    ("project_slug", "a" * 40),
    ("project_slug", "a1-b2-c3"),
    ("package_name", "service2"),
    ("package_name", "_private"),
    ("author_email", "first.last+tag@mail.example.co.uk"),
    ("project_name", "Ünïcode Ølé 2"),
    ("author_name", "Zoë O'Brien"),
    ("description", "It's <fine> & 100% {ok}, even with 'single quotes'."),
]


@pytest.mark.parametrize(
    ("field", "value"), ACCEPTED, ids=[f"{field}={value!r}" for field, value in ACCEPTED]
)
def test_answer_at_the_edge_of_the_rules_is_accepted(bake_into: Baker, field: str, value: str) -> None:
    bake = successful_bake(bake_into(extra_context={field: value}))
    assert bake.answers[field] == value


@pytest.mark.parametrize("field", ["description", "author_name"])
def test_accepted_text_reaches_pyproject_unchanged(bake_into: Baker, field: str) -> None:
    value = dict(ACCEPTED)[field]
    bake = successful_bake(bake_into(extra_context={field: value}))
    project = tomllib.loads((bake.project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    written = project["description"] if field == "description" else project["authors"][0]["name"]
    assert written == value

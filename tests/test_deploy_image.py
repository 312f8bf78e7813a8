"""The image of a bake: the Dockerfile and its build context (.dockerignore).

Fast and offline. hadolint, from the template's tool venv, lints the Dockerfile. Beyond syntax: the image runs
the Procfile's web command by default, installs the hashed lock before the code, runs as a numeric non-root
user, and its build context leaves secrets and local state out but keeps everything the Dockerfile copies.
"""

from __future__ import annotations

import posixpath
import re

from deploy_support import (
    VALIDATOR_TIMEOUT,
    dockerfile_stages,
    image_command,
    image_user,
    instructions,
    procfile,
)
from support import TOOLS_BIN, Bake, explain, run

# --- Reading the build context -----------------------------------------------------------------------------


def dockerignore_rules(bake: Bake) -> list[str]:
    lines = (bake.project / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `*` and `?` stay within one path segment, `**` crosses segments."""
    out = ""
    for token in re.findall(r"\*\*/|\*\*|\*|\?|\[[^\]]*\]|[^*?\[]+", pattern):
        if token == "**/":
            out += "(?:.*/)?"
        elif token == "**":
            out += ".*"
        elif token == "*":
            out += "[^/]*"
        elif token == "?":
            out += "[^/]"
        elif token.startswith("["):
            out += token
        else:
            out += re.escape(token)
    return re.compile(out)


def excluded_from_build_context(rules: list[str], path: str) -> bool:
    """Whether `docker build` leaves `path` out: the last rule matching it, or a folder above it, wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    excluded = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = posixpath.normpath(rule.removeprefix("!").strip()).lstrip("/")
        if any(dockerignore_regex(pattern).fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


# --- The validator -----------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint_with_no_finding(any_bake: Bake) -> None:
    # `--failure-threshold style`: any finding at all, from style up to error, fails.
    process = run(
        [TOOLS_BIN / "hadolint", "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=any_bake.project,
        timeout=VALIDATOR_TIMEOUT,
    )
    assert process.returncode == 0, explain(process)
    assert process.stdout.strip() == "", explain(process)


# --- The Procfile's commands -------------------------------------------------------------------------------


def test_image_runs_the_procfile_web_command_by_default(any_bake: Bake) -> None:
    entrypoint, cmd = image_command(any_bake)
    assert entrypoint + cmd == procfile(any_bake)["web"]
    # The console script alone as the entrypoint: any process type is `docker run IMAGE <type>`.
    assert entrypoint == [any_bake.slug]


# --- The image ---------------------------------------------------------------------------------------------


def test_image_installs_the_hashed_lock_before_the_code_is_copied(default_bake: Bake) -> None:
    build = dockerfile_stages(default_bake)[0]
    texts = [f"{instruction} {arguments}" for instruction, arguments in build]

    def first(predicate: str) -> int:
        return next(index for index, text in enumerate(texts) if re.search(predicate, text))

    locked = first(r"^RUN .*--require-hashes -r requirements\.txt")
    assert first(r"^COPY .*requirements\.txt") < locked < first(r"^COPY .*src")
    assert first(r"^RUN .*--require-hashes -r requirements-build\.txt") < first(r"^COPY .*src")
    # The service goes in as a wheel, built by the build lock's hatchling (no build isolation, which would
    # fetch a build backend from the index) and installed with no dependency resolved outside the lock.
    wheel = first(r"^RUN .*pip wheel .*--no-deps --no-build-isolation")
    assert first(r"^COPY .*src") < wheel <= first(r"^RUN .*pip install .*--no-deps .*\.whl")


def test_image_runs_as_a_non_root_user(default_bake: Bake) -> None:
    user = image_user(default_bake)
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric USER, so Kubernetes can check runAsNonRoot"


def test_image_gets_its_release_id_from_a_build_argument(default_bake: Bake) -> None:
    final = dockerfile_stages(default_bake)[-1]
    assert any(arguments.split("=")[0] == "RELEASE_ID" for arguments in instructions(final, "ARG"))
    assert "RELEASE_ID=$RELEASE_ID" in instructions(final, "ENV")
    assert "PYTHONUNBUFFERED=1" in " ".join(instructions(final, "ENV")).split()


# --- The build context -------------------------------------------------------------------------------------


EXCLUDED_FROM_CONTEXT = [".env", ".git/HEAD", ".venv/bin/python", "tests/conftest.py", "build/x.whl"]
INCLUDED_IN_CONTEXT = ["pyproject.toml", "README.md", "requirements.txt", "requirements-build.txt"]


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context(default_bake: Bake) -> None:
    rules = dockerignore_rules(default_bake)
    package = f"src/{default_bake.package}"
    excluded = [*EXCLUDED_FROM_CONTEXT, f"{package}/__pycache__/cli.cpython-311.pyc"]
    leaked = [path for path in excluded if not excluded_from_build_context(rules, path)]
    assert not leaked, f"in the build context: {leaked}"
    included = [*INCLUDED_IN_CONTEXT, f"{package}/cli.py", f"{package}/migrations/env.py"]
    missing = [path for path in included if excluded_from_build_context(rules, path)]
    assert not missing, f"left out of the build context, but the build needs them: {missing}"


def test_every_file_the_dockerfile_copies_reaches_the_build_context(default_bake: Bake) -> None:
    rules = dockerignore_rules(default_bake)
    for stage in dockerfile_stages(default_bake):
        for arguments in instructions(stage, "COPY"):
            if arguments.startswith("--from"):
                continue
            *sources, _ = arguments.split()
            for source in sources:
                files = [source] if (default_bake.project / source).is_file() else []
                files += [
                    path.relative_to(default_bake.project).as_posix()
                    for path in (default_bake.project / source).rglob("*.py")
                ]
                assert files, f"COPY {source}: nothing there"
                for file in files:
                    assert not excluded_from_build_context(rules, file), f"COPY needs {file}"

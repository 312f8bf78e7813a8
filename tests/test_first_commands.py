"""The first commands the README gives a newcomer work in a fresh bake, with nothing exported.

Slow: it bakes, then runs the README's commands exactly as written (`cd my-service`, `make install && make
test`) with DATABASE_URL and REDIS_URL removed from the environment, so the baked service's tests find
PostgreSQL and Redis where the generated `.env` names them: on their default local addresses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import (
    TEMPLATE_DIR,
    TOOLS_BIN,
    Bake,
    assert_every_test_ran_and_passed,
    assert_succeeded,
    clean_environment,
    run,
)

TEMPLATE_README = TEMPLATE_DIR / "README.md"
START_SECTION = "## Start a service"
QUICK_START_SECTION = "## Quick start"
# Install and the service's whole suite, on a loaded machine.
COMMANDS_TIMEOUT = 900


def first_shell_block(readme: Path, heading: str) -> list[str]:
    """The commands of the first ```sh block under `heading`, comments and blank lines left out."""
    text = readme.read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert match, f"no ```sh block under {heading!r} in {readme}"
    commands = [line.partition("#")[0].strip() for line in match[1].splitlines()]
    return [command for command in commands if command]


def start_commands() -> list[str]:
    """What the template README says to type after baking: `cd <slug>`, then the service's first commands."""
    bake_command, *after_bake = first_shell_block(TEMPLATE_README, START_SECTION)
    assert "cookiecutter" in bake_command
    return after_bake


def test_generated_readme_quick_start_begins_with_the_template_readmes_commands(default_bake: Bake) -> None:
    change_directory, *first_commands = start_commands()
    assert change_directory == f"cd {default_bake.slug}"
    quick_start = first_shell_block(default_bake.project / "README.md", QUICK_START_SECTION)
    assert quick_start[: len(first_commands)] == first_commands


@pytest.mark.slow
def test_readme_first_commands_pass_in_a_fresh_bake_with_nothing_exported(tmp_path: Path) -> None:
    # The bake as the README's alternative writes it, from this checkout.
    bake = run([TOOLS_BIN / "cookiecutter", "--no-input", TEMPLATE_DIR], cwd=tmp_path, timeout=120)
    assert_succeeded(bake)
    env = clean_environment()
    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL"):
        env.pop(name, None)

    process = run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(start_commands())],
        cwd=tmp_path,
        env=env,
        timeout=COMMANDS_TIMEOUT,
    )

    assert_every_test_ran_and_passed(process)

"""Throwaway git copies of this template, bakes from them, and a realistic template change to commit.

A copy holds the template exactly as it is on disk (tracked files and new, unignored ones), so the cruft
tests check the working tree, not the last commit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from support import TEMPLATE_DIR, TOOLS_BIN, assert_succeeded, clean_environment, git, run

SERVICE = "{{cookiecutter.project_slug}}"
PACKAGE = f"{SERVICE}/src/{{{{cookiecutter.package_name}}}}"
LOCKS = ("requirements.txt", "requirements-dev.txt")
# Commits in the throwaway repositories are made as on a fresh machine (see conftest): name the author.
COMMITTER = ("-c", "user.name=Template Maintainer", "-c", "user.email=maintainer@example.com")

# The template change pins this package one release later in both locks, as `make lock-service` would
# after a release of it. The first commit pins the older release, so the change is an upgrade.
UPGRADED_PACKAGE = "six"
OLDER_RELEASE = "1.16.0"

# The new setting the template change introduces, end to end: settings, the web command, docs.
NEW_SETTING = "KEEP_ALIVE_TIMEOUT"
NEW_SETTING_DEFAULT = "5"
README_ROW_BEFORE_THE_NEW_ONE = "| `FORWARDED_ALLOW_IPS` |"

CRUFT = TOOLS_BIN / "cruft"


def cruft(project: Path, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return run([CRUFT, *arguments], cwd=project, env=clean_environment(), timeout=300)


def cruft_create(template: Path, output: Path) -> Path:
    output.mkdir(parents=True)
    assert_succeeded(cruft(output, "create", "--no-input", "--output-dir", output, template))
    return output / "my-service"


def cookiecutter_bake(template: Path, output: Path) -> Path:
    output.mkdir(parents=True)
    command: list[str | Path] = [TOOLS_BIN / "cookiecutter", "--no-input", "--output-dir", output, template]
    assert_succeeded(run(command, cwd=output, env=clean_environment(), timeout=120))
    return output / "my-service"


def one_commit_template(folder: Path) -> Path:
    template = copy_of_this_template(folder)
    git(template, "init", "--quiet", "--initial-branch=main")
    commit_all(template, "Template as it is on disk")
    return template


def commit_all(repository: Path, message: str) -> str:
    git(repository, "add", "--all")
    git(repository, *COMMITTER, "commit", "--quiet", "--message", message)
    return git(repository, "rev-parse", "HEAD").strip()


def copy_of_this_template(destination: Path) -> Path:
    """This template's files as they are on disk, copied into `destination` (not yet a repository)."""
    listed = git(TEMPLATE_DIR, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for relative in filter(None, listed.split("\0")):
        source = TEMPLATE_DIR / relative
        if source.is_file():  # a tracked file deleted on disk is not part of the template any more
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def relock(service: Path, *, upgrade: str | None = None) -> None:
    """`make lock` in a baked service (its pins kept), moving one package to `upgrade` (`name==version`)."""
    lock: list[str | Path] = [
        TOOLS_BIN / "uv", "pip", "compile", "pyproject.toml", "--quiet", "--universal", "--generate-hashes",
        "--no-annotate", "--python-version", "3.11", *(["--upgrade-package", upgrade] if upgrade else []),
    ]  # fmt: skip
    extras: tuple[list[str], ...] = ([], ["--extra", "dev"])
    for output, extra in zip(LOCKS, extras, strict=True):
        process = run([*lock, *extra, "-o", output], cwd=service, env=clean_environment(), timeout=180)
        assert_succeeded(process)


def pin_older_release(template: Path, scratch: Path) -> None:
    """Give the template's service locks the older release of UPGRADED_PACKAGE, with its real hashes."""
    process = run(
        [TOOLS_BIN / "cookiecutter", "--no-input", "--output-dir", scratch, template],
        cwd=scratch,
        env=clean_environment(),
        timeout=120,
    )
    assert_succeeded(process)
    baked = scratch / "my-service"
    relock(baked, upgrade=f"{UPGRADED_PACKAGE}=={OLDER_RELEASE}")
    for lock in LOCKS:
        shutil.copy2(baked / lock, template / SERVICE / lock)


def insert_after_line(path: Path, line_pattern: str, new_lines: str) -> None:
    """Insert `new_lines` after the first line matching `line_pattern`, indented like that line."""
    text = path.read_text(encoding="utf-8")
    match = re.search(line_pattern, text, flags=re.MULTILINE)
    assert match is not None, (
        f"{path}: no line matches {line_pattern!r}; the template changed, so adjust the realistic "
        "template change in tests/update_support.py"
    )
    indent = re.match(r"\s*", match.group(0))
    prefix = indent.group(0) if indent else ""
    block = "".join(f"{prefix}{line}\n" if line else "\n" for line in new_lines.splitlines())
    path.write_text(text[: match.end() + 1] + block + text[match.end() + 1 :], encoding="utf-8")


def add_a_setting(template: Path) -> None:
    """A new setting, as a maintainer adds one: settings.py, the module using it, .env.example, README."""
    settings, cli = template / PACKAGE / "settings.py", template / PACKAGE / "cli.py"
    insert_after_line(
        settings,
        r"^    forwarded_allow_ips: str = .*$",
        "# Seconds an idle connection stays open; longer than a load balancer's idle timeout, so the\n"
        "# balancer closes it first and never sends a request down a connection being closed.\n"
        f'keep_alive_timeout: int = variable("{NEW_SETTING}")',
    )
    insert_after_line(
        settings,
        r"^\s*forwarded_allow_ips=env.*$",
        f'keep_alive_timeout=env.int("{NEW_SETTING}", {NEW_SETTING_DEFAULT}, validate=Range(min=1)),',
    )
    insert_after_line(
        cli,
        r"^\s*timeout_graceful_shutdown=settings\.graceful_timeout,$",
        "# Idle keep-alive connections outlive the load balancer's (see KEEP_ALIVE_TIMEOUT).\n"
        "timeout_keep_alive=settings.web.keep_alive_timeout,",
    )
    # The service's guard test wants a malformed case for every typed variable; the maintainer adds one.
    insert_after_line(
        template / SERVICE / "tests" / "test_settings.py",
        r'^    "GRACEFUL_TIMEOUT": .*$',
        f'"{NEW_SETTING}": "0",',
    )
    insert_after_line(
        template / SERVICE / ".env.example",
        r"^# FORWARDED_ALLOW_IPS=.*$",
        "# Seconds an idle keep-alive connection stays open; above your load balancer's idle timeout.\n"
        f"# {NEW_SETTING}={NEW_SETTING_DEFAULT}",
    )
    insert_after_line(
        template / SERVICE / "README.md",
        "^" + re.escape(README_ROW_BEFORE_THE_NEW_ONE) + ".*$",
        f"| `{NEW_SETTING}` | `{NEW_SETTING_DEFAULT}` | seconds an idle keep-alive connection stays open; "
        "above the load balancer's idle timeout |",
    )

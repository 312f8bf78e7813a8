"""Helpers shared by the template's tests: running commands, reading bakes, rendering hooks, lock files."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest
from cookiecutter.utils import create_env_with_context
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
HOOKS_DIR = TEMPLATE_DIR / "hooks"
# The environment running these tests is the template's tool venv: cookiecutter, ruff, uv live beside it.
TOOLS_BIN = Path(sys.executable).parent

DEFAULT_ANSWERS: dict[str, str] = {}
UNUSUAL_ANSWERS: dict[str, str] = {"project_name": "Café Ünïcode Service"}
# The longest slug and package name the hook accepts: generated lines must still fit the style.
LONGEST_ANSWERS: dict[str, str] = {"project_name": "Ünïcode Service with a Longer Name abcde"}

# How much of a failed command's output an assertion message carries (the end is where the reason is).
OUTPUT_TAIL_CHARS = 20_000


class CookiesResult(Protocol):
    """What pytest-cookies' `Cookies.bake()` returns."""

    exit_code: int | str | None
    exception: BaseException | None
    context: dict[str, Any] | None

    @property
    def project_path(self) -> Path | None: ...


# `cookies.bake(extra_context=...)`
Baker = Callable[..., CookiesResult]


@dataclasses.dataclass(frozen=True)
class Bake:
    """A successfully baked project and the answers (with derived values) it was baked from."""

    project: Path
    answers: dict[str, str]

    @property
    def slug(self) -> str:
        return self.answers["project_slug"]

    @property
    def package(self) -> str:
        return self.answers["package_name"]


def successful_bake(result: CookiesResult) -> Bake:
    assert result.exception is None, f"the bake failed: {result.exception!r}"
    assert result.exit_code == 0
    assert result.project_path is not None
    assert result.context is not None
    answers = {key: value for key, value in result.context.items() if isinstance(value, str)}
    return Bake(project=result.project_path, answers=answers)


# --- Running commands --------------------------------------------------------------------------------------


def _text(stream: str | bytes | None) -> str:
    if stream is None:
        return ""
    if isinstance(stream, bytes):
        return stream.decode(errors="replace")
    return stream


def _tail(text: str) -> str:
    if len(text) <= OUTPUT_TAIL_CHARS:
        return text
    return f"[... {len(text) - OUTPUT_TAIL_CHARS} characters cut ...]\n{text[-OUTPUT_TAIL_CHARS:]}"


def describe(command: Sequence[str], returncode: int | None, stdout: str, stderr: str) -> str:
    return (
        f"$ {shlex.join(command)}\nexit code: {returncode}\n"
        f"--- stdout ---\n{_tail(stdout)}\n--- stderr ---\n{_tail(stderr)}"
    )


def run(
    command: Sequence[str | Path],
    *,
    cwd: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing its output; fail the test (with the output) on timeout."""
    argv = [str(part) for part in command]
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"timed out after {timeout:g} s\n"
            + describe(argv, None, _text(expired.stdout), _text(expired.stderr)),
            pytrace=False,
        )


def explain(process: subprocess.CompletedProcess[str]) -> str:
    argv = [str(part) for part in process.args]
    return describe(argv, process.returncode, process.stdout, process.stderr)


def assert_succeeded(process: subprocess.CompletedProcess[str]) -> None:
    assert process.returncode == 0, f"the command failed\n{explain(process)}"


SUMMARY = re.compile(r"^(?:=+ )?(?P<counts>\d+ [a-z]+(?:, \d+ [a-z]+)*) in [\d.]+s(?: \([^)]*\))?(?: =+)?$")
NOT_RUN_OR_BROKEN = ("skipped", "xfailed", "xpassed", "failed", "error", "errors")


def pytest_summary_counts(output: str) -> dict[str, int] | None:
    """{'passed': 12, 'warnings': 1, ...} from pytest's closing line, or None if there is none."""
    for line in reversed(output.splitlines()):
        match = SUMMARY.match(line.strip())
        if match:
            return {word: int(count) for count, word in re.findall(r"(\d+) ([a-z]+)", match["counts"])}
    return None


def assert_every_test_ran_and_passed(process: subprocess.CompletedProcess[str]) -> None:
    """A baked service's `make test` passed, ran something, and skipped or expected-failed nothing."""
    assert process.returncode == 0, f"`make test` failed\n{explain(process)}"
    counts = pytest_summary_counts(process.stdout)
    assert counts is not None, f"no pytest summary line in the output\n{explain(process)}"
    assert counts.get("passed", 0) > 0, f"nothing passed: {counts}\n{explain(process)}"
    not_run = {word: count for word, count in counts.items() if word in NOT_RUN_OR_BROKEN}
    assert not not_run, f"every test must run and pass: {counts}\n{explain(process)}"


def git(project: Path, *arguments: str) -> str:
    process = run(["git", *arguments], cwd=project, timeout=30)
    assert_succeeded(process)
    return process.stdout


def commit_count(project: Path) -> int:
    return int(git(project, "rev-list", "--count", "HEAD"))


# --- Reading bakes -----------------------------------------------------------------------------------------


def project_tree(
    project: Path, *, skip: frozenset[str] = frozenset({".git", ".env"})
) -> dict[str, bytes | None]:
    """Every path under `project` (relative, POSIX) mapped to its bytes, or None for a directory."""
    tree: dict[str, bytes | None] = {}
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project)
        if relative.parts[0] in skip:
            continue
        tree[relative.as_posix()] = None if path.is_dir() else path.read_bytes()
    return tree


def dotenv_values(path: Path) -> dict[str, str]:
    """NAME=value lines of a dotenv file (comments and blank lines ignored)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


def render_hook(name: str, answers: Mapping[str, Any]) -> str:
    """The hook's source as cookiecutter renders it before running it."""
    context = {"cookiecutter": dict(answers)}
    environment = create_env_with_context(context)
    template = environment.from_string((HOOKS_DIR / name).read_text())
    return str(template.render(**context))


# --- Lock files --------------------------------------------------------------------------------------------

LOCK_ENTRY = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)"
    r"(?:\s*;\s*(?P<marker>[^\\]+?))?"
    r"(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64})+)"
)


@dataclasses.dataclass(frozen=True)
class LockEntry:
    name: str
    version: Version
    marker: str | None
    hashes: tuple[str, ...]


def logical_lines(text: str) -> Iterator[str]:
    """Requirement-file lines with comments dropped and backslash continuations joined."""
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            yield joined
    if pending.strip():
        yield pending.strip()


def parse_lock_line(line: str) -> LockEntry | None:
    """The entry a lock line pins; None unless the line is exactly `name==version [; marker] --hash=...`."""
    match = LOCK_ENTRY.fullmatch(line)
    if match is None:
        return None
    hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", match["hashes"]))
    marker = match["marker"].strip() if match["marker"] else None
    return LockEntry(canonicalize_name(match["name"]), Version(match["version"]), marker, hashes)


def lock_entries(path: Path) -> list[LockEntry]:
    entries = []
    for line in logical_lines(path.read_text()):
        entry = parse_lock_line(line)
        assert entry is not None, f"{path.name}: not a hashed `name==version` entry: {line!r}"
        entries.append(entry)
    return entries


def declared_requirements(pyproject: Mapping[str, Any], *, extras: Sequence[str] = ()) -> list[Requirement]:
    project = pyproject["project"]
    declared = [Requirement(spec) for spec in project["dependencies"]]
    for extra in extras:
        declared += [Requirement(spec) for spec in project["optional-dependencies"][extra]]
    return declared


def clean_environment(**overrides: str) -> dict[str, str]:
    """This process's environment for a child tool: the template venv's tools first on PATH, no leaks from
    the pytest run itself (PYTEST_*, an activated VIRTUAL_ENV, a private UV_CACHE_DIR), and bytecode
    written when a module is first imported, not all at install (a bake's pytest keeps its rewritten test
    modules, and its processes what they import)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PYTEST_")
        and name not in {"VIRTUAL_ENV", "UV_CACHE_DIR", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE"}
    }
    env["PATH"] = os.pathsep.join([str(TOOLS_BIN), env.get("PATH", os.defpath)])
    # A bake's `make install` leaves compiling to the modules its processes import.
    env["UV_COMPILE_BYTECODE"] = "0"
    env.update(overrides)
    return env


# --- Installed bakes (the slow tier) ------------------------------------------------------------------------

INSTALL_TIMEOUT = 300
# The service's tests that go through the hubs a capability plugs into (web/app.py, jobs/worker.py, cli.py,
# settings.py): the app in process, and a real web, worker and clock each doing their work. What a bake other
# than the default one must pass besides `make lint`.
HUB_TESTS = (
    "tests/test_health.py",
    "tests/test_items.py",
    "tests/test_cli.py",
    "tests/test_settings.py",
    "tests/test_logs.py::test_web_start_up_says_where_it_listens_and_nothing_of_library_internals",
    "tests/test_worker.py::test_posted_item_is_done_by_the_worker_whose_log_lines_carry_the_request_id",
    "tests/test_worker.py::test_clock_relays_a_job_whose_publish_failed_and_the_worker_does_it",
)
ANSWERS = {"default": DEFAULT_ANSWERS, "unusual": UNUSUAL_ANSWERS}


@dataclasses.dataclass(frozen=True)
class InstalledService:
    bake: Bake

    @property
    def project(self) -> Path:
        return self.bake.project

    @property
    def bin(self) -> Path:
        return self.bake.project / ".venv" / "bin"

    @property
    def script(self) -> Path:
        return self.bin / self.bake.slug


class Installer:
    """Bakes and installs each kind of bake once per session; a failed install fails every later user."""

    def __init__(self, cookies: Any) -> None:
        self._cookies = cookies
        self._installed: dict[str, InstalledService | str] = {}

    def __call__(self, name: str) -> InstalledService:
        if name not in self._installed:
            try:
                self._installed[name] = self._install(name)
            except pytest.fail.Exception as failure:
                self._installed[name] = str(failure)
                raise
        installed = self._installed[name]
        if isinstance(installed, str):
            pytest.fail(f"an earlier `make install` of this bake failed:\n{installed}", pytrace=False)
        return installed

    def _install(self, name: str) -> InstalledService:
        return install_bake(self._cookies, name)


def install_bake(cookies: Any, name: str) -> InstalledService:
    """A new bake of the answers called `name`, with `make install` run in it."""
    return make_install(successful_bake(cookies.bake(extra_context=ANSWERS[name])))


def make_install(bake: Bake) -> InstalledService:
    # The template venv's bin first on PATH, so the Makefile finds and uses uv, with the shared cache.
    process = run(["make", "install"], cwd=bake.project, env=clean_environment(), timeout=INSTALL_TIMEOUT)
    if process.returncode != 0:
        pytest.fail(f"`make install` failed\n{explain(process)}", pytrace=False)
    return InstalledService(bake)

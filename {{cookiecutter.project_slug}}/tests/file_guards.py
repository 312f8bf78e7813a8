"""What the committed files say, for the conformance tests that read them (factors II, V and XII).

The locks' pins and the environments they apply in, the install commands that builds run, what a Dockerfile
puts into the image, and every file someone could run beside the console script. Each helper returns
findings; the tests in test_twelve_factors.py assert on them and name the factor.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import re
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

# --- II. The locks ------------------------------------------------------------------------------------------

# The locks `make lock` compiles from pyproject.toml: the only files a build may install packages from.
LOCK_FILES = ("requirements.txt", "requirements-dev.txt", "requirements-build.txt")

# The environments a universal lock serves (requires-python >= 3.11): platforms, interpreters, versions.
PLATFORMS = (
    ("linux", "posix", "Linux"),
    ("darwin", "posix", "Darwin"),
    ("win32", "nt", "Windows"),
    ("emscripten", "posix", "Emscripten"),
)
IMPLEMENTATIONS = (("CPython", "cpython"), ("PyPy", "pypy"))
PYTHONS = ("3.11.0", "3.11.9", "3.12.0", "3.13.0", "3.14.0")
MACHINES = ("x86_64", "aarch64")


@dataclasses.dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None


def lock_pins(lock: Path) -> list[Pin]:
    """Every `name==version ; marker` of a lock file, hashes and comments aside."""
    pins = []
    for entry in re.split(r"\n(?=\S)", lock.read_text()):
        first_line = entry.splitlines()[0].rstrip(" \\") if entry.strip() else ""
        if not first_line or first_line.startswith(("#", "-")):
            continue
        requirement = Requirement(first_line)
        (exact,) = requirement.specifier
        pins.append(Pin(canonicalize_name(requirement.name), Version(exact.version), requirement.marker))
    return pins


def target_environments() -> list[dict[str, str]]:
    return [
        {
            "sys_platform": sys_platform,
            "os_name": os_name,
            "platform_system": system,
            "platform_python_implementation": implementation,
            "implementation_name": implementation_name,
            "python_version": full_version.rsplit(".", 1)[0],
            "python_full_version": full_version,
            "implementation_version": full_version,
            "platform_machine": machine,
            "extra": "",
        }
        for (sys_platform, os_name, system), (implementation, implementation_name), full_version, machine in (
            itertools.product(PLATFORMS, IMPLEMENTATIONS, PYTHONS, MACHINES)
        )
    ]


def pins_outside_their_range(declared: Iterable[str], pins: Iterable[Pin]) -> list[str]:
    """Each pin a declared requirement excludes, in some environment where both the requirement and the pin
    apply (a requirement for Windows says nothing about a pin for Linux)."""
    environments = target_environments()
    by_name: dict[str, list[Pin]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(pin)
    outside = []
    for text in declared:
        requirement = Requirement(text)
        for pin in by_name.get(canonicalize_name(requirement.name), []):
            if requirement.specifier.contains(pin.version, prereleases=True):
                continue
            if any(
                applies(requirement.marker, environment) and applies(pin.marker, environment)
                for environment in environments
            ):
                outside.append(f"{requirement} but {pin.name}=={pin.version}")
    return outside


def applies(marker: Marker | None, environment: dict[str, str]) -> bool:
    return marker is None or marker.evaluate(environment)


# --- II. What builds install --------------------------------------------------------------------------------

# What a platform or CI runs to build or release the service: the Dockerfile (docker build), bin/* (Heroku's
# buildpack runs bin/post_compile), the Makefile (CI's `make install`), the CI workflows, the Procfile and
# app.json (Heroku's release phase and scripts).
BUILD_FILE = re.compile(
    r"^(bin/[^/]+|Makefile|Procfile|app\.json|\.github/workflows/[^/]+\.ya?ml"
    r"|([^/]+/)*(Dockerfile|Containerfile)[^/]*|([^/]+/)*[^/]+\.[Dd]ockerfile)$"
)
# A pip or uv command that installs: its arguments run to the end of the shell command.
INSTALL = re.compile(
    r"(?:^|[\s;&|(`'\"])(?:\S*/)?(?:pip3?(?:\.\d+)?|python3?(?:\.\d+)?\s+-m\s+pip|uv\s+pip)"
    r"\s+(?P<action>install|wheel|download|sync)\b(?P<arguments>[^;&|\n`]*)"
)
# Installers with no lock at all: a tool fetched by name, whatever version the index has that day.
LOCKLESS_INSTALL = re.compile(
    r"(?:^|[\s;&|(`'\"])(?:\S*/)?(?:uvx|pipx|uv\s+(?:add|tool\s+install|run\s+--with))\b[^;&|\n`]*"
)
# Options of pip and uv that take a value: the value is no package.
VALUE_OPTIONS = frozenset(
    {
        *("-r", "--requirement", "-c", "--constraint", "--constraints", "-e", "--editable", "-b"),
        *("-t", "--target", "--prefix", "--root", "-w", "--wheel-dir", "-d", "--dest", "-p", "--python"),
        *("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--cache-dir"),
        *("--src", "--platform", "--python-version", "--implementation", "--abi", "-C", "--config-settings"),
        *("--progress-bar", "--report", "--log", "--upgrade-strategy", "--no-binary", "--only-binary"),
        *("--exists-action", "--root-user-action", "--build-constraints", "--overrides"),
    }
)
# The Makefile's option variables ($(PIP_FLAGS)): options, never a package.
MAKE_OPTIONS = re.compile(r"\$\(\w*FLAGS\)")
THE_PROJECT = frozenset({".", "./"})


def shell_lines(path: str, text: str) -> Iterator[str]:
    """The commands of a build file, one logical line each: continuations joined, comments dropped."""
    if path == "app.json":
        yield from json.loads(text).get("scripts", {}).values()
        return
    if path == "Makefile":
        text = text.replace("$(PIP)", "pip")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    yield from re.sub(r"\\\n", " ", "\n".join(lines)).splitlines()


def unlocked_installs(path: str, text: str) -> list[str]:
    """Each install command of a build file that could fetch something no lock pins with a hash."""
    found = []
    for line in shell_lines(path, text):
        found += [match[0].strip() for match in LOCKLESS_INSTALL.finditer(line)]
        for match in INSTALL.finditer(line):
            if not installs_locks_or_the_project(match["action"], words(match["arguments"])):
                found.append(match[0].strip())
    return found


def words(arguments: str) -> list[str]:
    try:
        return shlex.split(arguments)
    except ValueError:
        return arguments.split()


def installs_locks_or_the_project(action: str, arguments: list[str]) -> bool:
    """True for `--require-hashes -r <lock>` alone, and for the project itself (`.` or its wheel) with
    --no-deps, built with --no-build-isolation: nothing else can come from the index unpinned."""
    flags: set[str] = set()
    values: dict[str, list[str]] = {}
    targets: list[str] = []
    remaining = iter(arguments)
    for argument in remaining:
        option, equals, value = argument.partition("=")
        if MAKE_OPTIONS.fullmatch(argument):
            continue
        if option in VALUE_OPTIONS:
            values.setdefault(option, []).append(value if equals else next(remaining, ""))
        elif argument.startswith("-"):
            flags.add(argument)
        else:
            targets.append(argument)
    locks = values.get("-r", []) + values.get("--requirement", [])
    if action == "sync":
        locks, targets = locks + targets, []
    editable = values.get("-e", []) + values.get("--editable", [])
    if locks:
        return not targets and not editable and "--require-hashes" in flags and set(locks) <= set(LOCK_FILES)
    sources = [target for target in targets if not target.endswith(".whl")] + editable
    return (
        bool(targets or editable)
        and all(source in THE_PROJECT for source in sources)
        and "--no-deps" in flags
        and ("--no-build-isolation" in flags or (not sources and action == "install"))
    )


# --- V. What the image holds --------------------------------------------------------------------------------

DOCKERFILE = re.compile(r"(^|/)(Dockerfile|Containerfile)[^/]*$|\.[Dd]ockerfile$")
# A dotenv file named in a command: .env, .env.production, production.env.
DOTENV_FILE = re.compile(r"(?:^|[\s/=\"'])(?:\.env(?:\.[\w.-]+)?|[\w.-]+\.env)(?=$|[\s\"';&|)/])")
# Where a dotenv file would sit in the build context: at the top, and beside the code that is copied.
DOTENV_PATHS = (".env", ".env.local", "src/.env")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile instruction, continuations joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    instructions = []
    for line in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines():
        keyword, _, arguments = line.strip().partition(" ")
        if keyword:
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def variables_set(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(ENV or ARG, name) for each variable the Dockerfile sets in the image or takes at build time."""
    found = []
    for keyword, arguments in instructions:
        if keyword not in ("ENV", "ARG"):
            continue
        given = words(arguments)
        if keyword == "ENV" and given and "=" not in given[0]:
            given = given[:1]  # the old form, `ENV NAME value`
        found += [(keyword, word.split("=", 1)[0]) for word in given]
    return found


def dotenv_files_used(lines: Iterable[str]) -> list[str]:
    return [line.strip() for line in lines if DOTENV_FILE.search(line)]


def dockerignore_rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def excluded_from_build_context(rules: list[str], path: str) -> bool:
    """Whether `docker build` leaves `path` out: the last rule matching it, or a folder above it, wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    excluded = False
    for rule in rules:
        pattern = docker_pattern(rule.removeprefix("!").strip("/"))
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            excluded = not rule.startswith("!")
    return excluded


def docker_pattern(rule: str) -> re.Pattern[str]:
    """A .dockerignore rule as a regular expression: `**` any folders, `*` and `?` within one name."""
    expression = ""
    for token in re.findall(r"\*\*/|\*\*|\*|\?|\[[^]]*\]|.", rule):
        expression += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, token if token.startswith("[") else re.escape(token)
        )
    return re.compile(expression)


# --- XII. Runnable files ------------------------------------------------------------------------------------

SCRIPT_SUFFIXES = frozenset(
    {".py", ".pyw", ".sh", ".bash", ".zsh", ".ksh", ".fish", ".ps1", ".bat", ".cmd", ".pl", ".rb", ".sql"}
)


def runnable_files(project: Path, files: Iterable[str], executable_in_git: set[str]) -> list[str]:
    """Each file someone could run instead of a subcommand of the console script, with why it runs."""
    found = []
    for path in files:
        file = project / path
        if not file.is_file():
            continue  # deleted, not yet committed
        reasons = []
        if path in executable_in_git or file.stat().st_mode & 0o111:
            reasons.append("executable")
        if file.read_bytes()[:2] == b"#!":
            reasons.append("a shebang")
        if file.suffix in SCRIPT_SUFFIXES and not path.startswith(("src/", "tests/")):
            reasons.append("a script outside src/ and tests/")
        if path.startswith("src/") and file.name == "__main__.py":
            reasons.append("`python -m` runs it")
        elif path.startswith("src/") and file.suffix == ".py" and has_main_block(file.read_text()):
            reasons.append('an `if __name__ == "__main__":` block')
        if reasons:
            found.append(f"{path} ({', '.join(reasons)})")
    return found


def has_main_block(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            operands = [node.test.left, *node.test.comparators]
            names = {operand.id for operand in operands if isinstance(operand, ast.Name)}
            values = {operand.value for operand in operands if isinstance(operand, ast.Constant)}
            if "__name__" in names and "__main__" in values:
                return True
    return False

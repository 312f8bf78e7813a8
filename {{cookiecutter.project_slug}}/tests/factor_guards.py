"""What the conformance suite's guards of factors I, III and X read: words, imports, versions.

Each helper finds the whole class of a mistake rather than one spelling of it: a deploy's name in any path
component or string constant; configuration read while any module is imported, by whatever library; a
backing service's kind and major version wherever a committed file names one.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

# Names a deploy goes by: a path or a value that holds one is about one deploy, not the codebase.
DEPLOY_NAMES = frozenset(
    {"production", "prod", "staging", "stage", "development", "dev", "local", "qa", "uat", "preprod"}
)
WORDS = re.compile(r"[a-z0-9]+")


def deploy_words(text: str) -> set[str]:
    """The deploy names among the words of `text` (words split at anything but letters and digits)."""
    return set(WORDS.findall(text.lower())) & DEPLOY_NAMES


def names_a_deploy(value: str) -> bool:
    """Whether a string constant names a deploy: a value ("prod-", "staging.example.com", "dev"), not a
    sentence that happens to use the word (a message saying a sqlite file is local to one host)."""
    return not any(character.isspace() for character in value) and bool(deploy_words(value))


def refused_secret_constants(tree: ast.Module) -> set[int]:
    """The string constants of settings.py's PLACEHOLDER_SECRETS: values refused as keys ("dev" among
    them), not deploy names."""
    refused: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "PLACEHOLDER_SECRETS" for target in node.targets
        ):
            refused.update(id(constant) for constant in ast.walk(node.value))
    return refused


# Imports every module of the package (the migrations aside: Alembic runs them inside the release step) in
# a fresh interpreter, recording each environment variable that the package's own code looks up on the
# way, directly or through a library that reads the environment for it. Its last line is a JSON report.
IMPORT_EVERY_MODULE_PROGRAM = """
import importlib, json, os, pkgutil, sys, traceback

PACKAGE = "{{ cookiecutter.package_name }}"
# Libraries that read the environment on behalf of the code that calls them.
READERS = {"environs", "dotenv", "marshmallow"}
looked_up = []


def reader_of(frame):
    while frame is not None:
        top = frame.f_globals.get("__name__", "").partition(".")[0]
        if top not in sys.stdlib_module_names and top not in READERS:
            return frame
        frame = frame.f_back
    return None


class Recording(type(os.environ)):
    def __getitem__(self, key):
        frame = reader_of(sys._getframe(1))
        if frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == PACKAGE:
            looked_up.append(f"{key} ({frame.f_globals['__name__']}, line {frame.f_lineno})")
        return super().__getitem__(key)


os.environ.__class__ = Recording
failed = {}


def fail(name):
    failed[name] = traceback.format_exception_only(*sys.exc_info()[:2])[-1].strip()


try:
    package = importlib.import_module(PACKAGE)
    names = [info.name for info in pkgutil.walk_packages(package.__path__, PACKAGE + ".", onerror=fail)]
except Exception:
    fail(PACKAGE)
    names = []
for name in names:
    if not name.startswith(PACKAGE + ".migrations"):
        try:
            importlib.import_module(name)
        except Exception:
            fail(name)
print(json.dumps({"failed": failed, "looked_up": looked_up}))
"""


def configuration_read_at_import(cwd: Path) -> tuple[dict[str, str], list[str]]:
    """({module: error} of the modules that failed to import, [variables looked up while importing]), in
    an interpreter with no setting in its environment and no .env in its working directory."""
    ran = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE_PROGRAM],
        env={"PATH": str(Path(sys.executable).parent)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout.splitlines()[-1])
    return report["failed"], report["looked_up"]


def shown_settings(config_output: str) -> dict[str, str]:
    """`<slug> config`'s output: {VARIABLE: value as shown}."""
    return dict(line.split("=", 1) for line in config_output.splitlines())


# Backing services by the names images, add-on plans and prose give them, each mapped to the server it runs.
SERVER_KINDS = {
    "postgres": "PostgreSQL",
    "postgresql": "PostgreSQL",
    "heroku-postgresql": "PostgreSQL",
    "redis": "Redis",
    "heroku-redis": "Redis",
    "valkey": "Valkey",
    "keydb": "KeyDB",
    "dragonfly": "Dragonfly",
    "mysql": "MySQL",
    "mariadb": "MariaDB",
    "mongo": "MongoDB",
    "rabbitmq": "RabbitMQ",
}
# An image with a version tag (postgres:<major>, valkey/valkey:<major>-alpine); a host:port has more digits.
IMAGE_WITH_VERSION = re.compile(r"(?<![\w.@-])(?:[\w.-]+/)*([a-z][\w-]*):(\d{1,3})(?!\d)")
# A server and its version in prose: "PostgreSQL <major>", "Heroku Postgres <major>", "Redis <major>".
PROSE_WITH_VERSION = re.compile(r"\b(PostgreSQL|Postgres|Redis|Valkey|KeyDB|MySQL|MariaDB) (\d{1,3})\b")
# Files whose images and add-ons are the servers some deploy or test run actually runs.
SERVER_FILES = re.compile(r"^(compose\.ya?ml|app\.json|\.github/workflows/.+|deploy/.+)$")


def images_in(text: str) -> list[tuple[str, str]]:
    """(kind, major version) of each backing-service image `text` names."""
    return [
        (SERVER_KINDS[name], major)
        for name, major in IMAGE_WITH_VERSION.findall(text)
        if name in SERVER_KINDS
    ]


def addons_in(app_json: str) -> list[tuple[str, str | None]]:
    """(kind, major version or None) of each backing-service add-on an app.json asks Heroku for."""
    found: list[tuple[str, str | None]] = []
    for addon in json.loads(app_json).get("addons", []):
        plan, options = (addon, {}) if isinstance(addon, str) else (addon["plan"], addon.get("options", {}))
        service = plan.partition(":")[0]
        if service in SERVER_KINDS:
            version = options.get("version")
            found.append((SERVER_KINDS[service], str(version).partition(".")[0] if version else None))
    return found


def backing_services_named(
    project: Path, files: Iterable[str]
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """({file: kinds it runs} of the files that run servers, {"<kind> <major>": files naming it}) over
    `files`, paths relative to `project`."""
    runs: dict[str, set[str]] = {}
    versions: dict[str, set[str]] = {}
    for path in files:
        try:
            text = (project / path).read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary, or listed and since removed: names no server
        named = addons_in(text) if path == "app.json" else images_in(text)
        if SERVER_FILES.match(path):
            runs[path] = {kind for kind, _ in named}
        prose = [(SERVER_KINDS[name.lower()], major) for name, major in PROSE_WITH_VERSION.findall(text)]
        for kind, major in [*named, *prose]:
            if major is not None:
                versions.setdefault(f"{kind} {major}", set()).add(path)
    return runs, versions

"""The service README's "Dropping a capability" recipe, followed by a program as a person would follow it.

The README's table names, for each optional capability, what to delete; every line by which the capability
reaches the rest carries `# drop: <name>` (a marked line that opens a block takes the block with it). Then
`make format` clears the imports left unused, and `make lock` the dependencies left undeclared.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

# A row of the README's table: | `events` | `path`, `path` | what it takes with it |
ROW = re.compile(r"^\| `(?P<name>[a-z-]+)` \| (?P<paths>(?:`[^`]+`(?:, )?)+) \| (?P<parts>[^|]*)\|$")
PATH = re.compile(r"`([^`]+)`")
SECTION = "## Dropping a capability"


@dataclass(frozen=True)
class Capability:
    name: str
    paths: tuple[str, ...]
    # Smaller capabilities dropped with this one (telemetry: tracing, metrics, error-reports).
    parts: tuple[str, ...]


def recipe(readme: str, package: str) -> dict[str, Capability]:
    """The capabilities the README's table lists, with `PKG` in their paths made the bake's package."""
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    capabilities = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        paths = tuple(path.replace("PKG", package) for path in PATH.findall(match["paths"]))
        parts = tuple(PATH.findall(match["parts"]))
        capabilities[match["name"]] = Capability(match["name"], paths, parts)
    return capabilities


# Python 3.11 before 3.11.8 shares ast's recursion counter among threads (CPython gh-106905): two threads
# parsing at once fail with "AST constructor recursion depth mismatch". The drop tests bake in threads.
AST_LOCK = threading.Lock()


def marker(name: str) -> re.Pattern[str]:
    return re.compile(rf"drop: {re.escape(name)}(?![\w-])")


def without_marked_lines(text: str, name: str, python: bool = False) -> str:
    """`text` without its lines marked for `name`; a marked line that opens a block takes the block too.

    In Python a block is a compound statement (`def` or `class` with its decorators, `if`, `with`), marked on
    its first line or a decorator; in
    `.env.example` a `# ---` section, up to the next blank line; elsewhere (a Makefile target, YAML) the
    lines indented under a marked line ending with a colon.
    """
    marked_pattern = marker(name)
    lines = text.splitlines(keepends=True)
    marked = {number for number, line in enumerate(lines) if marked_pattern.search(line)}
    dropped = set(marked)
    if python:
        with AST_LOCK:
            tree = ast.parse(text)
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(node, ast.stmt) and isinstance(body, list) and body:
                decorators = getattr(node, "decorator_list", [])
                first = min([node.lineno, *(decorator.lineno for decorator in decorators)]) - 1
                if marked & set(range(first, node.lineno)):
                    dropped.update(range(first, node.end_lineno or node.lineno))
    else:
        for number in marked:
            if lines[number].startswith("# ---"):
                following = number + 1
                while following < len(lines) and lines[following].strip():
                    dropped.add(following)
                    following += 1
            elif lines[number].split("#", 1)[0].rstrip().endswith(":"):
                indent = len(lines[number]) - len(lines[number].lstrip())
                following = number + 1
                while following < len(lines) and (
                    not lines[following].strip()
                    or len(lines[following]) - len(lines[following].lstrip()) > indent
                ):
                    dropped.add(following)
                    following += 1
    return "".join(line for number, line in enumerate(lines) if number not in dropped)


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def tracked_files(project: Path) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    return [project / name for name in listed.split("\0") if name and (project / name).is_file()]


def drop(project: Path, capability: Capability, every: dict[str, Capability]) -> None:
    """Steps 1 and 2 of the recipe: delete what the table lists, remove the marked lines."""
    for part in capability.parts:
        drop(project, every[part], every)
    for relative in capability.paths:
        path = project / relative
        assert path.exists(), (
            f"the README's recipe for {capability.name} names {relative}, which is not there"
        )
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    marked = marker(capability.name)
    for path in tracked_files(project):
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if marked.search(text):
            path.write_text(without_marked_lines(text, capability.name, python=path.suffix == ".py"))

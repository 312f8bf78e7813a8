"""Reading a bake's deploy artifacts: what more than one of the deploy tests (tests/test_deploy_*.py) needs.

The process types and the Procfile's commands, the Dockerfile's stages and the final image's command and
user, the command each platform runs (worked out as the platform works it out), compose.yaml, and the
service's GRACEFUL_TIMEOUT default.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from support import Bake

# The process types every target runs, and the Kubernetes kind that runs each.
PROCESS_TYPES = {"release": "Job", "web": "Deployment", "worker": "Deployment", "clock": "Deployment"}
# Variables whose values are secrets: set in the platform, never written in a committed file.
SECRET_VARIABLES = {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "BROKER_URL"}
VALIDATOR_TIMEOUT = 120


# --- Reading the artifacts ---------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose(bake: Bake) -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(bake.project / "compose.yaml")
    return document


def procfile(bake: Bake) -> dict[str, list[str]]:
    commands = {}
    for line in (bake.project / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            commands[name.strip()] = shlex.split(command)
    return commands


def graceful_timeout_default(bake: Bake) -> int:
    """The service's GRACEFUL_TIMEOUT when unset, as .env.example documents it (`# GRACEFUL_TIMEOUT=20`)."""
    text = (bake.project / ".env.example").read_text()
    match = re.search(r"(?m)^# GRACEFUL_TIMEOUT=(\d+)$", text)
    assert match, ".env.example documents no GRACEFUL_TIMEOUT default"
    return int(match[1])


# --- The Dockerfile ----------------------------------------------------------------------------------------


def dockerfile_stages(bake: Bake) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for raw in (bake.project / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, pending = (pending + raw).strip(), ""
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        assert stages, f"an instruction before the first FROM: {line!r}"
        stages[-1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form (a JSON array): {arguments}"
    assert all(isinstance(item, str) for item in value)
    return value


def image_command(bake: Bake) -> tuple[list[str], list[str]]:
    """The final image's ENTRYPOINT and CMD."""
    final = dockerfile_stages(bake)[-1]
    entrypoints, cmds = instructions(final, "ENTRYPOINT"), instructions(final, "CMD")
    assert len(entrypoints) == 1, "the final stage sets its ENTRYPOINT exactly once"
    assert len(cmds) == 1, "the final stage sets its CMD exactly once"
    return exec_form(entrypoints[0]), exec_form(cmds[0])


def image_user(bake: Bake) -> str:
    users = instructions(dockerfile_stages(bake)[-1], "USER")
    assert users, "the final stage sets no USER: the image would run as root"
    return users[-1].split(":")[0]


# --- Effective commands, as each platform computes them ----------------------------------------------------


def compose_argv(bake: Bake, service: dict[str, Any]) -> list[str]:
    """Compose: the service's entrypoint replaces the image's (and drops its CMD); command replaces CMD."""
    entrypoint, cmd = image_command(bake)
    if "entrypoint" in service:
        entrypoint, cmd = as_argv(service["entrypoint"]), []
    if "command" in service:
        cmd = as_argv(service["command"])
    return entrypoint + cmd


def kubernetes_argv(bake: Bake, container: dict[str, Any]) -> list[str]:
    """Kubernetes: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD."""
    entrypoint, cmd = image_command(bake)
    if "command" in container:
        entrypoint, cmd = list(container["command"]), []
    if "args" in container:
        cmd = list(container["args"])
    return entrypoint + cmd


def as_argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else list(value)

"""The deploy targets of a bake: Dockerfile, compose.yaml, Heroku's app.json, the Kubernetes base, CI.

Fast and offline. The validators come from the template's tool venv: hadolint (the Dockerfile),
kubernetes-validate (the manifests, against the Kubernetes schemas it ships) and check-jsonschema (the
workflow and compose.yaml, against its vendored schemas). Beyond syntax, the tests hold the artifacts to
each other: every target runs the Procfile's commands, the grace periods are ordered so a stopping process
finishes before the platform's SIGKILL, nothing runs as root, and no secret is committed.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import TOOLS_BIN, Bake, Baker, explain, run, successful_bake

KUBERNETES = Path("deploy/kubernetes")
DEPLOY_FILES = [
    "Dockerfile",
    ".dockerignore",
    "compose.yaml",
    "app.json",
    "Procfile",
    ".python-version",
    "bin/post_compile",
    ".github/workflows/ci.yml",
    "deploy/kubernetes/kustomization.yaml",
    "deploy/kubernetes/configmap.yaml",
    "deploy/kubernetes/service.yaml",
    "deploy/kubernetes/release-job.yaml",
    "deploy/kubernetes/web-deployment.yaml",
    "deploy/kubernetes/worker-deployment.yaml",
    "deploy/kubernetes/clock-deployment.yaml",
]
# The process types every target runs, and the Kubernetes kind that runs each.
PROCESS_TYPES = {"release": "Job", "web": "Deployment", "worker": "Deployment", "clock": "Deployment"}
# The oldest Kubernetes the base supports (the native preStop sleep), and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.30.0", None]
# Heroku sends SIGKILL this long after SIGTERM, and it cannot be changed.
HEROKU_KILL_AFTER = 30
# Variables whose values are secrets: set in the platform, never written in a committed file.
SECRET_VARIABLES = {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "BROKER_URL"}
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
VALIDATOR_TIMEOUT = 120


@pytest.fixture(params=["default_bake", "longest_bake"])
def any_bake(request: pytest.FixtureRequest) -> Bake:
    """The default bake, then the bake with the longest slug and package the hook accepts."""
    bake: Bake = request.getfixturevalue(request.param)
    return bake


# --- Reading the artifacts ---------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def manifests(bake: Bake) -> list[Path]:
    """Every Kubernetes resource file of the base (the kustomization itself is not a resource)."""
    folder = bake.project / KUBERNETES
    return sorted(path for path in folder.glob("*.yaml") if path.name != "kustomization.yaml")


def resources(bake: Bake) -> Iterator[dict[str, Any]]:
    for path in manifests(bake):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                yield document


def resource(bake: Bake, kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in resources(bake) if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name} in {KUBERNETES}, found {len(found)}"
    return found[0]


def workload(bake: Bake, process: str) -> dict[str, Any]:
    """The Job or Deployment that runs a Procfile process type on Kubernetes."""
    return resource(bake, PROCESS_TYPES[process], f"{bake.slug}-{process}")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, "one process type per pod"
    container: dict[str, Any] = containers[0]
    return container


def configmap(bake: Bake) -> dict[str, str]:
    data: dict[str, str] = resource(bake, "ConfigMap", f"{bake.slug}-config")["data"]
    return data


def compose(bake: Bake) -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(bake.project / "compose.yaml")
    return document


def app_json(bake: Bake) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((bake.project / "app.json").read_text(encoding="utf-8"))
    return document


def workflow(bake: Bake) -> dict[Any, Any]:
    """The CI workflow. YAML 1.1 (PyYAML) reads its key `on` as True: it is stored under "on" here."""
    document: dict[Any, Any] = load_yaml(bake.project / ".github/workflows/ci.yml")
    if True in document:
        document["on"] = document.pop(True)
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


def seconds(duration: str | int) -> float:
    """A compose duration (`30s`, `1m30s`, `1500ms`) in seconds."""
    if isinstance(duration, int):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    assert "".join(amount + unit for amount, unit in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(amount) * units[unit] for amount, unit in parts)


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


# --- Every artifact, and the validators --------------------------------------------------------------------


@pytest.mark.parametrize("path", DEPLOY_FILES)
def test_bake_contains_every_deploy_artifact(default_bake: Bake, path: str) -> None:
    assert (default_bake.project / path).is_file()


def test_dockerfile_passes_hadolint_with_no_finding(any_bake: Bake) -> None:
    # `--failure-threshold style`: any finding at all, from style up to error, fails.
    process = run(
        [TOOLS_BIN / "hadolint", "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=any_bake.project,
        timeout=VALIDATOR_TIMEOUT,
    )
    assert process.returncode == 0, explain(process)
    assert process.stdout.strip() == "", explain(process)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda version: version or "newest")
def test_kubernetes_manifests_pass_strict_schema_validation(any_bake: Bake, version: str | None) -> None:
    # --strict rejects any field the schema does not know: a typo is an error, not a silently ignored key.
    pinned = ["--kubernetes-version", version] if version else []
    files = [path.relative_to(any_bake.project) for path in manifests(any_bake)]
    process = run(
        [TOOLS_BIN / "kubernetes-validate", "--strict", *pinned, *files],
        cwd=any_bake.project,
        timeout=VALIDATOR_TIMEOUT,
    )
    assert process.returncode == 0, explain(process)
    assert process.stdout.count(" passed for resource ") == len(files), explain(process)
    assert "WARN" not in process.stdout + process.stderr, explain(process)


def test_kustomization_lists_every_manifest_and_nothing_else(any_bake: Bake) -> None:
    kustomization = load_yaml(any_bake.project / KUBERNETES / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    missing = [name for name in listed if not (any_bake.project / KUBERNETES / name).is_file()]
    assert not missing, f"kustomization.yaml lists files that do not exist: {missing}"
    assert sorted(listed) == sorted(path.name for path in manifests(any_bake))


@pytest.mark.parametrize(
    ("path", "schema"),
    [(".github/workflows/ci.yml", "vendor.github-workflows"), ("compose.yaml", "vendor.compose-spec")],
)
def test_file_matches_its_published_schema(any_bake: Bake, path: str, schema: str) -> None:
    # The vendored copy of the schema: check-jsonschema fetches nothing.
    process = run(
        [TOOLS_BIN / "check-jsonschema", "--builtin-schema", schema, path],
        cwd=any_bake.project,
        timeout=VALIDATOR_TIMEOUT,
    )
    assert process.returncode == 0, explain(process)


def test_kubernetes_names_are_dns_labels(any_bake: Bake) -> None:
    # Names become pod names, label values and DNS names: lowercase, at most 63 characters.
    names = [doc["metadata"]["name"] for doc in resources(any_bake)]
    names += [f"{any_bake.slug}-secrets"]
    names += [only_container(workload(any_bake, process))["name"] for process in PROCESS_TYPES]
    bad = [name for name in names if not DNS_LABEL.fullmatch(name)]
    assert not bad, f"not DNS-1123 labels of at most 63 characters: {bad}"


# --- The same commands on every target ---------------------------------------------------------------------


def test_procfile_declares_every_process_type_as_a_subcommand_of_the_console_script(any_bake: Bake) -> None:
    assert procfile(any_bake) == {
        process: [any_bake.slug, "migrate" if process == "release" else process] for process in PROCESS_TYPES
    }


def test_image_runs_the_procfile_web_command_by_default(any_bake: Bake) -> None:
    entrypoint, cmd = image_command(any_bake)
    assert entrypoint + cmd == procfile(any_bake)["web"]
    # The console script alone as the entrypoint: any process type is `docker run IMAGE <type>`.
    assert entrypoint == [any_bake.slug]


@pytest.mark.parametrize("process", PROCESS_TYPES)
def test_compose_runs_the_procfile_command(any_bake: Bake, process: str) -> None:
    service = compose(any_bake)["services"][process]
    assert compose_argv(any_bake, service) == procfile(any_bake)[process]


@pytest.mark.parametrize("process", PROCESS_TYPES)
def test_kubernetes_runs_the_procfile_command(any_bake: Bake, process: str) -> None:
    container = only_container(workload(any_bake, process))
    assert kubernetes_argv(any_bake, container) == procfile(any_bake)[process]


def test_every_process_runs_the_one_image(any_bake: Bake) -> None:
    services = compose(any_bake)["services"]
    for process in PROCESS_TYPES:
        assert services[process]["build"]["context"] == "."
        assert services[process]["image"] == services["web"]["image"]
        assert services[process]["image"].startswith(f"{any_bake.slug}:")
    # kustomize's `images` rewrites one name: every container must use exactly that name.
    kustomization = load_yaml(any_bake.project / KUBERNETES / "kustomization.yaml")
    assert [image["name"] for image in kustomization["images"]] == [any_bake.slug]
    for process in PROCESS_TYPES:
        assert only_container(workload(any_bake, process))["image"] == any_bake.slug


# --- Grace periods: every stopping process finishes before the platform's SIGKILL ---------------------------


def test_graceful_timeout_fits_inside_heroku_kill_deadline(default_bake: Bake) -> None:
    env = app_json(default_bake)["env"]
    graceful = int(env.get("GRACEFUL_TIMEOUT", {}).get("value", graceful_timeout_default(default_bake)))
    assert graceful < HEROKU_KILL_AFTER


@pytest.mark.parametrize("process", ["web", "worker", "clock"])
def test_kubernetes_grace_period_covers_the_prestop_pause_and_the_graceful_timeout(
    default_bake: Bake, process: str
) -> None:
    container = only_container(workload(default_bake, process))
    graceful = int(configmap(default_bake).get("GRACEFUL_TIMEOUT", graceful_timeout_default(default_bake)))
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod_spec(workload(default_bake, process))["terminationGracePeriodSeconds"]
    # The preStop pause counts against the grace period; the drain starts only after it.
    assert graceful < grace - pause, f"{process}: {pause} s pause + {graceful} s drain >= {grace} s grace"


def test_configmap_keeps_the_services_graceful_timeout(default_bake: Bake) -> None:
    assert int(configmap(default_bake)["GRACEFUL_TIMEOUT"]) == graceful_timeout_default(default_bake)


def test_web_pauses_before_sigterm_so_routing_stops_first(default_bake: Bake) -> None:
    lifecycle = only_container(workload(default_bake, "web"))["lifecycle"]
    # The native sleep action: no shell needed in the image.
    assert lifecycle["preStop"]["sleep"]["seconds"] > 0


@pytest.mark.parametrize("process", ["web", "worker", "clock"])
def test_compose_stop_grace_period_exceeds_the_graceful_timeout(default_bake: Bake, process: str) -> None:
    service = compose(default_bake)["services"][process]
    graceful = int(service["environment"].get("GRACEFUL_TIMEOUT", graceful_timeout_default(default_bake)))
    # Docker's own default (10 s) would kill a draining process.
    assert "stop_grace_period" in service
    assert seconds(service["stop_grace_period"]) > graceful


# --- Releases and formation --------------------------------------------------------------------------------


def test_release_job_runs_migrate_a_bounded_number_of_times_and_cleans_up(default_bake: Bake) -> None:
    job = workload(default_bake, "release")
    assert kubernetes_argv(default_bake, only_container(job))[1:] == ["migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert 0 < job["spec"]["backoffLimit"] <= 5
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_exactly_one_clock_runs_on_kubernetes(default_bake: Bake) -> None:
    clock = workload(default_bake, "clock")
    assert clock["spec"]["replicas"] == 1
    # RollingUpdate would start the new clock before stopping the old one.
    assert clock["spec"]["strategy"]["type"] == "Recreate"


def test_exactly_one_clock_runs_on_heroku_and_compose(default_bake: Bake) -> None:
    assert app_json(default_bake)["formation"].get("clock", {"quantity": 1})["quantity"] == 1
    assert compose(default_bake)["services"]["clock"].get("deploy", {}).get("replicas", 1) == 1


def test_web_is_probed_on_healthz_for_liveness_and_readyz_for_readiness(default_bake: Bake) -> None:
    container = only_container(workload(default_bake, "web"))
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = int(configmap(default_bake)["PORT"])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    named = {p["name"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in named | {port}
    service = resource(default_bake, "Service", f"{default_bake.slug}-web")
    assert service["spec"]["selector"] == workload(default_bake, "web")["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [container["ports"][0]["name"]]


@pytest.mark.parametrize("process", PROCESS_TYPES)
def test_kubernetes_workload_requests_resources_and_limits_memory(default_bake: Bake, process: str) -> None:
    requested = only_container(workload(default_bake, process))["resources"]
    assert {"cpu", "memory"} <= set(requested["requests"])
    assert "memory" in requested["limits"]


@pytest.mark.parametrize("process", ["web", "worker", "clock"])
def test_compose_process_waits_for_healthy_backing_services_and_the_release(
    default_bake: Bake, process: str
) -> None:
    services = compose(default_bake)["services"]
    depends_on = services[process]["depends_on"]
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert depends_on["release"]["condition"] == "service_completed_successfully"
    assert services["release"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    assert "healthcheck" in services["redis"]


def test_compose_points_the_service_at_its_own_backing_services(default_bake: Bake) -> None:
    services = compose(default_bake)["services"]
    assert re.fullmatch(r"postgres:\d+", services["postgres"]["image"])
    assert services["redis"]["image"] == "redis:7"
    for process in PROCESS_TYPES:
        environment = services[process]["environment"]
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")


# --- Heroku ------------------------------------------------------------------------------------------------


def test_app_json_declares_what_heroku_needs(default_bake: Bake) -> None:
    app = app_json(default_bake)
    assert app["name"] == default_bake.answers["project_name"]
    assert app["description"] == default_bake.answers["description"]
    plans = [addon["plan"] if isinstance(addon, dict) else addon for addon in app["addons"]]
    assert any(plan.split(":")[0] == "heroku-postgresql" for plan in plans)
    assert any(plan.split(":")[0] == "heroku-redis" for plan in plans)
    formation = app["formation"]
    assert {"web", "worker"} <= set(formation)
    assert set(formation) <= set(procfile(default_bake)) - {"release"}
    assert all(process["quantity"] >= 1 and process["size"] for process in formation.values())
    assert app["env"]["SECRET_KEY"]["generator"] == "secret"
    assert app["env"]["LOG_FORMAT"]["value"] == "json"


def test_app_json_carries_any_accepted_description_intact(bake_into: Baker) -> None:
    # Quotes, ampersands and angle brackets are escaped as JSON, and read back unchanged.
    description = "It's <fine> & 100% {ok}, even with 'single quotes'."
    bake = successful_bake(bake_into(extra_context={"description": description}))
    assert app_json(bake)["description"] == description


def test_heroku_build_installs_the_service_itself(default_bake: Bake) -> None:
    # The buildpack installs requirements.txt, which has the dependencies only; the Procfile needs the script.
    hook = default_bake.project / "bin/post_compile"
    assert hook.stat().st_mode & 0o111, "bin/post_compile is not executable"
    text = hook.read_text()
    assert re.search(r"pip install .*--no-deps .*\.$", text, re.MULTILINE)


def test_same_python_everywhere(default_bake: Bake) -> None:
    python = (default_bake.project / ".python-version").read_text().strip()
    bases = [stage[0][1].split()[0] for stage in dockerfile_stages(default_bake)]
    assert bases == [f"python:{python}-slim"] * len(bases), "every stage on the same pinned Python"
    versions = [
        step["with"]["python-version"]
        for job in workflow(default_bake)["jobs"].values()
        for step in job["steps"]
        if "setup-python" in step.get("uses", "")
    ]
    assert versions == [python]


# --- The image ---------------------------------------------------------------------------------------------


def test_image_installs_the_hashed_lock_before_the_code_is_copied(default_bake: Bake) -> None:
    build = dockerfile_stages(default_bake)[0]
    texts = [f"{instruction} {arguments}" for instruction, arguments in build]

    def first(predicate: str) -> int:
        return next(index for index, text in enumerate(texts) if re.search(predicate, text))

    locked = first(r"^RUN .*--require-hashes -r requirements\.txt")
    assert first(r"^COPY .*requirements\.txt") < locked < first(r"^COPY .*src")
    assert first(r"^RUN .*--require-hashes -r requirements-dev\.txt") < first(r"^COPY .*src")
    # The service goes in as a wheel, built by the dev lock's hatchling (no build isolation, which would
    # fetch a build backend from the index) and installed with no dependency resolved outside the lock.
    wheel = first(r"^RUN .*pip wheel .*--no-deps --no-build-isolation")
    assert first(r"^COPY .*src") < wheel <= first(r"^RUN .*pip install .*--no-deps .*\.whl")


def test_image_runs_as_a_non_root_user(default_bake: Bake) -> None:
    user = image_user(default_bake)
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric USER, so Kubernetes can check runAsNonRoot"


@pytest.mark.parametrize("process", PROCESS_TYPES)
def test_kubernetes_pods_run_as_the_images_non_root_user(default_bake: Bake, process: str) -> None:
    spec = pod_spec(workload(default_bake, process))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == image_user(default_bake)
    container_context = only_container(workload(default_bake, process))["securityContext"]
    assert container_context["allowPrivilegeEscalation"] is False
    assert container_context["readOnlyRootFilesystem"] is True


def test_image_gets_its_release_id_from_a_build_argument(default_bake: Bake) -> None:
    final = dockerfile_stages(default_bake)[-1]
    assert any(arguments.split("=")[0] == "RELEASE_ID" for arguments in instructions(final, "ARG"))
    assert "RELEASE_ID=$RELEASE_ID" in instructions(final, "ENV")
    assert "PYTHONUNBUFFERED=1" in " ".join(instructions(final, "ENV")).split()


EXCLUDED_FROM_CONTEXT = [".env", ".git/HEAD", ".venv/bin/python", "tests/conftest.py", "build/x.whl"]
INCLUDED_IN_CONTEXT = ["pyproject.toml", "README.md", "requirements.txt", "requirements-dev.txt"]


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


# --- No secret committed -----------------------------------------------------------------------------------


def test_kubernetes_manifests_only_reference_the_secret(default_bake: Bake) -> None:
    assert not [doc for doc in resources(default_bake) if doc["kind"] == "Secret"]
    assert not SECRET_VARIABLES & set(configmap(default_bake))
    for process in PROCESS_TYPES:
        container = only_container(workload(default_bake, process))
        literal = {item["name"] for item in container.get("env", []) if "value" in item}
        assert not SECRET_VARIABLES & literal, f"{process} sets a secret inline: {literal}"
        references = [source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source]
        assert references == [f"{default_bake.slug}-secrets"]


def test_compose_takes_the_secret_key_from_the_environment(default_bake: Bake) -> None:
    for process in PROCESS_TYPES:
        secret = compose(default_bake)["services"][process]["environment"]["SECRET_KEY"]
        # `${SECRET_KEY:?...}`: filled from the environment or .env, and compose stops when it is unset.
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", secret), secret


def test_app_json_generates_the_secret_key_instead_of_carrying_one(default_bake: Bake) -> None:
    env = app_json(default_bake)["env"]
    assert "value" not in env["SECRET_KEY"]
    assert not [name for name in SECRET_VARIABLES - {"SECRET_KEY"} if name in env]


# --- CI ----------------------------------------------------------------------------------------------------


def test_ci_lints_and_tests_against_service_containers_and_builds_the_image(default_bake: Bake) -> None:
    document = workflow(default_bake)
    assert {"push", "pull_request"} <= set(document["on"])
    jobs = document["jobs"]
    assert all(job.get("timeout-minutes") for job in jobs.values()), "every job needs timeout-minutes"
    runs = [step.get("run", "") for job in jobs.values() for step in job["steps"]]
    for command in ("make install", "make lint", "make test"):
        assert command in runs
    assert any(re.search(r"docker build .*--build-arg RELEASE_ID=", command) for command in runs)
    testing = next(job for job in jobs.values() if any(s.get("run") == "make test" for s in job["steps"]))
    services = testing["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert all("--health-cmd" in service["options"] for service in services.values())
    assert testing["env"]["DATABASE_URL"].startswith("postgresql://")
    assert "127.0.0.1:5432" in testing["env"]["DATABASE_URL"]
    assert testing["env"]["REDIS_URL"].startswith("redis://127.0.0.1:6379")

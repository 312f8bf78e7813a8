"""The Kubernetes base of a bake (deploy/kubernetes): the manifests and their kustomization.

Fast and offline. kubernetes-validate, from the template's tool venv, checks the manifests against the
Kubernetes schemas it ships. Beyond syntax: every workload runs the Procfile's command from the one image,
the grace periods let a stopping process finish before SIGKILL, the pods run as the image's non-root user,
and the manifests only reference the secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    PROCESS_TYPES,
    SECRET_VARIABLES,
    VALIDATOR_TIMEOUT,
    compose,
    graceful_timeout_default,
    image_user,
    kubernetes_argv,
    load_yaml,
    procfile,
)
from support import TOOLS_BIN, Bake, explain, run

KUBERNETES = Path("deploy/kubernetes")
# The oldest Kubernetes the base supports (the native preStop sleep), and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.30.0", None]
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


# --- Reading the manifests ---------------------------------------------------------------------------------


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


# --- The validator -----------------------------------------------------------------------------------------


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


def test_kubernetes_names_are_dns_labels(any_bake: Bake) -> None:
    # Names become pod names, label values and DNS names: lowercase, at most 63 characters.
    names = [doc["metadata"]["name"] for doc in resources(any_bake)]
    names += [f"{any_bake.slug}-secrets"]
    names += [only_container(workload(any_bake, process))["name"] for process in PROCESS_TYPES]
    bad = [name for name in names if not DNS_LABEL.fullmatch(name)]
    assert not bad, f"not DNS-1123 labels of at most 63 characters: {bad}"


# --- The Procfile's commands, from the one image -----------------------------------------------------------


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


# --- Grace periods: every stopping process finishes before SIGKILL -----------------------------------------


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


# --- Releases and formation --------------------------------------------------------------------------------


def test_release_job_runs_the_release_command_a_bounded_number_of_times_and_cleans_up(
    default_bake: Bake,
) -> None:
    job = workload(default_bake, "release")
    assert kubernetes_argv(default_bake, only_container(job)) == procfile(default_bake)["release"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert 0 < job["spec"]["backoffLimit"] <= 5
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_exactly_one_clock_runs_on_kubernetes(default_bake: Bake) -> None:
    clock = workload(default_bake, "clock")
    assert clock["spec"]["replicas"] == 1
    # RollingUpdate would start the new clock before stopping the old one.
    assert clock["spec"]["strategy"]["type"] == "Recreate"


def test_web_is_probed_on_healthz_for_liveness_and_readyz_for_readiness(default_bake: Bake) -> None:
    container = only_container(workload(default_bake, "web"))
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = int(configmap(default_bake)["PORT"])
    # The public port, and beside it only the metrics port (see the metrics test below).
    (http,) = [p for p in container["ports"] if p["name"] != "metrics"]
    assert http["containerPort"] == port
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in {http["name"], port}
    service = resource(default_bake, "Service", f"{default_bake.slug}-web")
    assert service["spec"]["selector"] == workload(default_bake, "web")["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [http["name"]]


@pytest.mark.parametrize("process", PROCESS_TYPES)
def test_kubernetes_workload_requests_resources_and_limits_memory(default_bake: Bake, process: str) -> None:
    requested = only_container(workload(default_bake, process))["resources"]
    assert {"cpu", "memory"} <= set(requested["requests"])
    assert "memory" in requested["limits"]


# --- Not as root -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("process", PROCESS_TYPES)
def test_kubernetes_pods_run_as_the_images_non_root_user(default_bake: Bake, process: str) -> None:
    spec = pod_spec(workload(default_bake, process))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == image_user(default_bake)
    container_context = only_container(workload(default_bake, process))["securityContext"]
    assert container_context["allowPrivilegeEscalation"] is False
    assert container_context["readOnlyRootFilesystem"] is True


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


def test_web_and_worker_pods_serve_metrics_on_their_own_port_which_the_service_never_exposes(
    default_bake: Bake,
) -> None:
    settings = configmap(default_bake)
    metrics_port = settings["METRICS_PORT"]
    assert metrics_port != settings["PORT"]
    assert settings["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")  # the pods' writable emptyDir
    for process in ("web", "worker"):
        deployment = workload(default_bake, process)
        ports = {port["name"]: port["containerPort"] for port in only_container(deployment).get("ports", [])}
        assert ports["metrics"] == int(metrics_port)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == metrics_port
    service = resource(default_bake, "Service", f"{default_bake.slug}-web")
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]


def test_configmap_allows_the_services_own_name_and_not_every_host(default_bake: Bake) -> None:
    # Probes reach the pod by IP and are exempt from the check (web/middleware/hosts.py); callers use the
    # Service's name.
    hosts = configmap(default_bake)["ALLOWED_HOSTS"].split(",")
    assert default_bake.slug in hosts
    assert "*" not in hosts

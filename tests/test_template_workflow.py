"""The template repository's own CI workflow runs `make test` against PostgreSQL and Redis containers.

Fast and offline: check-jsonschema, from the template's tool venv, checks the workflow against its vendored
copy of the published schema; the rest reads the YAML.
"""

from __future__ import annotations

from typing import Any

from deploy_support import load_yaml
from support import TEMPLATE_DIR, TOOLS_BIN, explain, run

WORKFLOW = TEMPLATE_DIR / ".github" / "workflows" / "ci.yml"
VALIDATOR_TIMEOUT = 120


def template_workflow() -> dict[Any, Any]:
    """YAML 1.1 (PyYAML) reads the key `on` as True: it is stored under "on" here."""
    document: dict[Any, Any] = load_yaml(WORKFLOW)
    document["on"] = document.pop(True)
    return document


def test_template_workflow_matches_the_published_github_workflow_schema() -> None:
    process = run(
        [TOOLS_BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", WORKFLOW],
        cwd=TEMPLATE_DIR,
        timeout=VALIDATOR_TIMEOUT,
    )
    assert process.returncode == 0, explain(process)


def test_template_workflow_runs_make_test_against_postgres_and_redis_on_their_default_ports() -> None:
    document = template_workflow()
    assert {"push", "pull_request"} <= set(document["on"])
    (job,) = document["jobs"].values()
    assert job["timeout-minutes"] > 0
    assert [step["run"] for step in job["steps"] if "run" in step] == ["make test"]
    assert any("setup-python" in step.get("uses", "") for step in job["steps"])
    services = job["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert all("--health-cmd" in service["options"] for service in services.values())
    # Where a fresh bake's .env and the template Makefile's defaults look for them.
    assert services["postgres"]["ports"] == ["5432:5432"]
    assert services["redis"]["ports"] == ["6379:6379"]
    assert job["env"]["CI"] == "true"

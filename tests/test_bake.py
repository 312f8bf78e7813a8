"""What a bake produces: the files, the names, the secrets, the repository, the locks, and clean code."""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version
from support import (
    TEMPLATE_DIR,
    TOOLS_BIN,
    Bake,
    assert_succeeded,
    clean_environment,
    commit_count,
    declared_requirements,
    dotenv_values,
    explain,
    git,
    lock_entries,
    project_tree,
    render_hook,
    run,
)

DEFAULT_PACKAGE_FILES = [
    "pyproject.toml",
    "requirements.txt",
    "requirements-dev.txt",
    "Makefile",
    "Procfile",
    ".env.example",
    ".env",
    ".gitignore",
    "README.md",
    "src/my_service/__init__.py",
    "src/my_service/settings.py",
    "src/my_service/database.py",
    "src/my_service/logs.py",
    "src/my_service/models.py",
    "src/my_service/schema.py",
    "src/my_service/cli.py",
    "src/my_service/web/__init__.py",
    "src/my_service/web/app.py",
    "src/my_service/migrations/env.py",
]

UNRENDERED_MARKERS = ("{{", "{%", "cookiecutter.")
# Anything that would tie a lock file to one package index, or fetch from somewhere other than the index.
LOCK_FORBIDDEN = ("--index-url", "--extra-index-url", "--find-links", "http://", "https://", "file:")
LOCKS = {"requirements.txt": (), "requirements-dev.txt": ("dev",)}

BAKES = ["default_bake", "unusual_bake", "longest_bake"]


def a_bake(request: pytest.FixtureRequest, name: str) -> Bake:
    bake: Bake = request.getfixturevalue(name)
    return bake


# --- The default bake --------------------------------------------------------------------------------------


@functools.cache
def unshare_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run(
        [unshare, "--net", "--map-root-user", "true"], capture_output=True, check=False, timeout=30
    )
    return probe.returncode == 0


def test_default_answers_bake_offline(tmp_path: Path) -> None:
    # In a network namespace of its own when the machine allows one; the proxies catch any HTTP client
    # either way (port 9 on this host refuses connections).
    offline = ["unshare", "--net", "--map-root-user"] if unshare_works() else []
    closed = "http://127.0.0.1:9"
    env = clean_environment(
        http_proxy=closed, https_proxy=closed, HTTP_PROXY=closed, HTTPS_PROXY=closed, no_proxy=""
    )
    process = run(
        [*offline, TOOLS_BIN / "cookiecutter", "--no-input", "--output-dir", tmp_path, TEMPLATE_DIR],
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert_succeeded(process)
    project = tmp_path / "my-service"
    assert (project / "pyproject.toml").is_file(), explain(process)
    assert (project / ".env").is_file(), explain(process)
    assert commit_count(project) == 1


@pytest.mark.parametrize("path", DEFAULT_PACKAGE_FILES)
def test_default_bake_contains(default_bake: Bake, path: str) -> None:
    assert (default_bake.project / path).is_file()


def test_default_bake_is_named_after_the_default_project_name(default_bake: Bake) -> None:
    assert default_bake.project.name == "my-service"
    assert default_bake.slug == "my-service"
    assert default_bake.package == "my_service"


def test_migrations_ship_with_at_least_one_revision(default_bake: Bake) -> None:
    versions = default_bake.project / "src/my_service/migrations/versions"
    assert sorted(path.name for path in versions.glob("*.py") if path.name != "__init__.py")


def test_procfile_releases_with_the_release_command_and_serves_with_web(default_bake: Bake) -> None:
    lines = (default_bake.project / "Procfile").read_text().splitlines()
    # `release` audits the deploy (`check`), then migrates.
    assert "release: my-service release" in lines
    assert "web: my-service web" in lines


def test_console_script_is_named_after_the_slug(default_bake: Bake) -> None:
    pyproject = tomllib.loads((default_bake.project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "my-service"
    assert pyproject["project"]["scripts"] == {"my-service": "my_service.cli:main"}


# --- An unusual name ---------------------------------------------------------------------------------------


def test_unusual_name_gets_an_ascii_slug_and_package(unusual_bake: Bake) -> None:
    assert unusual_bake.slug == "cafe-unicode-service"
    assert unusual_bake.package == "cafe_unicode_service"
    assert unusual_bake.project.name == "cafe-unicode-service"
    assert (unusual_bake.project / "src/cafe_unicode_service/cli.py").is_file()
    assert (unusual_bake.project / "src/cafe_unicode_service/web/app.py").is_file()


def test_unusual_name_is_used_for_the_console_script_and_procfile(unusual_bake: Bake) -> None:
    pyproject = tomllib.loads((unusual_bake.project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "cafe-unicode-service"
    assert pyproject["project"]["scripts"] == {"cafe-unicode-service": "cafe_unicode_service.cli:main"}
    lines = (unusual_bake.project / "Procfile").read_text().splitlines()
    assert "release: cafe-unicode-service release" in lines
    assert "web: cafe-unicode-service web" in lines


def test_unusual_name_is_kept_as_typed_in_the_readme(unusual_bake: Bake) -> None:
    title = (unusual_bake.project / "README.md").read_text(encoding="utf-8").splitlines()[0]
    assert title == "# Café Ünïcode Service"


# --- Rendering ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bake_name", BAKES)
def test_no_file_is_left_unrendered(request: pytest.FixtureRequest, bake_name: str) -> None:
    bake = a_bake(request, bake_name)
    leftovers = []
    for relative, content in project_tree(bake.project, skip=frozenset({".git"})).items():
        if content is None:
            continue
        for number, line in enumerate(content.decode("utf-8").splitlines(), start=1):
            if any(marker in line for marker in UNRENDERED_MARKERS):
                leftovers.append(f"{relative}:{number}: {line.strip()}")
        if any(marker in relative for marker in UNRENDERED_MARKERS):
            leftovers.append(f"{relative}: unrendered file name")
    assert not leftovers, "Jinja left in the bake:\n" + "\n".join(leftovers)


def test_two_bakes_with_the_same_answers_are_identical(twin_bakes: tuple[Bake, Bake]) -> None:
    first, second = (project_tree(bake.project) for bake in twin_bakes)
    assert sorted(first) == sorted(second)
    differing = [path for path in first if first[path] != second[path]]
    assert not differing, (
        f"files that differ between two identical bakes (besides .env and .git): {differing}"
    )


# --- The .env file and its secret --------------------------------------------------------------------------


def test_dotenv_has_a_secret_key_of_at_least_32_characters(default_bake: Bake) -> None:
    secret = dotenv_values(default_bake.project / ".env")["SECRET_KEY"]
    assert len(secret) >= 32


def test_dotenv_secret_key_is_not_the_example_value(default_bake: Bake) -> None:
    secret = dotenv_values(default_bake.project / ".env")["SECRET_KEY"]
    example = dotenv_values(default_bake.project / ".env.example")["SECRET_KEY"]
    assert secret != example


def test_dotenv_is_the_example_with_only_the_secret_key_filled_in(default_bake: Bake) -> None:
    dotenv = (default_bake.project / ".env").read_text().splitlines()
    example = (default_bake.project / ".env.example").read_text().splitlines()
    assert len(dotenv) == len(example)
    differing = [(mine, theirs) for mine, theirs in zip(dotenv, example, strict=True) if mine != theirs]
    assert [theirs for _, theirs in differing] == ["SECRET_KEY="]


def test_each_bake_gets_its_own_secret_key(twin_bakes: tuple[Bake, Bake]) -> None:
    first, second = (dotenv_values(bake.project / ".env")["SECRET_KEY"] for bake in twin_bakes)
    assert first != second


def test_dotenv_is_readable_only_by_its_owner(default_bake: Bake) -> None:
    mode = stat.S_IMODE((default_bake.project / ".env").stat().st_mode)
    assert mode == 0o600, oct(mode)


# --- The git repository ------------------------------------------------------------------------------------


def test_bake_is_a_git_repository_with_exactly_one_commit(default_bake: Bake) -> None:
    assert (default_bake.project / ".git").is_dir()
    assert commit_count(default_bake.project) == 1


def test_dotenv_is_git_ignored(default_bake: Bake) -> None:
    process = run(["git", "check-ignore", "--quiet", ".env"], cwd=default_bake.project, timeout=30)
    assert process.returncode == 0, explain(process)


def test_dotenv_is_not_in_the_first_commit(default_bake: Bake) -> None:
    committed = git(default_bake.project, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    assert ".env" not in committed
    assert ".env.example" in committed


def test_first_commit_holds_every_other_generated_file(default_bake: Bake) -> None:
    assert git(default_bake.project, "status", "--porcelain", "--untracked-files=all") == ""


def test_first_commit_is_authored_with_the_answered_identity(default_bake: Bake) -> None:
    # The session runs git with no configuration at all (see conftest), so the identity came from the hook.
    identity = git(default_bake.project, "log", "-1", "--format=%an%n%ae%n%cn%n%ce").splitlines()
    author = [default_bake.answers["author_name"], default_bake.answers["author_email"]]
    assert identity == author + author


def test_running_the_post_gen_hook_again_changes_nothing(bake: Bake, tmp_path: Path) -> None:
    hook = tmp_path / "post_gen_project.py"
    hook.write_text(render_hook("post_gen_project.py", bake.answers))
    tree = project_tree(bake.project, skip=frozenset({".git"}))
    head = git(bake.project, "rev-parse", "HEAD")

    assert_succeeded(run([sys.executable, hook], cwd=bake.project, timeout=60))

    assert project_tree(bake.project, skip=frozenset({".git"})) == tree
    assert git(bake.project, "rev-parse", "HEAD") == head
    assert commit_count(bake.project) == 1


def test_post_gen_hook_without_git_still_writes_dotenv(bake: Bake, tmp_path: Path) -> None:
    hook = tmp_path / "post_gen_project.py"
    hook.write_text(render_hook("post_gen_project.py", bake.answers))
    shutil.rmtree(bake.project / ".git")
    (bake.project / ".env").unlink()
    no_tools = tmp_path / "empty-bin"
    no_tools.mkdir()

    env = {"PATH": str(no_tools), "HOME": str(tmp_path)}
    assert_succeeded(run([sys.executable, hook], cwd=bake.project, env=env, timeout=60))

    assert len(dotenv_values(bake.project / ".env")["SECRET_KEY"]) >= 32
    assert not (bake.project / ".git").exists()


# --- Lock files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_names_no_index_url_or_location(default_bake: Bake, lock: str) -> None:
    text = (default_bake.project / lock).read_text()
    found = [forbidden for forbidden in LOCK_FORBIDDEN if forbidden in text]
    assert not found, f"{lock} names {found}: it must install unchanged from any index or mirror"


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_pins_every_package_to_one_version_with_hashes(default_bake: Bake, lock: str) -> None:
    entries = lock_entries(default_bake.project / lock)  # fails on any line that is not name==version+hashes
    assert entries
    assert all(entry.hashes for entry in entries)


@pytest.mark.parametrize(("lock", "extras"), LOCKS.items())
def test_lock_pins_every_declared_dependency_within_its_range(
    default_bake: Bake, lock: str, extras: tuple[str, ...]
) -> None:
    pyproject = tomllib.loads((default_bake.project / "pyproject.toml").read_text())
    versions: dict[str, list[Version]] = {}
    for entry in lock_entries(default_bake.project / lock):
        versions.setdefault(entry.name, []).append(entry.version)
    problems = []
    for requirement in declared_requirements(pyproject, extras=extras):
        name = canonicalize_name(requirement.name)
        if name not in versions:
            problems.append(f"{requirement} is not in {lock}")
            continue
        outside = [v for v in versions[name] if not requirement.specifier.contains(v, prereleases=True)]
        if outside:
            problems.append(f"{requirement} but {lock} pins {name}=={', '.join(map(str, outside))}")
    assert not problems, "\n".join(problems)


def test_dev_lock_pins_the_runtime_packages_at_the_same_versions(default_bake: Bake) -> None:
    runtime = {
        (entry.name, entry.version) for entry in lock_entries(default_bake.project / "requirements.txt")
    }
    dev = {
        (entry.name, entry.version) for entry in lock_entries(default_bake.project / "requirements-dev.txt")
    }
    assert runtime <= dev, f"pinned differently in requirements-dev.txt: {sorted(runtime - dev)}"


# --- Code quality ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bake_name", BAKES)
def test_baked_python_passes_ruff_check(request: pytest.FixtureRequest, bake_name: str) -> None:
    bake = a_bake(request, bake_name)
    # --no-cache: leave the shared bake exactly as it was baked.
    process = run([TOOLS_BIN / "ruff", "check", "--no-cache", "."], cwd=bake.project, timeout=120)
    assert process.returncode == 0, explain(process)


@pytest.mark.parametrize("bake_name", BAKES)
def test_baked_python_is_ruff_formatted(request: pytest.FixtureRequest, bake_name: str) -> None:
    bake = a_bake(request, bake_name)
    process = run([TOOLS_BIN / "ruff", "format", "--check", "--no-cache", "."], cwd=bake.project, timeout=120)
    assert process.returncode == 0, explain(process)


def test_ruff_is_run_with_the_baked_projects_own_configuration(default_bake: Bake) -> None:
    # The two tests above rely on ruff finding the bake's pyproject.toml, not the template's.
    process = run(
        [TOOLS_BIN / "ruff", "check", "--no-cache", "--show-settings", "src/my_service/cli.py"],
        cwd=default_bake.project,
        timeout=60,
    )
    assert_succeeded(process)
    settings_source = next(line for line in process.stdout.splitlines() if line.startswith("Settings path"))
    assert os.fspath(default_bake.project / "pyproject.toml") in settings_source

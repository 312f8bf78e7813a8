"""Template updates with cruft: a later template commit reaches services baked from an earlier one.

Services are baked from the first commit of a throwaway history of this template; then a realistic template
change is committed on top (a new setting with its .env.example line and README row, a module using it, a
dependency upgraded in both locks), and `cruft update` runs in each service, as its README says.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from support import (
    LockEntry,
    assert_succeeded,
    clean_environment,
    explain,
    git,
    lock_entries,
    run,
)
from update_support import (
    CRUFT,
    LOCKS,
    NEW_SETTING,
    NEW_SETTING_DEFAULT,
    OLDER_RELEASE,
    README_ROW_BEFORE_THE_NEW_ONE,
    SERVICE,
    UPGRADED_PACKAGE,
    add_a_setting,
    commit_all,
    cookiecutter_bake,
    copy_of_this_template,
    cruft,
    cruft_create,
    pin_older_release,
    relock,
)

UPDATE: list[str | Path] = [CRUFT, "update", "--skip-apply-ask", "--allow-untracked-files"]
UPDATED = "Good work! Project's cruft has been updated and is as clean as possible!"
OUT_OF_DATE = "FAILURE: Project's cruft is out of date! Run `cruft update` to clean this mess up."
CONFLICT_MARKERS = ("<<<<<<< ", "\n=======\n", ">>>>>>> ")


def files_with_conflicts(project: Path) -> list[str]:
    """Files cruft left .rej files for or wrote conflict markers into."""
    found = [path.relative_to(project).as_posix() for path in project.rglob("*.rej")]
    for path in project.rglob("*"):
        if ".git" in path.relative_to(project).parts or ".venv" in path.parts or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if all(marker in text for marker in CONFLICT_MARKERS):
            found.append(path.relative_to(project).as_posix())
    return sorted(found)


def pins(lock: Path) -> list[LockEntry]:
    """The upgraded package's entries in a lock file: version, marker and hashes."""
    return [entry for entry in lock_entries(lock) if entry.name == UPGRADED_PACKAGE]


def changed_files(project: Path) -> list[str]:
    return sorted(line[3:] for line in git(project, "status", "--porcelain").splitlines())


# --- Updates: a later template commit reaches baked services ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class History:
    """A throwaway template repository with two commits, and services baked from the first one."""

    template: Path
    first: str
    second: str
    services: dict[str, Path]

    def committed_file(self, path: str) -> bytes:
        return (self.template / SERVICE / path).read_bytes()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("updates")
    template = copy_of_this_template(root / "template")
    current_locks = {lock: (template / SERVICE / lock).read_bytes() for lock in LOCKS}
    scratch = root / "scratch"
    scratch.mkdir()
    pin_older_release(template, scratch)
    git(template, "init", "--quiet", "--initial-branch=main")
    first = commit_all(template, f"The template as it is on disk, with {UPGRADED_PACKAGE} {OLDER_RELEASE}")
    services = {
        "untouched": cruft_create(template, root / "untouched"),
        "edited": cookiecutter_bake(template, root / "edited"),
        "own-dependency": cookiecutter_bake(template, root / "own-dependency"),
    }
    # The template change: a new setting end to end, and the dependency back at its current release.
    add_a_setting(template)
    for lock, content in current_locks.items():
        (template / SERVICE / lock).write_bytes(content)
    second = commit_all(template, f"Add {NEW_SETTING}; upgrade {UPGRADED_PACKAGE}")
    return History(template, first, second, services)


@dataclasses.dataclass(frozen=True)
class Update:
    service: Path
    process: subprocess.CompletedProcess[str]
    dotenv_before: bytes


@pytest.fixture(scope="module")
def untouched_update(history: History) -> Update:
    """`cruft update` in a service nobody edited since it was baked."""
    service = history.services["untouched"]
    dotenv = (service / ".env").read_bytes()
    return Update(service, run(UPDATE, cwd=service, env=clean_environment(), timeout=300), dotenv)


@pytest.mark.slow
def test_check_reports_a_newer_template_commit(history: History, tmp_path: Path) -> None:
    # A copy, so the module's services stay as baked.
    service = tmp_path / "copy"
    shutil.copytree(history.services["edited"], service, symlinks=True)

    check = cruft(service, "check")

    assert check.returncode == 1, explain(check)
    assert OUT_OF_DATE in check.stdout


@pytest.mark.slow
def test_update_without_local_edits_applies_every_change_and_nothing_else(
    history: History, untouched_update: Update
) -> None:
    service = untouched_update.service
    assert untouched_update.process.returncode == 0, explain(untouched_update.process)
    assert UPDATED in untouched_update.process.stdout, explain(untouched_update.process)

    assert files_with_conflicts(service) == []
    assert changed_files(service) == [
        ".cruft.json",
        ".env.example",
        "README.md",
        "requirements-dev.txt",
        "requirements.txt",
        "src/my_service/cli.py",
        "src/my_service/settings.py",
        "tests/test_settings.py",
    ]
    assert json.loads((service / ".cruft.json").read_text())["commit"] == history.second
    # The hook's files are the service's own: its secret and its history stay as they were.
    assert (service / ".env").read_bytes() == untouched_update.dotenv_before
    assert git(service, "rev-list", "--count", "HEAD").strip() == "1"
    # Afterwards the service is exactly the new template commit (hooks' files aside).
    assert_succeeded(cruft(service, "check"))
    assert_succeeded(cruft(service, "diff", "--exit-code"))


@pytest.mark.slow
def test_update_brings_the_lock_files_byte_for_byte(history: History, untouched_update: Update) -> None:
    assert untouched_update.process.returncode == 0, explain(untouched_update.process)
    for lock in LOCKS:
        assert (untouched_update.service / lock).read_bytes() == history.committed_file(lock), lock
        upgraded = pins(untouched_update.service / lock)
        assert upgraded
        assert all(str(entry.version) != OLDER_RELEASE and entry.hashes for entry in upgraded)


@pytest.fixture(scope="module")
def installed_update(untouched_update: Update) -> Path:
    service = untouched_update.service
    assert untouched_update.process.returncode == 0, explain(untouched_update.process)
    installing = run(["make", "install"], cwd=service, env=clean_environment(), timeout=300)
    assert_succeeded(installing)
    return service


@pytest.mark.slow
def test_updated_service_passes_its_settings_and_command_tests(
    installed_update: Path, backing_services: dict[str, str]
) -> None:
    # The tests of what the update touched. Among them: .env.example lists exactly the settings with their
    # real defaults, and `config` prints every setting.
    pytest_command: list[str | Path] = [installed_update / ".venv/bin/pytest", "-q", "-p", "no:cacheprovider"]
    tests = run(
        [*pytest_command, "tests/test_settings.py", "tests/test_cli.py"],
        cwd=installed_update,
        env=clean_environment(**backing_services),
        timeout=300,
    )
    assert_succeeded(tests)


@pytest.mark.slow
def test_updated_service_reads_the_new_setting(installed_update: Path) -> None:
    # The baked .env (skipped by the update) has no line for it: the default applies until one is set.
    config = installed_update / ".venv/bin/my-service"
    default = run([config, "config"], cwd=installed_update, env=clean_environment(), timeout=60)
    exported = run(
        [config, "config"], cwd=installed_update, env=clean_environment(**{NEW_SETTING: "75"}), timeout=60
    )
    assert f"{NEW_SETTING}={NEW_SETTING_DEFAULT}" in default.stdout.splitlines(), explain(default)
    assert f"{NEW_SETTING}=75" in exported.stdout.splitlines(), explain(exported)


@pytest.mark.slow
def test_update_conflicting_with_a_local_edit_leaves_conflict_markers(history: History) -> None:
    service = history.services["edited"]
    readme = service / "README.md"
    edited_row = f"{README_ROW_BEFORE_THE_NEW_ONE} `10.0.0.0/8` | our load balancer's network |"
    lines = [
        edited_row if line.startswith(README_ROW_BEFORE_THE_NEW_ONE) else line
        for line in readme.read_text(encoding="utf-8").splitlines()
    ]
    readme.write_text("\n".join(lines) + "\n", encoding="utf-8")
    commit_all(service, "Document our proxies")

    update = run(UPDATE, cwd=service, env=clean_environment(), timeout=300)

    assert update.returncode == 0, explain(update)
    assert "Applied patch to 'README.md' with conflicts." in update.stderr, explain(update)
    assert files_with_conflicts(service) == ["README.md"]
    # git's three-way merge: both sides in the file between markers, and the file unmerged in the index.
    assert git(service, "diff", "--name-only", "--diff-filter=U").split() == ["README.md"]
    ours, _, theirs = readme.read_text(encoding="utf-8").partition("<<<<<<< ours\n")[2].partition("=======\n")
    assert edited_row in ours
    assert f"| `{NEW_SETTING}` |" in theirs.partition(">>>>>>> theirs\n")[0]
    # Every other file took the update.
    assert f"{NEW_SETTING}={NEW_SETTING_DEFAULT}" in (service / ".env.example").read_text()
    assert json.loads((service / ".cruft.json").read_text())["commit"] == history.second


@pytest.mark.slow
def test_update_merges_into_lock_files_the_service_changed(history: History) -> None:
    service = history.services["own-dependency"]
    # The service adds a dependency of its own and re-locks, as its README says (`make lock`).
    pyproject = service / "pyproject.toml"
    declared = '    "click>=8.1,<9",\n'
    pyproject.write_text(pyproject.read_text().replace(declared, declared + '    "tenacity>=9",\n', 1))
    relock(service, upgrade=f"{UPGRADED_PACKAGE}=={OLDER_RELEASE}")
    commit_all(service, "Retry calls with tenacity")
    own = {lock: {entry.name for entry in lock_entries(service / lock)} for lock in LOCKS}
    assert "tenacity" in own["requirements.txt"]

    update = run(UPDATE, cwd=service, env=clean_environment(), timeout=300)

    assert update.returncode == 0, explain(update)
    assert files_with_conflicts(service) == []
    merged = {lock: (service / lock).read_bytes() for lock in LOCKS}
    for lock in LOCKS:
        entries = lock_entries(service / lock)  # every line still `name==version` with its hashes
        assert {entry.name for entry in entries} == own[lock]
        assert pins(service / lock) == pins(history.template / SERVICE / lock)
    # Re-locking the merged pyproject.toml gives exactly what the merge wrote, hashes and all.
    relock(service)
    for lock in LOCKS:
        assert (service / lock).read_bytes() == merged[lock], f"{lock} differs from a fresh `make lock`"

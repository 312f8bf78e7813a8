"""Local, offline finishing touches; safe to run again (template-update tools such as cruft re-run hooks).

1. `.env` from `.env.example` with a fresh SECRET_KEY, unless a `.env` already exists.
2. `.cruft.json`: the template's source, commit and answers, so `cruft check`, `cruft diff` and `cruft update`
   work whether the service was made with `cruft create` or with plain `cookiecutter`; unless one exists.
3. A git repository with a first commit (factor I), unless one already exists or git is not installed.

The files this hook writes differ from bake to bake (a fresh secret, a commit's time), so the service's
`[tool.cruft] skip` keeps them out of every template diff.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# The author arrives as JSON: `tojson` escapes every quote character, so no answer can end the raw string.
# fmt: off
AUTHOR: dict[str, str] = json.loads(r'''{{ {
    "name": cookiecutter.author_name,
    "email": cookiecutter.author_email,
} | tojson }}''')
# Every answer as [name, value] pairs in cookiecutter's order (`tojson` of the whole dict sorts the names,
# and cruft writes them in order).
ANSWERS: dict[str, Any] = dict(json.loads(r'''[
{%- for name, value in cookiecutter.items() %}{{ [name, value] | tojson }}{% if not loop.last %},{% endif %}
{%- endfor %}]'''))
# fmt: on

# What plain cookiecutter adds to the answers and cruft does not: where this one bake ran.
WHERE_COOKIECUTTER_RAN = ("_output_dir", "_repo_dir", "_checkout")


def write_dotenv(project: Path) -> None:
    dotenv = project / ".env"
    if dotenv.exists():
        return
    example = (project / ".env.example").read_text()
    key = secrets.token_urlsafe(48)
    content = re.sub(r"(?m)^SECRET_KEY=.*$", f"SECRET_KEY={key}", example, count=1)
    # Created owner-only from the start: the secret is never readable by others, not even for a moment.
    descriptor = os.open(dotenv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(content)
    dotenv.chmod(0o600)  # exactly 0600, whatever the umask


def git_output(folder: Path, *arguments: str) -> str | None:
    """A git command's one-line answer about `folder`, or None if git or the repository is missing."""
    git = shutil.which("git")
    if git is None:
        return None
    process = subprocess.run(
        [git, "-C", str(folder), *arguments], capture_output=True, text=True, check=False
    )
    return process.stdout.strip() if process.returncode == 0 else None


def as_typed(path: str) -> Path:
    """A path as the user typed it to cookiecutter: a relative one is relative to the folder cookiecutter
    started in (the shell passes it down as PWD), not to this hook's working directory, the project."""
    typed = Path(path).expanduser()
    return typed if typed.is_absolute() else Path(os.environ.get("PWD", ".")) / typed


def cruft_state_from_cookiecutter(answers: dict[str, Any]) -> dict[str, Any] | None:
    """What `cruft create` would have recorded, worked out from plain cookiecutter's answers and git."""
    template_folder = as_typed(answers.get("_repo_dir") or "")
    if not (template_folder / "cookiecutter.json").is_file():
        note("the template folder is unknown")
        return None
    commit = git_output(template_folder, "rev-parse", "HEAD")
    top = git_output(template_folder, "rev-parse", "--show-toplevel")
    subfolder = git_output(template_folder, "rev-parse", "--show-prefix")
    if commit is None or top is None or subfolder is None:
        note(f"the template at {template_folder} is not a git repository")
        return None
    if as_typed(answers["_template"]).is_dir():
        source = top  # a checkout on this machine: cruft records its absolute path too
    else:
        # cookiecutter cloned it (from a URL or an abbreviation such as gh:): the address it cloned from.
        source = git_output(template_folder, "remote", "get-url", "origin") or ""
        if not source:
            note(f"the template clone at {template_folder} has no origin")
            return None
    if git_output(Path(top), "status", "--porcelain", "--untracked-files=no"):
        print(
            f"NOTE: the template at {top} has uncommitted changes; .cruft.json records its commit "
            f"{commit[:12]}, so `cruft diff` will show those changes as yours.",
            file=sys.stderr,
        )
    recorded = {name: value for name, value in answers.items() if name not in WHERE_COOKIECUTTER_RAN}
    recorded["_template"] = source
    recorded["_commit"] = commit
    return {
        "template": source,
        "commit": commit,
        "checkout": answers.get("_checkout"),
        "context": {"cookiecutter": recorded},
        "directory": subfolder.rstrip("/") or None,
    }


def note(reason: str) -> None:
    print(f"NOTE: no .cruft.json written ({reason}); `cruft link <template>` can record it.", file=sys.stderr)


def write_cruft_state(project: Path, answers: dict[str, Any]) -> None:
    cruft_file = project / ".cruft.json"
    if cruft_file.exists():
        return
    if "_commit" in answers:
        # cruft is baking (`cruft create`, or rendering a commit for `diff` and `update`): its own record,
        # exactly as cruft writes it after this hook, so the first commit already holds the same file.
        state: dict[str, Any] | None = {
            "template": answers["_template"],
            "commit": answers["_commit"],
            "checkout": None,
            "context": {"cookiecutter": answers},
            "directory": None,
        }
    else:
        state = cruft_state_from_cookiecutter(answers)
    if state is not None:
        # cruft's own layout (cruft/_commands/utils/cruft.py: json_dumps), byte for byte.
        text = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"
        cruft_file.write_text(text, encoding="utf-8")


def make_git_repository(project: Path) -> None:
    git = shutil.which("git")
    if git is None or (project / ".git").exists():
        return
    # Identity given per command, so the first commit works on a machine with no git configuration.
    identity = [
        *("-c", f"user.name={AUTHOR['name']}"),
        *("-c", f"user.email={AUTHOR['email']}"),
        *("-c", "commit.gpgsign=false"),
    ]

    def run_git(*arguments: str) -> None:
        subprocess.run(
            [git, *arguments], cwd=project, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    run_git("init", "--quiet", "--initial-branch=main")
    run_git("add", "--all")
    run_git(*identity, "commit", "--quiet", "--message", "Initial commit from twelvefactor-template")


if __name__ == "__main__":
    here = Path.cwd()
    write_dotenv(here)
    write_cruft_state(here, ANSWERS)
    make_git_repository(here)

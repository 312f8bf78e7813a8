"""Local, offline finishing touches; safe to run again (template-update tools such as cruft re-run hooks).

1. `.env` from `.env.example` with a fresh SECRET_KEY, unless a `.env` already exists.
2. A git repository with a first commit (factor I), unless one already exists or git is not installed.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

# The author arrives as JSON: `tojson` escapes every quote character, so no answer can end the raw string.
# fmt: off
AUTHOR: dict[str, str] = json.loads(r'''{{ {
    "name": cookiecutter.author_name,
    "email": cookiecutter.author_email,
} | tojson }}''')
# fmt: on


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
    make_git_repository(here)

"""Local, offline finishing touches; safe to run again (template-update tools such as cruft re-run hooks).

1. `.env` from `.env.example` with a fresh SECRET_KEY, unless a `.env` already exists.
2. A git repository with a first commit (factor I), unless one already exists or git is not installed.
"""

import re
import secrets
import shutil
import subprocess
from pathlib import Path

AUTHOR = ("{{ cookiecutter.author_name }}", "{{ cookiecutter.author_email }}")


def write_dotenv(project: Path) -> None:
    dotenv = project / ".env"
    if dotenv.exists():
        return
    example = (project / ".env.example").read_text()
    key = secrets.token_urlsafe(48)
    dotenv.write_text(re.sub(r"(?m)^SECRET_KEY=.*$", f"SECRET_KEY={key}", example, count=1))
    dotenv.chmod(0o600)


def make_git_repository(project: Path) -> None:
    git = shutil.which("git")
    if git is None or (project / ".git").exists():
        return
    name, email = AUTHOR
    # Identity given per command, so the first commit works on a machine with no git configuration.
    identity = ["-c", f"user.name={name}", "-c", f"user.email={email}", "-c", "commit.gpgsign=false"]
    quiet = {"cwd": project, "check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([git, "init", "--quiet", "--initial-branch=main"], **quiet)
    subprocess.run([git, "add", "--all"], **quiet)
    subprocess.run([git, *identity, "commit", "--quiet", "--message", "Initial commit from twelvefactor-template"], **quiet)


if __name__ == "__main__":
    here = Path.cwd()
    write_dotenv(here)
    make_git_repository(here)

"""Reject bad answers before anything is generated.

Cookiecutter removes the half-made output folder when this hook fails. Each rejection is one line naming
the field, the value and the rule.
"""

import json
import keyword
import re
import sys

# The answers arrive as JSON: `tojson` escapes every quote character, so no answer can end the raw string
# early, and quotes, backslashes and non-ASCII text reach the checks below exactly as typed.
# fmt: off
ANSWERS: dict[str, str] = json.loads(r'''{{ {
    "project_name": cookiecutter.project_name,
    "project_slug": cookiecutter.project_slug,
    "package_name": cookiecutter.package_name,
    "description": cookiecutter.description,
    "author_name": cookiecutter.author_name,
    "author_email": cookiecutter.author_email,
} | tojson }}''')
# fmt: on

SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
# Names appear in generated code and in test database names (PostgreSQL stops at 63 characters); these
# limits keep every generated line within the service's 110-column style and every identifier valid.
MAX_NAME_LENGTH = 60
MAX_IDENTIFIER_LENGTH = 40
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
# Free text the template writes verbatim inside TOML and Python string literals (pyproject.toml,
# the package docstring): a double quote, a backslash or a control character would break those files.
VERBATIM_TEXT_FIELDS = ("project_name", "description", "author_name", "author_email")
UNSAFE_IN_STRING_LITERALS = re.compile(r'["\\\x00-\x1f\x7f]')
# Import names of the generated service's own dependencies: a package named like one would shadow it.
DEPENDENCY_IMPORT_NAMES = frozenset(
    {
        "aiosqlite",
        "alembic",
        "asyncpg",
        "celery",
        "click",
        "deptry",
        "environs",
        "httptools",
        "httpx",
        "importlinter",
        "kombu",
        "marshmallow",
        "mypy",
        "psycopg",
        "pytest",
        "redis",
        "ruff",
        "sqlalchemy",
        "starlette",
        "uvicorn",
        "uvloop",
        "dotenv",
        "tests",
    }
)


def problems(answers: dict[str, str]) -> list[str]:
    found: list[str] = []
    if not answers["project_name"].strip():
        found.append("project_name '' is empty: give the service a name.")
    elif len(answers["project_name"]) > MAX_NAME_LENGTH:
        found.append(f"project_name {answers['project_name']!r} is longer than {MAX_NAME_LENGTH} characters.")
    for field in ("project_slug", "package_name"):
        if len(answers[field]) > MAX_IDENTIFIER_LENGTH:
            found.append(f"{field} {answers[field]!r} is longer than {MAX_IDENTIFIER_LENGTH} characters.")
    for field in VERBATIM_TEXT_FIELDS:
        if UNSAFE_IN_STRING_LITERALS.search(answers[field]):
            found.append(
                f"{field} {answers[field]!r} contains a double quote, a backslash or a control character, "
                "which the generated pyproject.toml and Python files cannot hold as written."
            )
    slug = answers["project_slug"]
    if not SLUG.fullmatch(slug):
        found.append(
            f"project_slug {slug!r} is invalid: use lowercase ASCII letters, digits and single hyphens, "
            "starting with a letter (for example 'my-service')."
        )
    package = answers["package_name"]
    if not package.isidentifier() or not package.isascii():
        found.append(f"package_name {package!r} is not a valid Python identifier (ASCII letters, digits, _).")
    elif keyword.iskeyword(package) or keyword.issoftkeyword(package):
        found.append(f"package_name {package!r} is a Python keyword: choose another name.")
    elif package in sys.stdlib_module_names:
        found.append(f"package_name {package!r} shadows the standard-library module {package!r}.")
    elif package.lower() in DEPENDENCY_IMPORT_NAMES:
        found.append(f"package_name {package!r} shadows the dependency {package.lower()!r} of the service.")
    elif package != package.lower():
        found.append(f"package_name {package!r} must be lowercase (PEP 8 module names).")
    if not EMAIL.fullmatch(answers["author_email"]):
        found.append(f"author_email {answers['author_email']!r} is not an e-mail address.")
    return found


if __name__ == "__main__":
    errors = problems(ANSWERS)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors:
        sys.exit(1)

"""Reject bad answers before anything is generated.

Cookiecutter removes the half-made output folder when this hook fails. Each rejection is one line naming
the field, the value and the rule.
"""

import keyword
import re
import sys

ANSWERS = {
    "project_name": "{{ cookiecutter.project_name }}",
    "project_slug": "{{ cookiecutter.project_slug }}",
    "package_name": "{{ cookiecutter.package_name }}",
    "author_email": "{{ cookiecutter.author_email }}",
}

SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
# Import names of the generated service's own dependencies: a package named like one would shadow it.
DEPENDENCY_IMPORT_NAMES = frozenset(
    {
        "aiosqlite", "alembic", "asyncpg", "celery", "click", "environs", "httptools", "httpx", "kombu",
        "marshmallow", "mypy", "psycopg", "pytest", "redis", "ruff", "sqlalchemy", "starlette", "uvicorn",
        "uvloop", "dotenv", "tests",
    }
)


def problems(answers: dict[str, str]) -> list[str]:
    found = []
    if not answers["project_name"].strip():
        found.append("project_name '' is empty: give the service a name.")
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

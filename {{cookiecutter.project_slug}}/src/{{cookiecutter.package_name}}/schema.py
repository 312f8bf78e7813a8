"""Factors V and XII: the schema changes only in the release step, one release at a time.

`upgrade_to_head()` is what `<slug> migrate` (the Procfile's `release` process) runs. It holds a PostgreSQL
advisory lock for the whole upgrade, so two releases started together apply each migration once. The web
process never migrates; it only compares the database's revision with the code's (see `/readyz`).

Alembic is imported only by the functions that run it. The web process learns the code's revisions by
reading the migration files' `revision` and `down_revision` lines instead: importing Alembic to do the
same was about a quarter of its start-up (tests/test_migrations.py holds the two answers equal).
"""

from __future__ import annotations

import ast
import dataclasses
import zlib
from importlib import resources
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from .database import create_sync_database_engine

if TYPE_CHECKING:
    from alembic.config import Config

    from .settings import Settings

MIGRATIONS = f"{__package__}:migrations"
# One lock per service: every release process of this service computes the same key.
MIGRATION_LOCK_KEY = zlib.crc32(MIGRATIONS.encode())


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def head_revisions() -> frozenset[str]:
    """The revisions the code expects the database to be at, as Alembic reports them."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def revisions_in_files() -> dict[str, frozenset[str]]:
    """Each migration's revision id, mapped to the ids it follows (`down_revision`), read, not run."""
    follows: dict[str, frozenset[str]] = {}
    for path in (resources.files(__package__) / "migrations" / "versions").iterdir():
        if path.name.endswith(".py"):
            ids = revision_ids(path.read_text(encoding="utf-8"))
            down = ids.get("down_revision")
            follows[ids["revision"]] = frozenset([down] if isinstance(down, str) else down or ())
    return follows


def revision_ids(source: str) -> dict[str, Any]:
    """The literal values of a migration's top-level `revision` and `down_revision` assignments."""
    assignments = (assignment(node) for node in ast.parse(source).body)
    return {
        name: ast.literal_eval(value)
        for name, value in filter(None, assignments)
        if name in ("revision", "down_revision")
    }


def assignment(node: ast.stmt) -> tuple[str, ast.expr] | None:
    """`name = value` or `name: type = value` as (name, value); None for any other statement."""
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    return None


@dataclasses.dataclass(frozen=True)
class SchemaExpectation:
    """What this code knows of the migrations: their heads, and every revision up to them."""

    heads: frozenset[str]
    known: frozenset[str]

    @classmethod
    def from_migrations(cls) -> SchemaExpectation:
        follows = revisions_in_files()
        known = frozenset(follows)
        # A head is a revision no other revision follows.
        return cls(heads=known - frozenset().union(*follows.values()), known=known)

    def problem_with(self, current: frozenset[str]) -> str | None:
        """Why a database at `current` cannot serve this code, or None if it can.

        A database at a revision this code has never heard of was migrated by a newer release. During a
        rolling deploy the old processes keep serving it: migrations add before they remove (expand, then
        contract), so the newer schema still fits the older code.
        """
        if current == self.heads or (current and not current <= self.known):
            return None
        found = ", ".join(sorted(current)) or "none"
        expected = ", ".join(sorted(self.heads))
        return f"at revision {found}, expected {expected}; run the release step (migrate)"


def upgrade_to_head(settings: Settings) -> None:
    from alembic import command

    engine = create_sync_database_engine(settings)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Held until this transaction ends; a concurrent release waits here, then finds nothing to do.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def check_models_match_migrations(settings: Settings) -> None:
    """Raise `alembic.util.AutogenerateDiffsDetected` if the models have changes no migration records."""
    from alembic import command

    engine = create_sync_database_engine(settings)
    try:
        with engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.check(config)
    finally:
        engine.dispose()

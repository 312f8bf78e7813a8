"""What the web process holds open while it runs, created in the app's lifespan and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..database import Reads
from ..jobs.publish import JobQueue
from ..schema import SchemaExpectation
from .shutdown import Draining

if TYPE_CHECKING:
    from .tokens import Authenticator


@dataclass(frozen=True)
class Resources:
    # Writes in sessions on `engine`; one-statement reads on `reads`.
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    reads: Reads
    schema: SchemaExpectation
    jobs: JobQueue
    draining: Draining
    # None only with API_OPEN=true.
    authenticator: Authenticator | None

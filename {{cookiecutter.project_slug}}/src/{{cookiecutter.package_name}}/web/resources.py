"""What the web process holds open while it runs, created in the app's lifespan and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..database import Reads
from ..jobs.publish import JobQueue
from ..schema import SchemaExpectation
from .shutdown import Draining


@dataclass(frozen=True)
class Resources:
    # Writes run in sessions on `engine`; reads of one statement on `reads`, outside a transaction.
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    reads: Reads
    # The migrations this code was written for; /readyz compares the database against them.
    schema: SchemaExpectation
    # Which release this process runs (factor V), for GET /version.
    release_id: str
    jobs: JobQueue
    draining: Draining
    # Secrets an incoming event may be signed with (EVENTS_SECRET, EVENTS_SECRET_PREVIOUS); none: all refused.
    event_secrets: tuple[str, ...] = ()

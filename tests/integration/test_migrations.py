"""Alembic migrations build exactly the schema the models describe, on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from store.migrate import current_revision, head_revision
from store.models import Base


async def test_database_is_at_head(engine: AsyncEngine) -> None:
    assert await current_revision(engine) == head_revision()


async def test_migrations_match_models(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == []

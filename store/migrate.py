"""Apply Alembic migrations from code: ``make run``, the tests and the API's startup check use it.

``python -m store.migrate`` (or ``make migrate``) upgrades the database named by ``DATABASE_URL``
(the embedded PostgreSQL when unset, started for the occasion) to head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from store.db import make_engine

INI = Path(__file__).with_name("alembic.ini")


def alembic_config() -> Config:
    return Config(str(INI))


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    config = alembic_config()

    def _upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


async def upgrade(url: str, revision: str = "head") -> None:
    engine = make_engine(url)
    try:
        await upgrade_engine(engine, revision)
    finally:
        await engine.dispose()


async def current_revision(engine: AsyncEngine) -> str | None:
    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(_current)


if __name__ == "__main__":
    # the embedded PostgreSQL (DATABASE_URL unset) must be running first: the launcher does that
    from runtime.stack import main

    raise SystemExit(main(["migrate"]))

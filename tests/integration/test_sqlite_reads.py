"""On SQLite, sessions that only read never wait for the write lock.

Found by the deposit-watch benchmark: thousands of idle watches reading through sessions that
began with BEGIN IMMEDIATE queued behind the API's writes until some exceeded the busy timeout
("database is locked"). Here a writer holds the lock until the reader has finished: if reads still
took the lock, the two would wait for each other and the test would time out.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from store.db import make_engine, make_read_session_factory, make_session_factory, reads_of
from store.migrate import upgrade


async def test_a_read_completes_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'locks.db'}"
    await upgrade(url)
    engine = make_engine(url)
    writes, reads = make_session_factory(engine), make_read_session_factory(engine)
    assert reads_of(writes).kw["bind"] is not None
    locked, read_done = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with writes.begin() as session:
            await session.execute(
                text(
                    "INSERT INTO users (id, tenant, subject, created_at) VALUES ('w', 't', 's', '2026-01-01')"
                )
            )
            locked.set()
            await read_done.wait()  # keep the write lock until the read is over

    async def reader() -> int:
        await locked.wait()
        async with reads() as session:
            count = (await session.execute(text("SELECT count(*) FROM users"))).scalar_one()
        read_done.set()
        return int(count)

    try:
        _, seen = await asyncio.wait_for(asyncio.gather(writer(), reader()), timeout=10)
    finally:
        read_done.set()
        await engine.dispose()
    assert seen == 0  # the reader saw the state before the writer's uncommitted insert

"""PostgreSQL connections cut under the API (``pg_terminate_backend``, as a failover or the chaos
run does): the request answers 503 with ``Retry-After`` (its transaction was rolled back) or
succeeds on a fresh connection, never 500. On the real PostgreSQL, through the API's own error
handlers and session dependency."""

# ruff: noqa: S608 - the statements are the test's own

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import get_session
from api.errors import install_error_handlers
from store.db import make_engine, make_session_factory

Session = Annotated[AsyncSession, Depends(get_session)]


def _app(url: str, pids: asyncio.Queue[int]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    engine = make_engine(url, pool_size=2)
    app.state.engine, app.state.sessions = engine, make_session_factory(engine)

    @app.post("/write")
    async def write(session: Session, value: int, hold: float = 0.0) -> dict[str, int]:
        """Writes a row, holding its transaction open ``hold`` seconds (the cut lands there)."""
        await session.execute(text("INSERT INTO cut_probe (value) VALUES (:v)"), {"v": value})
        pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await pids.put(int(pid))
        if hold:
            await session.execute(text("SELECT pg_sleep(:s)"), {"s": hold})
        return {"value": value}

    return app


async def _terminate(url: str, pid: int | None = None) -> int:
    """Cut one backend, or every other backend of the database."""
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            where = "pid = :pid" if pid else "pid <> pg_backend_pid()"
            cut = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    f"WHERE datname = current_database() AND {where}"
                ),
                {"pid": pid} if pid else {},
            )
            return int(cut.scalar_one())
    finally:
        await engine.dispose()


async def _rows(url: str) -> list[int]:
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(text("SELECT value FROM cut_probe ORDER BY value"))
            return [int(v) for v in found.scalars()]
    finally:
        await engine.dispose()


async def test_a_cut_connection_is_a_503_or_a_success_never_a_500(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    url = await new_database()
    engine = make_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE cut_probe (value INTEGER PRIMARY KEY)"))
    await engine.dispose()
    pids: asyncio.Queue[int] = asyncio.Queue()
    app = _app(url, pids)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=30
    ) as api:
        # mid-request: the backend is cut while the request's transaction is open
        request = asyncio.create_task(api.post("/write", params={"value": 1, "hold": 5}))
        assert await _terminate(url, await asyncio.wait_for(pids.get(), 20)) == 1
        cut = await request
        assert cut.status_code == 503, cut.text
        assert cut.headers["Retry-After"] == "1"
        assert cut.json()["error"]["code"] == "database_unavailable"
        # between requests: the pooled connections are cut while idle; the next request takes a
        # fresh one (or is told to retry), and the cut transaction left nothing behind
        ok = await api.post("/write", params={"value": 2})
        await pids.get()
        assert ok.status_code == 200, ok.text
        assert await _terminate(url) >= 1
        after = await api.post("/write", params={"value": 3})
        assert after.status_code in (200, 503), after.text
        # many at once while every connection is cut, again and again
        statuses: list[int] = []
        for round_ in range(3):
            batch = [
                asyncio.create_task(
                    api.post("/write", params={"value": 100 * (round_ + 1) + i, "hold": 0.5})
                )
                for i in range(8)
            ]
            await asyncio.sleep(0.3)
            await _terminate(url)
            statuses += [r.status_code for r in await asyncio.gather(*batch)]
        assert set(statuses) <= {200, 503} and 503 in statuses, statuses
        await app.state.engine.dispose()
    rows = await _rows(url)
    assert 1 not in rows and 2 in rows  # the cut write was rolled back, the next one kept
    assert (3 in rows) == (after.status_code == 200)

"""A transaction the database refuses is a 503 to retry, not a 500 (found by bench.deposit_watch:
at a few thousand open watches on SQLite, intent creation waited out the busy timeout)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from api.errors import install_error_handlers


def locked_error(path: Path) -> OperationalError:
    """A real 'database is locked' from SQLAlchemy: another connection holds the write lock."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError as exc:
        return exc
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    raise AssertionError("the write lock was granted twice")


async def test_a_locked_sqlite_database_answers_503_with_retry_after(tmp_path: Path) -> None:
    error = locked_error(tmp_path / "busy.db")
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/write")
    async def write() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post("/write")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "database_busy"
    assert "nothing was written" in response.json()["error"]["message"]

"""The embedded PostgreSQL of ``make run`` and the tests: starts, is reused, stops leaving no lock,
and a test session that died without its teardown does not leave its server behind."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncpg
import pytest

from sandbox.chain import free_port
from store.embedded import EmbeddedPostgres
from tests.fixtures.databases import ORPHAN_PREFIX, stop_orphans


async def test_start_create_reuse_and_stop(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "data", free_port())
    server.start()
    try:
        server.create_database("settle")
        server.create_database("settle")  # idempotent
        again = EmbeddedPostgres(tmp_path / "data", server.port)
        again.start()  # finds it running: reused, not a second server
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/settle")
        assert await conn.fetchval("SELECT current_database()") == "settle"
        await conn.close()
    finally:
        server.stop()
    assert not server.is_running()
    assert not (tmp_path / "data" / "postmaster.pid").exists()


def test_the_server_of_a_dead_session_is_stopped_and_removed(tmp_path: Path) -> None:
    orphan = tmp_path / f"{ORPHAN_PREFIX}dead"
    orphan.mkdir()
    (orphan / "owner.pid").write_text("999999999")  # no such process
    server = EmbeddedPostgres(orphan / "data", free_port())
    server.start()
    alive = tmp_path / f"{ORPHAN_PREFIX}alive"
    alive.mkdir()
    (alive / "owner.pid").write_text("1")  # init: alive, left alone
    stop_orphans(tmp_path)
    assert not orphan.exists()
    with pytest.raises(ConnectionRefusedError):  # nothing listens on its port any more
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    assert alive.exists()

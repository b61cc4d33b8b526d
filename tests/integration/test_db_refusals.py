"""A constraint violation becomes a short, readable, non-retryable error naming the constraint
and the key, without the SQL or its parameters; a foreign-key violation stays retryable. On the
real PostgreSQL."""

# ruff: noqa: S608 - the statements are the test's own, on tables it names itself

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.db_errors import non_retryable_integrity_error


async def _violation(engine: AsyncEngine, statement: str) -> BaseException:
    async with engine.connect() as conn:
        try:
            await conn.execute(text(statement))
        except Exception as exc:
            await conn.rollback()
            return exc
    raise AssertionError(f"{statement} was not refused")


async def _tables(engine: AsyncEngine, suffix: str) -> tuple[str, str]:
    parent, child = f"refusal_parent_{suffix}", f"refusal_child_{suffix}"
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"CREATE TABLE {parent} (id INTEGER PRIMARY KEY, receipt VARCHAR(32) "
                f"CONSTRAINT uq_{parent}_receipt UNIQUE, amount INTEGER NOT NULL "
                f"CONSTRAINT ck_{parent}_amount CHECK (amount > 0))"
            )
        )
        await conn.execute(
            text(
                f"CREATE TABLE {child} (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES {parent}(id))"
            )
        )
        await conn.execute(text(f"INSERT INTO {parent} VALUES (1, 'SBX0000001', 5)"))
    return parent, child


async def _assert_refusals(engine: AsyncEngine, parent: str, child: str) -> None:
    secret_phone = "254799999999"
    duplicate = await _violation(
        engine, f"INSERT INTO {parent} VALUES (2, 'SBX0000001', 7) -- {secret_phone}"
    )
    refused = non_retryable_integrity_error(duplicate)
    assert refused is not None and refused.non_retryable and refused.type == "UniqueViolation"
    assert "receipt" in refused.message
    assert "INSERT" not in refused.message and secret_phone not in refused.message
    assert len(refused.message) < 400

    check = non_retryable_integrity_error(
        await _violation(engine, f"INSERT INTO {parent} VALUES (3, 'SBX0000003', -1)")
    )
    assert check is not None and check.type == "CheckViolation" and "amount" in check.message

    missing = non_retryable_integrity_error(
        await _violation(engine, f"INSERT INTO {parent} (id, receipt) VALUES (4, 'SBX0000004')")
    )
    assert missing is not None and missing.type == "NotNullViolation"
    assert "SBX0000004" not in missing.message  # PostgreSQL quotes the whole row: left out

    orphan = await _violation(engine, f"INSERT INTO {child} VALUES (1, 999)")
    assert non_retryable_integrity_error(orphan) is None  # a parent may be committing

    other = await _violation(engine, f"SELECT * FROM {parent}_nowhere")
    assert non_retryable_integrity_error(other) is None


async def test_postgresql_refusals(engine: AsyncEngine) -> None:
    parent, child = await _tables(engine, uuid.uuid4().hex[:8])
    try:
        await _assert_refusals(engine, parent, child)
        duplicate = await _violation(engine, f"INSERT INTO {parent} VALUES (5, 'SBX0000001', 7)")
        refused = non_retryable_integrity_error(duplicate)
        assert refused is not None
        assert (
            f"uq_{parent}_receipt" in refused.message
            and "(receipt)=(SBX0000001)" in refused.message
        )
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {child}"))
            await conn.execute(text(f"DROP TABLE {parent}"))

"""Export-then-delete of finished operational rows, one batch per transaction.

Per batch, inside one transaction: the rows are selected (``FOR UPDATE SKIP LOCKED``, so two
runs never take the same rows), appended to the table's JSON-lines file, which is flushed and
fsynced, and only then deleted; the transaction commits after that. A crash before the fsync
leaves the rows in place (nothing deleted); a crash between the fsync and the commit leaves them
exported *and* in place, so the next run exports them again: the files are at-least-once, and a
row is never deleted unexported. Duplicates are told apart by their primary key.

Only finished rows go, and only the tables in :data:`TABLES` (webhook subscription deliveries
and their attempts among them): the ledger (``ledger_entries``,
``postings``, ``accounts``), deposits, intents, transfers, tickets and credential anchors are
never touched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from domain.verification import FINAL_STATUSES
from store.models import (
    Alert,
    Base,
    Notification,
    VerificationJob,
    WebhookAttempt,
    WebhookDelivery,
)

#: a subscription delivery is over once delivered or given up (``failed``); ``pending`` stays
_DELIVERY_FINAL = ("delivered", "failed")
_delivery_finished_at = func.coalesce(WebhookDelivery.delivered_at, WebhookDelivery.created_at)


@dataclass(frozen=True)
class Purgeable:
    model: type[Base]
    #: the moment a row finished (older than the cutoff: it goes)
    finished_at: ColumnElement[Any] | InstrumentedAttribute[Any]
    #: the rows that are finished at all (open, queued or active rows stay, however old)
    finished: ColumnElement[bool]


TABLES: dict[str, Purgeable] = {
    "verification_jobs": Purgeable(
        VerificationJob,
        func.coalesce(VerificationJob.completed_at, VerificationJob.created_at),
        VerificationJob.status.in_([s.value for s in FINAL_STATUSES]),
    ),
    # emails and webhook deliveries (channel) alike; "sent", "failed" (given up) and "skipped"
    # are final, anything else is still being delivered
    "notifications": Purgeable(
        Notification,
        Notification.updated_at,
        Notification.status.in_(["sent", "failed", "skipped"]),
    ),
    # a delivery's attempts go first, judged by their delivery (finished, and finished before the
    # cutoff), so a delivery redelivered yesterday keeps last year's attempts beside it
    "webhook_attempts": Purgeable(
        WebhookAttempt,
        select(_delivery_finished_at)
        .where(WebhookDelivery.id == WebhookAttempt.delivery_id)
        .scalar_subquery(),
        WebhookAttempt.delivery_id.in_(
            select(WebhookDelivery.id).where(WebhookDelivery.status.in_(_DELIVERY_FINAL))
        ),
    ),
    # then the delivery, once none of its attempts is left: deleting it would cascade to
    # attempts, and no row is ever deleted unexported
    "webhook_deliveries": Purgeable(
        WebhookDelivery,
        _delivery_finished_at,
        and_(
            WebhookDelivery.status.in_(_DELIVERY_FINAL),
            ~select(WebhookAttempt.seq)
            .where(WebhookAttempt.delivery_id == WebhookDelivery.id)
            .exists(),
        ),
    ),
    "alerts": Purgeable(
        Alert,
        func.coalesce(Alert.cleared_at, Alert.raised_at),
        Alert.status == "cleared",
    ),
}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def row_dict(row: Base) -> dict[str, Any]:
    return {c.key: _json_value(getattr(row, c.key)) for c in row.__mapper__.column_attrs}


def export_path(folder: Path, table: str, run_date: str) -> Path:
    return folder / f"{table}-{run_date}.jsonl"


def append_fsynced(path: Path, lines: list[str]) -> None:
    """Append and make it durable (the file, and the folder entry of a new file). The rows hold
    what the database holds (a notification's address, for one): the file is the owner's only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.writelines(line + "\n" for line in lines)
        out.flush()
        os.fsync(out.fileno())
    if new:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


async def purge_batch(
    session: AsyncSession,
    table: str,
    cutoff: datetime,
    limit: int,
    write: Callable[[list[str]], Awaitable[None]],
) -> list[dict[str, Any]]:
    """One batch inside the caller's transaction: select, ``write`` (must be durable when it
    returns), delete. Returns the rows exported and deleted."""
    spec = TABLES[table]
    key = spec.model.__mapper__.primary_key[0]
    rows = (
        (
            await session.execute(
                select(spec.model)
                .where(and_(spec.finished, spec.finished_at < cutoff))
                .order_by(key)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    if not rows:
        return []
    exported = [row_dict(row) for row in rows]
    await write([json.dumps(r, sort_keys=True, separators=(",", ":")) for r in exported])
    ids = [getattr(row, str(key.key)) for row in rows]
    await session.execute(delete(spec.model).where(key.in_(ids)))
    return exported

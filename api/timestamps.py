"""``UtcDateTime``: the one type every answer's timestamps have, so each carries its UTC offset.

A value without tzinfo is taken as UTC (the database and Temporal keep UTC); any other offset is
converted. Pydantic then writes it as ``...Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]

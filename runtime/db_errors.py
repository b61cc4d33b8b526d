"""A database refusing a write for good (a unique, check or not-null constraint) is not retried.

Retrying the same insert or update meets the same constraint: before this, such a step retried
every 30 s forever (``DB_BOOKKEEPING`` has no bound), the job said ``running`` with no error and
the only trace was ``Failure exceeds size limit`` (the SQLAlchemy error quotes the statement and
its parameters). :func:`non_retryable_integrity_error` turns it into a short, readable,
non-retryable ``ApplicationError`` (the workflow parks or fails at once, saying which constraint
and which key), without the SQL text or its parameters.

Activities that expect a violation (idempotent inserts: ``store.accounts``, ``store.intents``,
``store.deposits.record_callback`` ...) catch it in a savepoint first; only an uncaught one gets
here. Its types are ``domain.retries.DB_REFUSALS``. A foreign-key violation stays retryable: the
parent row may be a concurrent transaction that has not committed yet (and a step that keeps
failing is reported, see ``domain.retries``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from temporalio.exceptions import ApplicationError

#: PostgreSQL SQLSTATE of a foreign-key violation (left retryable)
FOREIGN_KEY_VIOLATION = "23503"
_PG_KINDS = {
    "23505": "UniqueViolation",
    "23514": "CheckViolation",
    "23502": "NotNullViolation",
    "23P01": "ExclusionViolation",
    "23001": "RestrictViolation",
}


def _chain(exc: BaseException) -> list[Any]:
    seen: list[Any] = []
    todo: list[Any] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen) or len(seen) > 10:
            continue
        seen.append(current)
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return seen


def _is_integrity(error: Any) -> bool:
    if isinstance(error, IntegrityError):
        return True
    try:
        from asyncpg.exceptions import IntegrityConstraintViolationError
    except ImportError:  # pragma: no cover - asyncpg is installed with the PostgreSQL extra
        return False
    return isinstance(error, IntegrityConstraintViolationError)


def non_retryable_integrity_error(exc: BaseException) -> ApplicationError | None:
    """The readable, non-retryable error for a constraint violation in ``exc``'s chain, else
    None (not a database refusal, or a foreign-key violation)."""
    chain = _chain(exc)
    if not any(_is_integrity(e) for e in chain):
        return None
    postgres = next((e for e in chain if getattr(e, "sqlstate", None)), None)
    if postgres is not None:
        state = str(postgres.sqlstate)
        if state == FOREIGN_KEY_VIOLATION:
            return None
        kind = _PG_KINDS.get(state, "IntegrityError")
        message = str(getattr(postgres, "message", None) or postgres).splitlines()[0]
        where = [
            f"{label} {value}"
            for label, value in (
                ("table", getattr(postgres, "table_name", None)),
                ("constraint", getattr(postgres, "constraint_name", None)),
            )
            if value
        ]
        detail = getattr(postgres, "detail", None)
        if detail and detail.startswith("Failing row contains"):
            detail = None  # a whole row (phones, emails) would leave with the error: named above
        text = (
            message
            + (f" ({', '.join(where)})" if where else "")
            + (f": {detail}" if detail else "")
        )
    else:  # another driver: its message, without the statement SQLAlchemy appends
        kind, text = "IntegrityError", str(exc).split("\n[SQL:")[0].splitlines()[0]
    return ApplicationError(
        f"the database refused the write, retrying cannot help: {text}",
        type=kind,
        non_retryable=True,
    )

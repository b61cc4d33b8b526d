"""One exception handler per error family, so every error answer has the same shape:

``{"error": {"code": "...", "message": "...", "field": "..."}}``
"""

from __future__ import annotations

from typing import Any

import asyncpg.exceptions as pg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from domain.errors import QuotaExceeded, SettleError
from runtime.logging import get_logger
from runtime.redact import redact

log = get_logger("api.errors")


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None
    fields: list[dict[str, str]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: documents the error shape for each status."""
    return {status: {"model": ErrorResponse} for status in statuses}


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


#: asyncpg's words for a connection that went away under a statement: class 08 (connection
#: exception), class 57 (operator intervention: ``pg_terminate_backend``, shutdown), the driver's
#: "connection was closed in the middle of operation" and the "cannot switch to state" a cut
#: connection leaves behind, and the socket's own errors
_CONNECTION_LOST = (
    pg.PostgresConnectionError,
    pg.OperatorInterventionError,
    pg.InterfaceError,
    pg.InternalClientError,
    ConnectionError,
    TimeoutError,
)


def connection_lost(exc: BaseException) -> bool:
    """The database went away under the request (its transaction was rolled back, or, cut at the
    commit, its outcome is the database's to tell): worth a retry, never a 500."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OperationalError | InterfaceError | PoolTimeout):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, _CONNECTION_LOST):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def _unavailable(exc: BaseException) -> JSONResponse:
    code = "database_unavailable"
    message = "the database is unavailable; the request did not complete, retry shortly"
    log.warning("request failed", code=code, error=str(getattr(exc, "orig", None) or exc))
    body = ErrorBody(code=code, message=message)
    return JSONResponse(
        {"error": body.model_dump(exclude_none=True)},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SettleError)
    async def settle_error(_request: Request, exc: SettleError) -> JSONResponse:
        message = redact(exc.message)
        if exc.status_code >= 500:
            log.warning("request failed", code=exc.code, message=message)
        body = ErrorBody(code=exc.code, message=message, field=exc.field)
        headers = (
            {"Retry-After": str(exc.retry_after_seconds)}
            if isinstance(exc, QuotaExceeded)
            else None
        )
        return JSONResponse(
            {"error": body.model_dump(exclude_none=True)},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(DBAPIError)
    async def database_unavailable(_request: Request, exc: DBAPIError) -> JSONResponse:
        """The database refused the transaction as a whole, or its connection was cut under it
        (``pg_terminate_backend``, a restart): a 503 with ``Retry-After``. A 500 would suggest a
        bug and hide that retrying is safe. Any other database error is a bug: it goes on."""
        if not connection_lost(exc):
            raise exc
        return _unavailable(exc)

    async def driver_connection_lost(_request: Request, exc: Exception) -> JSONResponse:
        """The driver's error raised unwrapped (a pool's reset, a cursor's close)."""
        return _unavailable(exc)

    for kind in (
        pg.PostgresConnectionError,
        pg.OperatorInterventionError,
        pg.InterfaceError,
        pg.InternalClientError,
        PoolTimeout,
    ):
        app.add_exception_handler(kind, driver_connection_lost)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            body = ErrorBody(code="bad_request", message="the request body is not valid JSON")
            return JSONResponse({"error": body.model_dump(exclude_none=True)}, status_code=400)
        fields = [
            {"field": _field_name(tuple(e.get("loc", ()))), "message": str(e.get("msg", "invalid"))}
            for e in errors
        ]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        body = ErrorBody(
            code="validation_error", message=message, field=fields[0]["field"], fields=fields
        )
        return JSONResponse({"error": body.model_dump(exclude_none=True)}, status_code=422)

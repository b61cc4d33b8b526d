"""One exception handler per error family, so every error answer has the same shape:

``{"error": {"code": "...", "message": "...", "field": "..."}}``
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

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

    @app.exception_handler(OperationalError)
    async def database_unavailable(_request: Request, exc: OperationalError) -> JSONResponse:
        """The database refused the transaction as a whole (it was rolled back): a 503 to retry.

        On PostgreSQL this is a lost or refused connection. A 500 would suggest a bug and hide
        that retrying is safe.
        """
        code = "database_unavailable"
        message = "the database is unavailable; nothing was written, retry shortly"
        log.warning("request failed", code=code, error=str(exc.orig))
        body = ErrorBody(code=code, message=message)
        return JSONResponse(
            {"error": body.model_dump(exclude_none=True)},
            status_code=503,
            headers={"Retry-After": "1"},
        )

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

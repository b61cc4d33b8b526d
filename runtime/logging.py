"""structlog configured once per process: JSON lines in production, a console format locally."""

from __future__ import annotations

import logging
import sys

import structlog
from opentelemetry import trace

from runtime.redact import redact, redact_value


def redact_event(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """No credentials in log lines: every value goes through :func:`runtime.redact.redact`."""
    return {key: redact_value(value) for key, value in event.items()}


def add_trace_ids(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """The current span's trace and span ids (``runtime/tracing.py``), so a log line can be
    found from a trace and the other way round. Outside a span (tracing off) it adds nothing."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """The same for the standard library's records (uvicorn, httpx, temporalio, sqlalchemy)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # a traceback quotes the exception's message: format it now, redacted
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        return True


def configure_logging(level: str = "INFO", *, json: bool = False) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_trace_ids,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact_event, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # route stdlib logging (uvicorn, temporalio, sqlalchemy) through the same level
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger

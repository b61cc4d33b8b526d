"""Start options a job request may carry (``POST /api/v1/jobs``): a delay and a priority.

The operation routers start their workflows themselves; the jobs router sets these options for
the duration of one request (a context variable), and each router's ``start_workflow`` call
spreads :func:`start_kwargs` into its arguments. Outside a job request it adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio.common import Priority


class StartOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Temporal priority key: 1 is dispatched first, 5 last (unset: the server's default, 3)
    priority: int | None = Field(default=None, ge=1, le=5)
    #: seconds before the workflow starts (a durable start delay on the server, not a sleep here)
    delay: float | None = Field(default=None, ge=0, le=7 * 86400)


_current: ContextVar[StartOptions | None] = ContextVar("settle_start_options", default=None)


@contextmanager
def starting_with(options: StartOptions) -> Iterator[None]:
    token = _current.set(options)
    try:
        yield
    finally:
        _current.reset(token)


def start_kwargs() -> dict[str, Any]:
    """Extra ``start_workflow`` arguments for the job request being handled, if any."""
    options = _current.get()
    if options is None:
        return {}
    kwargs: dict[str, Any] = {}
    if options.delay:
        kwargs["start_delay"] = timedelta(seconds=options.delay)
    if options.priority is not None:
        kwargs["priority"] = Priority(priority_key=options.priority)
    return kwargs

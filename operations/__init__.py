"""The application layer: one module per operation (start, get, cancel, retry, list).

The HTTP routers, ``POST /api/v1/jobs`` and the tests all call these functions; a router only
translates HTTP (path, headers, status codes) into a call and the answer back. Orchestration
(the row, the workflow start, the undo when nothing started) lives here once, so the two ways
of starting an operation cannot drift apart. Functions take an :class:`~operations.context.Context`
and the caller's :class:`~api.auth.Principal`, raise :mod:`domain.errors` and return views.
"""

"""Interpreter-wide guards every Settle process applies once its imports are done."""

from __future__ import annotations

import sys

#: the interpreter's own default. py_ecc (imported through web3) raises the limit to 100000, which
#: lets a deeply nested structure overflow the C stack and kill the process instead of raising
#: RecursionError
SANE_RECURSION_LIMIT = 1000


def restore_recursion_limit() -> None:
    """Call after the imports (API and worker), and again where a late import may raise it."""
    if sys.getrecursionlimit() != SANE_RECURSION_LIMIT:
        sys.setrecursionlimit(SANE_RECURSION_LIMIT)

"""The workflow sandbox every worker, test worker and replayer uses.

``domain`` is passed through: it holds only data types (pydantic models, enums), and workflows
mix instances made by activities (whose modules are passed through) with instances they build
themselves. Re-imported inside the sandbox, ``domain.X.Model`` would be a different class from the
one activities return, and pydantic refuses an instance of "the same" model from the other copy.

The sandbox imports a workflow's module (and the ``workflows`` modules it imports) again for every
workflow run it starts. Under ``PYTHONDONTWRITEBYTECODE`` (the Dockerfile sets it, so do many dev
shells) no bytecode is ever cached, and each of those imports compiled the source again: 7 % of
the worker's CPU in the ticket benchmark's profile. :func:`cache_bytecode` gives the worker a
bytecode cache of its own outside the source tree.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH = ("domain",)


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


def cache_bytecode() -> None:
    """Let imports cache bytecode, under a folder of this user's in the temporary directory when
    writing next to the sources is off (``PYTHONDONTWRITEBYTECODE``), so the sandbox's imports
    compile each module once per source change instead of once per workflow run."""
    if not sys.dont_write_bytecode:
        return
    if sys.pycache_prefix is None:
        folder = Path(tempfile.gettempdir()) / f"settle-pycache-{os.getuid()}"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return  # no writable temporary folder: compile as before
        sys.pycache_prefix = str(folder)
    sys.dont_write_bytecode = False

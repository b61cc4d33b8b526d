"""The workflow sandbox every worker, test worker and replayer uses.

``domain`` is passed through: it holds only data types (pydantic models, enums), and workflows
mix instances made by activities (whose modules are passed through) with instances they build
themselves. Re-imported inside the sandbox, ``domain.X.Model`` would be a different class from the
one activities return, and pydantic refuses an instance of "the same" model from the other copy.
"""

from __future__ import annotations

import compileall
import contextlib
from pathlib import Path

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH = ("domain",)


def workflows_dir() -> Path:
    """The sandboxed workflow code, imported again for every new workflow instance (a function:
    a test module defining a workflow imports this module inside the sandbox, where resolving a
    path is refused)."""
    return Path(__file__).resolve().parent.parent / "workflows"


def compile_workflows() -> None:
    """Write the workflow modules' bytecode if it is missing or old. The sandbox imports them
    anew for each workflow instance; under ``PYTHONDONTWRITEBYTECODE`` (the image, this
    checkout's tooling) no .pyc was ever written, so each instance compiled them from source:
    about 50 ms of a worker's CPU per new workflow. Best effort (a read-only tree is fine)."""
    with contextlib.suppress(OSError):
        compileall.compile_dir(workflows_dir(), quiet=2)


def workflow_runner() -> SandboxedWorkflowRunner:
    compile_workflows()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )

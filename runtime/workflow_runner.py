"""The workflow sandbox every worker, test worker and replayer uses.

``domain`` is passed through: it holds only data types (pydantic models, enums), and workflows
mix instances made by activities (whose modules are passed through) with instances they build
themselves. Re-imported inside the sandbox, ``domain.X.Model`` would be a different class from the
one activities return, and pydantic refuses an instance of "the same" model from the other copy.

The helper modules of ``workflows/`` (:data:`HELPERS`: retry policies, failure helpers, the
park/retry and step-visibility mixins, event emission, bookkeeping steps) are passed through too:
the sandbox imports every non-passed-through module again for each new workflow instance, and
these were most of that work (issue 16 §1; ``bench/README.md``). They hold no state of their own
and do no I/O; what they run still runs inside the workflow, through ``temporalio.workflow``.
Code in them is not checked by the sandbox's restrictions, so they must stay that way:
``tests/unit/test_workflow_runner.py`` refuses clocks, randomness, I/O and module-level
mutable state in them. Each workflow's own module is still imported in the sandbox.
"""

from __future__ import annotations

import compileall
import contextlib
from pathlib import Path

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

#: ``workflows/`` modules shared by the workflows, passed through the sandbox (see above)
HELPERS = (
    "workflows.bookkeeping",
    "workflows.dead_letter",
    "workflows.events",
    "workflows.failures",
    "workflows.job_metrics",
    "workflows.policies",
    "workflows.refs",
    "workflows.step_visibility",
)
PASSTHROUGH = ("domain", *HELPERS)


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

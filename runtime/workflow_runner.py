"""The workflow sandbox every worker, test worker and replayer uses.

``domain`` is passed through: it holds only data types (pydantic models, enums), and workflows
mix instances made by activities (whose modules are passed through) with instances they build
themselves. Re-imported inside the sandbox, ``domain.X.Model`` would be a different class from the
one activities return, and pydantic refuses an instance of "the same" model from the other copy.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH = ("domain",)


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )

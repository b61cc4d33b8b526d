"""Dead letters without loss: a step that must happen parks instead of failing the workflow.

When such a step exhausts its retries the workflow sets ``SettleStatus=needs_attention`` and waits
for an operator: the ``retry`` signal runs the step again, ``abandon`` gives up with a reason.

    temporal workflow signal --workflow-id <id> --name retry
    temporal workflow signal --workflow-id <id> --name abandon --input '"refunded by hand"'
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

from domain.events import EventType
from domain.queues import Routed
from domain.retries import DB_REFUSALS
from domain.search import OperationStatus
from workflows.events import emit
from workflows.failures import cause_message, reraise_if_cancelled, root_error_type
from workflows.step_visibility import StepVisibility, set_status

#: a parking is pushed to the tenant's endpoints as ``job.parked``
PARKED_EVENT_PATCH = "emit-job-parked"


class Decision(StrEnum):
    RETRY = "retry"
    ABANDON = "abandon"


T = TypeVar("T")


class Parkable(StepVisibility):
    """Mixin for workflows with a step that must not be lost."""

    def __init__(self) -> None:
        self._parked = False
        self._decision: Decision | None = None
        self.abandon_reason: str | None = None
        self.times_parked = 0
        self._parked_event: asyncio.Task[None] | None = None

    @workflow.signal
    def retry(self) -> None:
        """Run the parked step again (ignored when nothing is parked)."""
        if self._parked:
            self._decision = Decision.RETRY

    @workflow.signal
    def abandon(self, reason: str | None = None) -> None:
        """Give up on the parked step (ignored when nothing is parked)."""
        if self._parked:
            self.abandon_reason = reason or "abandoned by an operator"
            self._decision = Decision.ABANDON

    @property
    def parked(self) -> bool:
        return self._parked

    def event_scope(self) -> tuple[Routed, str] | None:
        """Where this workflow's events go: its input (queues) and its tenant. None: nowhere
        (overridden by the workflows whose tenant has endpoints)."""
        return None

    def accept_decisions(self) -> None:
        """Take ``retry`` / ``abandon`` from now on, before :meth:`park` is reached.

        A workflow that records its parking first (an activity) already shows ``needs_attention``
        in its status query meanwhile; an operator acting on that must not be ignored. State
        only, no command: replays of histories made before this existed behave as they did.
        """
        self._parked, self._decision = True, None

    async def refused_write_parks(
        self, step: Callable[[], Awaitable[T]], what: str, patch: str
    ) -> T:
        """Run a bookkeeping step; a write the database refuses for good (a constraint:
        ``domain.retries.DB_REFUSALS``) parks the workflow at once with the reason, where it
        used to fail it (and lose what had happened on chain); ``retry`` runs the step again,
        ``abandon`` lets the error through. ``patch`` guards the new commands."""
        while True:
            try:
                return await step()
            except ActivityError as err:
                reraise_if_cancelled(err)
                if root_error_type(err) not in DB_REFUSALS or not workflow.patched(patch):
                    raise
                if await self.park(f"{what} failed: {cause_message(err)}") is Decision.ABANDON:
                    raise

    async def park(self, reason: str) -> Decision:
        """Mark the workflow ``needs_attention`` and wait for an operator's decision."""
        if not self._parked:  # else a decision may already have come (see accept_decisions)
            self._parked, self._decision = True, None
        self.times_parked += 1
        set_status(OperationStatus.NEEDS_ATTENTION)
        workflow.logger.error("parked for an operator: %s", reason)
        scope = self.event_scope()
        if scope is not None and workflow.patched(PARKED_EVENT_PATCH):
            info = workflow.info()
            # beside the wait, not before it: an operator's decision never waits for the event
            self._parked_event = asyncio.create_task(
                emit(
                    scope[0],
                    scope[1],
                    EventType.JOB_PARKED,
                    f"{info.workflow_id}:{info.run_id}:{self.times_parked}",
                    {
                        "workflow_id": info.workflow_id,
                        "workflow_type": info.workflow_type,
                        "reason": reason,
                    },
                )
            )
        await workflow.wait_condition(lambda: self._decision is not None)
        decision = self._decision
        assert decision is not None
        self._parked = False
        if decision is Decision.RETRY:
            set_status(OperationStatus.RUNNING)
        return decision

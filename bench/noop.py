"""A workflow with as many activities as an M-Pesa deposit's happy path (4), each doing nothing:
the ceiling Temporal itself sets on this machine."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

ACTIVITIES = 4


@activity.defn(name="bench.noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BenchNoop")
class BenchNoop:
    @workflow.run
    async def run(self, activities: int = ACTIVITIES) -> int:
        total = 0
        for step in range(activities):
            total += await workflow.execute_activity(
                noop, step, start_to_close_timeout=timedelta(seconds=30)
            )
        return total

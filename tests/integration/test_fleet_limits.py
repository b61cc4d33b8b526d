"""Limits that hold for the fleet: two real ``python worker.py`` processes serve the
``credentials`` queue.

* At most ``CREDENTIAL_ANCHOR_CONCURRENCY`` anchors are in submission at once across both: the
  lease table, sampled while they run, and the RPC proxy in front of anvil, which counts the
  submissions' ``eth_estimateGas`` calls in flight, say so; meanwhile the two workers together
  run more submit activities than that at once (each may take that many: the histories show it),
  so the cap is the fleet's, not each worker's.
* The queue's server-side rate limit (``CREDENTIAL_ANCHOR_RATE_PER_SECOND``, sent by both workers,
  enforced by the server) holds for both together: dispatches, from the histories, are no faster.
* Every anchor is confirmed, and no lease is left behind.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType

import worker as worker_module
from api.task_queue_limits import set_limit
from domain.credentials import AnchorStatus, credential_key
from domain.queues import ActivityQueue, activity_queue_for_prefix, workflow_queue
from domain.search import OperationKind, start_attributes
from operations.credential_anchors import anchor_request, workflow_id_for
from sandbox.rpc_proxy import RpcProxy
from sandbox.serve import bind_socket, serve
from store.leases import held
from store.models import CredentialAnchorRecord
from tests.fixtures.stack import SANDBOX_SECRETS, Stack, eventually
from tests.fixtures.temporal import new_prefix

ROOT = Path(__file__).resolve().parents[2]
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
SUBMIT = "credentials.submit_anchor"


def free_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


@dataclass
class FleetRun:
    #: live leases counted at each sample
    observed: list[int] = field(default_factory=list)
    #: the pids named by the holders seen
    pids: set[str] = field(default_factory=set)
    worker_pids: set[str] = field(default_factory=set)
    #: (dispatched, finished) of every submit attempt, from the histories
    intervals: list[tuple[datetime, datetime]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    estimates: int = 0
    estimates_in_flight: int = 0
    leases_left: list[str] = field(default_factory=list)
    #: each worker process's Prometheus text at the end
    worker_metrics: list[str] = field(default_factory=list)

    def most_running(self) -> int:
        """The most submit activities running at once (dispatched by the server, not finished)."""
        edges = sorted(
            [(start, 1) for start, _ in self.intervals] + [(end, -1) for _, end in self.intervals]
        )
        running = most = 0
        for _, step in edges:
            running += step
            most = max(most, running)
        return most


async def _submit_intervals(stack: Stack, workflow_id: str) -> list[tuple[datetime, datetime]]:
    scheduled: set[int] = set()
    started: dict[int, datetime] = {}
    intervals = []
    async for event in stack.temporal.get_workflow_handle(workflow_id).fetch_history_events():
        kind, at = event.event_type, event.event_time.ToDatetime()
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == SUBMIT:
                scheduled.add(event.event_id)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            if attrs.scheduled_event_id in scheduled:
                started[attrs.scheduled_event_id] = at
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes.scheduled_event_id
            if done in started:
                intervals.append((started[done], at))
    return intervals


async def _scheduled(stack: Stack, workflow_id: str) -> bool:
    async for event in stack.temporal.get_workflow_handle(workflow_id).fetch_history_events():
        if (
            event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and event.activity_task_scheduled_event_attributes.activity_type.name == SUBMIT
        ):
            return True
    return False


async def run_fleet(
    stack: Stack,
    *,
    concurrency: int,
    rate: float,
    anchors: int,
    estimate_delay: float,
    backlog_first: bool = False,
) -> FleetRun:
    """``anchors`` single anchors, submitted by two ``worker.py --queues credentials``
    processes (workflows and confirmations run in this one). ``backlog_first``: the queue is
    held at 0 until every submit is scheduled, so that from its release the limits alone decide
    how fast they go."""
    settings = stack.settings.model_copy(
        update={
            "task_queue_prefix": new_prefix(),
            "credential_anchor_concurrency": concurrency,
            "credential_anchor_rate_per_second": rate,
        }
    )
    prefix = settings.task_queue_prefix
    proxy = RpcProxy(settings.evm_rpc_url)
    # a slow provider: each submission holds its slot long enough to be seen
    proxy.delays["eth_estimateGas"] = estimate_delay
    rpc = await serve(proxy.app)
    env = {
        **os.environ,
        **{k.upper(): v for k, v in SANDBOX_SECRETS.items()},
        "SETTLE_ENV": "test",
        "TEMPORAL_ADDRESS": stack.temporal.service_client.config.target_host,
        "DATABASE_URL": settings.database_url,
        "TASK_QUEUE_PREFIX": prefix,
        "EVM_RPC_URL": rpc.url,
        "EVM_CHAIN_ID": str(settings.evm_chain_id),
        "USDC_CONTRACT_ADDRESS": settings.usdc_contract_address,
        "TREASURY_PRIVATE_KEY": settings.treasury_private_key.get_secret_value(),
        "CREDENTIAL_REGISTRY_ADDRESS": settings.credential_registry_address,
        "EVM_POLL_INTERVAL_SECONDS": "0.1",
        "CREDENTIAL_ANCHOR_CONCURRENCY": str(concurrency),
        "CREDENTIAL_ANCHOR_RATE_PER_SECOND": str(rate),
    }
    resources = worker_module.build_resources(settings)
    workers = worker_module.build_workers(
        stack.temporal, settings, resources, ["workflows", "evm-write", "db"]
    )
    runs = [asyncio.create_task(w.run()) for w in workers]
    metrics_ports = [free_port(), free_port()]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "worker.py",
            "--queues",
            "credentials",
            cwd=ROOT,
            env={**env, "WORKER_METRICS_BIND": f"127.0.0.1:{port}"},
        )
        for port in metrics_ports
    ]
    taken = FleetRun(worker_pids={str(p.pid) for p in processes})
    try:
        tenant = f"fleet-{uuid.uuid4().hex[:6]}"
        rows = []
        async with stack.sessions.begin() as session:
            for n in range(anchors):
                key = credential_key(tenant, f"c-{n}")
                row = CredentialAnchorRecord(
                    credential_key=key,
                    credential_id=f"c-{n}",
                    tenant=tenant,
                    requested_by="fleet",
                    data_hash="0x" + uuid.uuid4().hex * 2,
                    ipfs_cid=CID,
                    status=AnchorStatus.PENDING.value,
                    workflow_id=workflow_id_for(key),
                    mode="single",
                )
                session.add(row)
                rows.append(row)
        proxy.reset()
        lease = activity_queue_for_prefix(prefix, ActivityQueue.CREDENTIALS)
        if backlog_first:
            await set_limit(stack.temporal, lease, 0.0, "settle test: submits into the backlog")
        for row in rows:
            await stack.temporal.start_workflow(
                "CredentialAnchor",
                anchor_request(settings, row),
                id=row.workflow_id,
                task_queue=workflow_queue(prefix),
                search_attributes=start_attributes(
                    OperationKind.CREDENTIAL_ANCHOR, tenant, "fleet"
                ),
            )
        if backlog_first:

            async def all_scheduled() -> bool:
                return all(await asyncio.gather(*(_scheduled(stack, r.workflow_id) for r in rows)))

            await eventually(all_scheduled, bool, timeout=60, what="every submit to be scheduled")
            # no server-side setting: the limit the workers send applies
            await set_limit(stack.temporal, lease, None, "settle test: released")

        async def pending() -> int:
            holders = await held(stack.sessions, lease)
            taken.observed.append(len(holders))
            taken.pids.update(h.split(":")[1] for h in holders)
            async with stack.sessions() as session:
                return int(
                    (
                        await session.execute(
                            select(func.count()).where(
                                CredentialAnchorRecord.tenant == tenant,
                                CredentialAnchorRecord.status == AnchorStatus.PENDING.value,
                            )
                        )
                    ).scalar_one()
                )

        await eventually(
            pending, lambda n: n == 0, timeout=120, interval=0.02, what="every anchor to settle"
        )
        async with stack.sessions() as session:
            taken.statuses = sorted(
                (
                    await session.execute(
                        select(CredentialAnchorRecord.status).where(
                            CredentialAnchorRecord.tenant == tenant
                        )
                    )
                ).scalars()
            )
        for row in rows:
            taken.intervals += await _submit_intervals(stack, row.workflow_id)
        taken.estimates = proxy.calls["eth_estimateGas"]
        taken.estimates_in_flight = proxy.max_in_flight["eth_estimateGas"]
        taken.leases_left = await held(stack.sessions, lease)
        async with httpx.AsyncClient() as http:
            for port in metrics_ports:
                taken.worker_metrics.append(
                    (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                )
        return taken
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*runs, return_exceptions=True)
        await resources.aclose()
        await rpc.stop()


async def test_two_workers_submit_at_most_the_concurrency_at_once(stack: Stack) -> None:
    concurrency, anchors = 2, 12
    run = await run_fleet(
        stack, concurrency=concurrency, rate=50.0, anchors=anchors, estimate_delay=0.8
    )
    assert run.statuses == [AnchorStatus.CONFIRMED.value] * anchors
    # the two workers ran more submit activities at once than the cap (each takes that many) ...
    assert run.most_running() > concurrency, run.intervals
    # ... yet never more than the cap were in submission, and the cap was reached
    assert max(run.observed) == concurrency, run.observed
    assert run.estimates == anchors
    assert 1 <= run.estimates_in_flight <= concurrency
    # both processes submitted (a holder names its pid), and every lease was given back
    assert run.pids == run.worker_pids, (run.pids, run.worker_pids)
    assert run.leases_left == []
    # each worker publishes the fleet's breaker states (all closed here) beside the SDK's metrics
    for text in run.worker_metrics:
        states = dict(
            re.findall(r'^circuit_breaker_state\{provider="(\w+)"[^}]*\} (\S+)$', text, re.M)
        )
        assert states == {p: "0" for p in ("daraja", "stripe", "evm", "solana", "smtp")}, text


async def test_two_workers_obey_the_queue_rate_limit_together(stack: Stack) -> None:
    rate, anchors = 5.0, 40
    run = await run_fleet(
        stack, concurrency=8, rate=rate, anchors=anchors, estimate_delay=0.0, backlog_first=True
    )
    assert run.statuses == [AnchorStatus.CONFIRMED.value] * anchors
    starts = sorted(start for start, _ in run.intervals)
    assert len(starts) == anchors
    span = (starts[-1] - starts[0]).total_seconds()
    # the server lets a short burst through (a token bucket of about a second's worth); past it,
    # two workers polling together are dispatched no faster than the one limit
    assert (anchors - 1 - rate) / span <= rate * 1.1, (span, starts)
    assert run.leases_left == []

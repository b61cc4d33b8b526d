"""Counters dashboards can trust (issue 15 §7): one operation of each kind through the stack, then
the worker's endpoint (``WORKER_METRICS_BIND``) and the API's ``/metrics`` are scraped; every
counter of the old service is there under its name and labels, and moved by what was done.

The stack's worker has a connection of its own with a Prometheus runtime, as ``worker.py`` has, so
its endpoint is a real one. Counters are compared before and after (the stack is shared).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from domain.metrics import SEED_METRICS
from domain.search import OperationKind
from tests.e2e import test_tickets
from tests.e2e.test_credentials import CID_V1, data_hash, settled
from tests.e2e.test_deposit_intents import create as create_intent
from tests.e2e.test_deposit_intents import until_status
from tests.e2e.test_metrics_ops import deposit
from tests.e2e.test_mpesa_deposit_api import PHONE_CANCELLED
from tests.e2e.test_tickets import Receiver, buy, register, until, wallet
from tests.e2e.test_verification_jobs import document, published, verified
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")
receiver = test_tickets.receiver

#: counters with no series until their first failure
FAILURES_ONLY = {"emails_failed_total", "webhooks_failed_total"}
#: (sample name, labels, value, family type)
Sample = tuple[str, dict[str, str], float, str]


async def scrape_worker(stack: Stack) -> list[Sample]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://{stack.settings.worker_metrics_bind}/metrics")).text
    return _samples(text)


async def scrape_api(stack: Stack) -> list[Sample]:
    response = await stack.api.get("/metrics", headers=stack.platform_admin())
    assert response.status_code == 200
    return _samples(response.text)


def _samples(text: str) -> list[Sample]:
    return [
        (s.name, dict(s.labels), s.value, family.type)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples carrying ``labels`` (other labels summed over)."""
    return sum(
        value
        for sample, have, value, _ in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


def grew(
    before: list[Sample], name: str, by: float = 1, **labels: str
) -> Callable[[list[Sample]], bool]:
    return lambda after: total(after, name, **labels) - total(before, name, **labels) >= by


async def _operations(stack: Stack, receiver: Receiver) -> dict[str, Any]:
    """One operation of each kind (the chain scanner apart: it runs for as long as Settle does)."""
    tenant = unique_tenant()
    headers = stack.auth("cora", tenant)
    venue = stack.auth("box-office", tenant, ["venue_admin"])
    await register(stack, tenant, receiver.url)
    event = await create_event(stack, tenant)

    async def mpesa() -> None:
        await deposit(stack, headers)
        await deposit(stack, headers, phone=PHONE_CANCELLED)

    async def on_chain() -> None:
        created = await create_intent(stack, headers, "1.25")
        assert created.status_code == 201, created.text
        await stack.chain.pay(created.json()["address"], 1_250_000)
        await until_status(stack, created.json()["id"], headers, {"paid"})

    async def declined() -> None:
        _, accepted = await buy(stack, headers, event, payment_method="pm_card_chargeDeclined")
        await until(
            stack, accepted["id"], headers, lambda v: v["status"] == "payment_failed", "decline"
        )

    async def tickets() -> None:
        _, accepted = await buy(stack, headers, event)
        purchase = accepted["id"]
        await until(stack, purchase, headers, lambda v: v["status"] == "completed", "completion")
        refund = await stack.api.post(
            f"/api/v1/tickets/{purchase}/refund", json={"amount": 1000}, headers=venue
        )
        assert refund.status_code == 202, refund.text
        await until(stack, purchase, headers, lambda v: v["amount_refunded"] == 1000, "refund")
        target = wallet()
        moved = await stack.api.post(
            f"/api/v1/tickets/{purchase}/transfer", json={"to_wallet": target}, headers=venue
        )
        assert moved.status_code == 202, moved.text
        await until(stack, purchase, headers, lambda v: v["owner_wallet"] == target, "transfer")

    async def credential() -> None:
        credential_id = f"metrics-{uuid.uuid4().hex[:8]}"
        anchored = await stack.api.post(
            f"/api/v1/credentials/{credential_id}/anchor",
            json={"data_hash": data_hash(), "ipfs_cid": CID_V1},
            headers=headers,
        )
        assert anchored.status_code == 202, anchored.text
        assert (await settled(stack, credential_id, headers))["status"] == "confirmed"

    async def verification() -> None:
        data = document()
        content = await published(stack, data)
        for kind in ("verify", "proof"):
            job = await verified(stack, headers, data, content.manifest_uri, kind=kind)
            assert job["status"] == "completed", job

    await asyncio.gather(mpesa(), on_chain(), tickets(), declined(), credential(), verification())
    return {"tenant": tenant}


async def test_one_operation_of_each_kind_moves_its_counters(
    stack: Stack, receiver: Receiver
) -> None:
    worker_before, api_before = await scrape_worker(stack), await scrape_api(stack)
    await _operations(stack, receiver)

    succeeded = [
        k
        for k in OperationKind
        if k not in (OperationKind.CHAIN_SCANNER, OperationKind.MPESA_DEPOSIT)
    ]
    checks = [
        grew(worker_before, "queue_jobs_processed_total", queue=k.value, status="succeeded")
        for k in (*succeeded, OperationKind.MPESA_DEPOSIT)
    ]
    checks += [
        # the cancelled prompt: the deposit failed
        grew(worker_before, "queue_jobs_processed_total", queue="mpesa_deposit", status="failed"),
        grew(worker_before, "queue_jobs_failed_total", queue="mpesa_deposit", status="failed"),
        grew(worker_before, "payments_processed_total", status="succeeded", currency="USD"),
        grew(worker_before, "payments_processed_total", status="failed", currency="USD"),
        grew(worker_before, "queue_jobs_failed_total", queue="ticket_purchase", status="failed"),
        grew(worker_before, "payment_amount_total_cents_total", by=2500, currency="USD"),
        grew(worker_before, "refunds_processed_total", reason="requested", currency="USD"),
        grew(worker_before, "refund_amount_total_cents_total", by=1000, currency="USD"),
        grew(worker_before, "nfts_minted_total"),
        grew(worker_before, "nft_transfers_total"),
        grew(worker_before, "emails_sent_total", type="payment_confirmation"),
        grew(worker_before, "emails_sent_total", type="refund_confirmation"),
        grew(worker_before, "webhooks_sent_total", event="ticket.purchased"),
        grew(worker_before, "webhooks_sent_total", event="ticket.refunded"),
        grew(worker_before, "webhooks_sent_total", event="ticket.transferred"),
    ]
    for kind in (*succeeded, OperationKind.MPESA_DEPOSIT):
        checks.append(
            grew(
                worker_before,
                "queue_job_processing_duration_seconds_count",
                queue=kind.value,
            )
        )
    worker = await eventually(
        lambda: scrape_worker(stack),
        lambda samples: all(check(samples) for check in checks),
        timeout=30,
        what="every counter to move",
    )
    for i, check in enumerate(checks):
        assert check(worker), i

    # the worker's series are counters and a cumulative histogram, with the old names and labels
    # (the failure counters appear once something fails: tests/unit/test_business_metrics.py)
    types = {name: kind for name, _, _, kind in worker}
    for metric in SEED_METRICS:
        if metric.where != "worker" or metric.exposed in FAILURES_ONLY:
            continue
        names = (
            {f"{metric.exposed}_bucket", f"{metric.exposed}_count", f"{metric.exposed}_sum"}
            if metric.type == "histogram"
            else {metric.exposed}
        )
        for name in names:
            assert name in types, name
            assert types[name] == metric.type, (name, types[name])
            for _, labels, _, _ in (s for s in worker if s[0] == name):
                assert set(metric.labels) <= set(labels), (name, labels)
    durations = "queue_job_processing_duration_seconds"
    for queue in ("mpesa_deposit", "ticket_purchase"):
        count = total(worker, f"{durations}_count", queue=queue)
        assert total(worker, f"{durations}_bucket", queue=queue, le="+Inf") == count
        assert 0 < total(worker, f"{durations}_sum", queue=queue) < 600 * count
        # cumulative: every bucket holds the ones below it
        buckets = sorted(
            (float(labels["le"]), value)
            for name, labels, value, _ in worker
            if name == f"{durations}_bucket" and labels.get("queue") == queue
        )
        values = [v for _, v in buckets]
        assert values == sorted(values)

    # the API counts what happens in it; visibility figures are gauges of their own names
    api = await scrape_api(stack)
    assert grew(api_before, "mpesa_deposits_initiated_total", by=2)(api)
    assert grew(api_before, "mpesa_callbacks_total", by=2)(api)
    api_types = {name: kind for name, _, _, kind in api}
    for gauge in ("queue_size", "queue_active_jobs", "queue_closed_jobs", "queue_failed_jobs"):
        assert api_types[gauge] == "gauge", gauge
    assert "queue_jobs_processed_total" not in api_types
    assert "payments_processed_total" not in api_types


async def test_a_worker_counts_nothing_when_it_replays(stack: Stack) -> None:
    """A deposit's history replayed (the worker's sticky cache dropped) adds nothing: the
    workflow meter records only new events."""
    before = await scrape_worker(stack)
    workflow_id = await deposit(stack, stack.auth("rhea", unique_tenant()))
    done = grew(before, "queue_jobs_processed_total", queue="mpesa_deposit", status="succeeded")
    after = await eventually(lambda: scrape_worker(stack), done, what="the deposit's count")
    counted = total(after, "queue_jobs_processed_total", queue="mpesa_deposit")
    # a query makes a worker replay the closed workflow's whole history
    await stack.temporal.get_workflow_handle(workflow_id).query("status")
    again = await scrape_worker(stack)
    assert total(again, "queue_jobs_processed_total", queue="mpesa_deposit") == counted

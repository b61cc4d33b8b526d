"""The chaos run's load: each planned operation started through one of the two APIs (in turn),
with its second act (3-D Secure, a refund, a late transfer) played when its row gets there, and
every operation's end read from Settle's rows (and from its workflow, for the ones that park
without a row saying so).

A client retries what a client would: an answer that says nothing was done (503, a refused
connection) and, with the same ``Idempotency-Key``, any lost answer of an idempotent call.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from eth_utils import keccak, to_checksum_address
from solders.keypair import Keypair
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.auth import issue_token
from api.jobs_lookup import JobRef, failure_message, status_error
from bench.chaos.operations import BATCH_SIZE, CARD, End, Kind, Operation, classify, phone_for
from bench.chaos.stack import ChaosStack
from providers.evm import EvmClient, LocalSigner
from providers.ipfs import IpfsGateway
from runtime.temporal import connect
from sandbox.chain import mint_usdc
from sandbox.content import SANDBOX_CREATOR_KEY, publish
from sandbox.payer import Payer
from store.db import make_engine, make_session_factory
from store.models import (
    CredentialAnchorRecord,
    DepositIntent,
    DepositTransfer,
    MpesaDeposit,
    TicketPurchase,
    VerificationJob,
)

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
#: USDC minor units (6 places)
INTENT_AMOUNT = 1_500_000
DUST = 1_000
LATE = 500_000
#: how long a client keeps retrying a call whose answer says nothing was done
RETRY_SECONDS = 90.0
#: how often open operations are read
POLL_SECONDS = 1.0
#: with an operation open this long, its workflow is asked whether it parked
ASK_WORKFLOW_AFTER = 20.0
#: at least this long for the workflows to close once every row has ended (a notification
#: activity whose worker was killed is retried after ``policies.NOTIFY_TIMEOUT``, 60 s)
QUIESCE_SECONDS = 80.0


@dataclass
class Load:
    stack: ChaosStack
    ops: list[Operation]
    tenant: str = field(default_factory=lambda: f"chaos-{uuid.uuid4().hex[:6]}")
    user: dict[str, str] = field(default_factory=dict)
    venue: dict[str, str] = field(default_factory=dict)
    event_id: str = ""
    manifest_uri: str = ""
    document: bytes = b""
    payer: Payer | None = None
    temporal: Client | None = None
    #: requests retried because the answer said nothing was done (or never came)
    retries: int = 0
    _acts: set[asyncio.Task[None]] = field(default_factory=set)

    async def prepare(self) -> None:
        """Tokens, the event tickets are bought for, the published document, a funded payer."""
        settings = self.stack.settings
        self.user = {
            "Authorization": "Bearer "
            + issue_token(settings, subject="chaos-user", tenant=self.tenant, roles=["user"])
        }
        self.venue = {
            "Authorization": "Bearer "
            + issue_token(
                settings, subject="chaos-venue", tenant=self.tenant, roles=["venue_admin"]
            )
        }
        self.temporal = await connect(
            settings.model_copy(update={"temporal_address": self.stack.env["TEMPORAL_ADDRESS"]})
        )
        tickets = sum(1 for op in self.ops if op.kind is Kind.TICKET)
        async with httpx.AsyncClient(base_url=self.stack.api_urls[0], timeout=30) as http:
            created = await http.post(
                "/api/v1/events",
                json={
                    "name": "Chaos night",
                    "venue": "Chaos hall",
                    "starts_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
                    "currency": "usd",
                    "sections": [{"code": "FLOOR", "price": 2500, "capacity": max(1, tickets)}],
                },
                headers=self.venue,
            )
            created.raise_for_status()
            self.event_id = str(created.json()["id"])
            hook = await http.post(
                "/api/v1/webhook-endpoints",
                json={"url": self.stack.webhook_url},
                headers=self.venue,
            )
            hook.raise_for_status()
        chain = EvmClient(self.stack.anvil_url, chain_id=31337)
        gateway = IpfsGateway(
            self.stack.env["IPFS_GATEWAY_URL"], timeout_seconds=30, max_bytes=1 << 20
        )
        self.document = os.urandom(64 * 1024)
        try:
            published = await publish(
                chain,
                gateway,
                settings.content_registry_address,
                SANDBOX_CREATOR_KEY,
                self.document,
            )
            self.manifest_uri = published.manifest_uri
            await mint_usdc(
                chain,
                LocalSigner(settings.sandbox_deployer_private_key),
                settings.usdc_contract_address,
                Payer(chain, settings.usdc_contract_address).address,
                10**13,
            )
        finally:
            await gateway.aclose()
        self.payer = Payer(chain, settings.usdc_contract_address)

    # -- requests ----------------------------------------------------------------------------

    async def call(
        self,
        op: Operation,
        method: str,
        path: str,
        *,
        idempotent: bool,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """One API call as a client makes it, through the APIs in turn; ``None`` (and ``op``
        refused with the reason) when it never got a useful answer."""
        deadline = time.monotonic() + RETRY_SECONDS
        attempt = 0
        last = ""
        while time.monotonic() < deadline:
            url = self.stack.api_urls[(op.n + attempt) % len(self.stack.api_urls)]
            attempt += 1
            try:
                async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                    response = await http.request(
                        method, path, headers=headers or self.user, **kwargs
                    )
            except httpx.ConnectError as exc:  # nothing reached the API
                last = f"{type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:  # it may have been done
                last = f"{type(exc).__name__}: {exc}"
                if not idempotent:
                    op.settle(
                        End.REFUSED, "answer lost", f"{method} {path}: {last}", time.perf_counter()
                    )
                    return None
            else:
                if response.status_code not in (502, 503, 504):
                    return response
                last = f"{response.status_code}: {response.text[:200]}"
            self.retries += 1
            await asyncio.sleep(min(1.0 * attempt, 5.0))
        op.settle(
            End.REFUSED,
            "no answer",
            f"{method} {path}: gave up after {RETRY_SECONDS:.0f} s: {last}",
            time.perf_counter(),
        )
        return None

    def accepted(self, op: Operation, response: httpx.Response | None, id_key: str = "id") -> bool:
        if response is None:
            return False
        if response.is_error:
            op.settle(
                End.REFUSED,
                f"HTTP {response.status_code}",
                response.text[:300],
                time.perf_counter(),
            )
            return False
        body = response.json()
        op.id = str(body[id_key]) if id_key in body else op.id
        op.workflow_id = body.get("workflow_id") or op.workflow_id
        op.status = str(body.get("status", "accepted"))
        return True

    # -- operations --------------------------------------------------------------------------

    async def start(self, op: Operation) -> None:
        op.started = time.perf_counter()
        try:
            await getattr(self, f"_start_{op.kind.name.lower()}")(op)
        except Exception as exc:  # the load generator's own failure: reported, never hidden
            op.settle(
                End.REFUSED,
                "load generator error",
                f"{type(exc).__name__}: {exc}",
                time.perf_counter(),
            )

    async def _start_mpesa(self, op: Operation) -> None:
        op.detail["phone"] = phone_for(op.n, op.variant)
        op.detail["wallet"] = to_checksum_address(os.urandom(20))
        response = await self.call(
            op,
            "POST",
            "/api/v1/deposit/initiate",
            idempotent=True,
            json={
                "phone": op.detail["phone"],
                "amount": 100 + op.n % 50,
                "wallet_address": op.detail["wallet"],
            },
            headers={**self.user, "Idempotency-Key": f"{self.tenant}-{op.n}"},
        )
        self.accepted(op, response)

    async def _start_intent(self, op: Operation) -> None:
        response = await self.call(
            op,
            "POST",
            "/api/v1/deposit/intent/create",
            idempotent=False,
            json={"amount": f"{INTENT_AMOUNT / 1e6:.2f}", "chain": "base"},
        )
        if not self.accepted(op, response):
            return
        assert response is not None and self.payer is not None
        address = response.json()["address"]
        op.detail["address"] = address
        op.detail["transfers"] = []
        if op.variant == "dust_then_exact":
            await self._pay(op, address, DUST, "ignored")
        await self._pay(op, address, INTENT_AMOUNT, "credited")

    async def _pay(self, op: Operation, address: str, amount: int, expect: str) -> None:
        assert self.payer is not None
        receipt = await self.payer.pay(address, amount)
        op.detail["transfers"].append(
            {"tx_hash": receipt["transactionHash"], "amount": amount, "expect": expect}
        )

    async def _start_ticket(self, op: Operation) -> None:
        op.detail["email"] = f"buyer{op.n}@chaos.example"
        response = await self.call(
            op,
            "POST",
            "/api/v1/tickets/purchase",
            idempotent=True,
            json={
                "event_id": self.event_id,
                "section": "FLOOR",
                "payment_method": CARD[op.variant],
                "buyer_email": op.detail["email"],
                "buyer_wallet": str(Keypair().pubkey()),
            },
            headers={**self.user, "Idempotency-Key": f"{self.tenant}-{op.n}"},
        )
        self.accepted(op, response)

    async def _start_anchor(self, op: Operation) -> None:
        credential = f"cred-{op.n}"
        op.detail["credentials"] = [credential]
        response = await self.call(
            op,
            "POST",
            f"/api/v1/credentials/{credential}/anchor",
            idempotent=True,
            json={"data_hash": _digest(), "ipfs_cid": CID, "batch": False},
        )
        if self.accepted(op, response, id_key="credential_id"):
            op.id = credential

    async def _start_anchor_batch(self, op: Operation) -> None:
        items = [
            {"credential_id": f"cred-{op.n}-{i}", "data_hash": _digest(), "ipfs_cid": CID}
            for i in range(BATCH_SIZE)
        ]
        op.detail["credentials"] = [item["credential_id"] for item in items]
        response = await self.call(
            op, "POST", "/api/v1/credentials/anchor/batch", idempotent=True, json={"items": items}
        )
        if response is not None and not response.is_error:
            op.id = items[0]["credential_id"]
            op.status = "accepted"
        else:
            self.accepted(op, response)

    async def _start_verify(self, op: Operation) -> None:
        await self._upload(op, "/api/verification-jobs/verify")

    async def _start_proof(self, op: Operation) -> None:
        await self._upload(op, "/api/verification-jobs/proof")

    async def _upload(self, op: Operation, path: str) -> None:
        data = self.document
        if op.variant == "tampered":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        response = await self.call(
            op,
            "POST",
            path,
            idempotent=False,
            files={"file": ("document.bin", data, "application/octet-stream")},
            data={"manifestURI": self.manifest_uri},
        )
        if self.accepted(op, response, id_key="jobId"):
            op.workflow_id = None  # read from the row

    # -- second acts -------------------------------------------------------------------------

    def next_act(self, op: Operation) -> Coroutine[Any, Any, None] | None:
        """What the customer or venue does next, once the row says it is time (marked as done
        here, so a later read does not play it again)."""
        if op.kind is Kind.TICKET and op.status == "requires_action":
            intent = op.detail.get("payment_intent_id")
            if intent and not op.detail.get("authenticated"):
                op.detail["authenticated"] = True
                return self._authenticate(intent, succeed=op.variant == "3ds_ok")
        if (
            op.kind is Kind.TICKET
            and op.variant == "refunded"
            and op.status == "completed"
            and not op.detail.get("refund_asked")
        ):
            op.detail["refund_asked"] = True
            return self._refund(op)
        if (
            op.kind is Kind.INTENT
            and op.variant == "late_transfer"
            and op.status in ("paid", "overpaid")
            and not op.detail.get("late_sent")
        ):
            op.detail["late_sent"] = True
            return self._pay(op, op.detail["address"], LATE, "late")
        return None

    async def _authenticate(self, intent: str, *, succeed: bool) -> None:
        """The buyer finishes (or fails) 3-D Secure, on the Stripe sandbox itself."""
        port = self.stack.proxies["stripe"].upstream[1]
        async with httpx.AsyncClient(timeout=10) as http:
            await http.post(
                f"http://127.0.0.1:{port}/_sandbox/payment_intents/{intent}/authenticate",
                json={"succeed": succeed},
            )

    async def _refund(self, op: Operation) -> None:
        response = await self.call(
            op,
            "POST",
            f"/api/v1/tickets/{op.id}/refund",
            idempotent=True,
            json={},
            headers={**self.venue, "Idempotency-Key": f"{self.tenant}-refund-{op.n}"},
        )
        if response is None or response.is_error:
            op.detail["refund_failed"] = True
            if response is not None:
                op.reason = f"refund refused: {response.status_code} {response.text[:200]}"

    # -- reading -----------------------------------------------------------------------------

    async def read(self, sessions: Any) -> None:
        """Every open operation's row: settle the ended and parked, play the second acts."""
        open_ops = [op for op in self.ops if op.end is End.OPEN and op.id is not None]
        by_kind: dict[Kind, list[Operation]] = {}
        for op in open_ops:
            by_kind.setdefault(op.kind, []).append(op)
        now = time.perf_counter()
        async with sessions() as session:
            for kind, ops in by_kind.items():
                rows = await _rows(session, kind, ops, self.tenant)
                for op in ops:
                    row = rows.get(op.id or "")
                    if row is None:
                        continue
                    status, reason, extra = row
                    op.detail.update(extra)
                    end, why = classify(op, status, reason)
                    if end is End.OPEN:
                        op.wait(status)
                    else:
                        op.settle(end, status, why, now)
        for op in open_ops:
            if op.end is End.OPEN and (act := self.next_act(op)) is not None:
                task = asyncio.create_task(self._guarded(op, act))
                self._acts.add(task)
                task.add_done_callback(self._acts.discard)

    async def _guarded(self, op: Operation, act: Coroutine[Any, Any, None]) -> None:
        try:
            await act
        except Exception as exc:  # reported with the operation, never hidden
            op.reason = f"{op.reason} (second act failed: {type(exc).__name__}: {exc})".strip()

    async def quiesce(self, deadline: float) -> list[Operation]:
        """Wait until every operation's workflow has closed or parked (by ``deadline``, a
        ``time.monotonic()``); how many still run. A row says ``completed`` before the steps
        after it (a ticket's emails and webhooks): a worker killed between such a send and its
        record leaves the message sent and unrecorded until the activity's retry, up to
        ``NOTIFY_TIMEOUT`` later, sends it again (same id) and records it. Accounting before
        that reads a loss that is not one. Returns the ones still running."""
        assert self.temporal is not None
        running = [op for op in self.ops if op.workflow_id]
        while True:
            still = []
            for op in running:
                try:
                    job = JobRef.of(
                        await self.temporal.get_workflow_handle(op.workflow_id or "").describe()
                    )
                except RPCError as exc:
                    if exc.status != RPCStatusCode.NOT_FOUND:  # else: never started
                        still.append(op)  # the server may be down right now: ask again
                    continue
                except Exception:
                    still.append(op)
                    continue
                if job.running and not job.parked:
                    still.append(op)
            running = still
            if not running or time.monotonic() >= deadline:
                return running
            await asyncio.sleep(2)

    async def ask_workflows(self, min_age: float = ASK_WORKFLOW_AFTER) -> None:
        """Operations open a while: a parked workflow whose row does not say so, or one that
        failed or was terminated, is settled from Temporal."""
        assert self.temporal is not None
        now = time.perf_counter()
        for op in self.ops:
            if op.end is not End.OPEN or not op.workflow_id or now - (op.started or now) < min_age:
                continue
            try:
                job = JobRef.of(await self.temporal.get_workflow_handle(op.workflow_id).describe())
                if job.parked:
                    op.settle(
                        End.PARKED,
                        "needs_attention",
                        await status_error(self.temporal, op.workflow_id) or "parked",
                        now,
                    )
                elif job.running:
                    op.wait(f"{op.status} (workflow running: {job.settle_status})")
                elif job.execution_status != WorkflowExecutionStatus.COMPLETED:
                    message = await failure_message(self.temporal, op.workflow_id, job.run_id)
                    op.settle(End.ENDED, f"workflow {job.temporal_status}", message or "", now)
            except Exception as exc:  # the server may be down right now: ask again later
                op.wait(f"{op.status} (workflow unreadable: {type(exc).__name__})")


def _stripe_port(stack: ChaosStack) -> int:
    return stack.proxies["stripe"].upstream[1]


def _digest() -> str:
    return "0x" + keccak(text=str(uuid.uuid4())).hex()


async def _rows(
    session: Any, kind: Kind, ops: list[Operation], tenant: str
) -> dict[str, tuple[str, str | None, dict[str, Any]]]:
    """op id -> (status, reason, details for the reconciliation) for one kind."""
    ids = [op.id for op in ops if op.id]
    out: dict[str, tuple[str, str | None, dict[str, Any]]] = {}
    if kind is Kind.MPESA:
        for row in (
            await session.execute(select(MpesaDeposit).where(MpesaDeposit.id.in_(ids)))
        ).scalars():
            out[row.id] = (row.status, row.failure_reason or row.result_desc, {})
    elif kind is Kind.INTENT:
        late = set(
            (
                await session.execute(
                    select(DepositTransfer.intent_id).where(
                        DepositTransfer.intent_id.in_(ids), DepositTransfer.status == "late"
                    )
                )
            ).scalars()
        )
        for row in (
            await session.execute(select(DepositIntent).where(DepositIntent.id.in_(ids)))
        ).scalars():
            out[row.id] = (
                row.status,
                None,
                {"late_seen": row.id in late or row.late_transfer_seen},
            )
    elif kind is Kind.TICKET:
        for row in (
            await session.execute(select(TicketPurchase).where(TicketPurchase.id.in_(ids)))
        ).scalars():
            out[row.id] = (
                row.status,
                row.failure_reason,
                {"payment_intent_id": row.payment_intent_id},
            )
    elif kind in (Kind.ANCHOR, Kind.ANCHOR_BATCH):
        wanted = {c: op for op in ops for c in op.detail.get("credentials", [])}
        rows = (
            (
                await session.execute(
                    select(CredentialAnchorRecord).where(
                        CredentialAnchorRecord.tenant == tenant,
                        CredentialAnchorRecord.credential_id.in_(list(wanted)),
                    )
                )
            )
            .scalars()
            .all()
        )
        by_op: dict[str, list[CredentialAnchorRecord]] = {}
        for row in rows:
            by_op.setdefault(wanted[row.credential_id].id or "", []).append(row)
        for op in ops:
            mine = by_op.get(op.id or "", [])
            statuses = {r.status for r in mine}
            if len(mine) < len(op.detail.get("credentials", [])) or "pending" in statuses:
                status = "pending"
            else:
                status = "failed" if "failed" in statuses else "confirmed"
            errors = "; ".join(sorted({r.error for r in mine if r.error}))
            workflow = next((r.workflow_id for r in mine), None)
            if workflow:
                op.workflow_id = workflow
            out[op.id or ""] = (status, errors or None, {})
    else:
        for row in (
            await session.execute(select(VerificationJob).where(VerificationJob.id.in_(ids)))
        ).scalars():
            verdict = json.loads(row.result).get("status") if row.result else None
            out[row.id] = (row.status, row.error, {"verdict": verdict})
            for op in ops:
                if op.id == row.id and row.workflow_id:
                    op.workflow_id = row.workflow_id
    return out


async def run_load(
    load: Load,
    duration: float,
    drain: float,
    stop: asyncio.Event,
    *,
    faults: asyncio.Task[None] | None = None,
) -> None:
    """Start the operations evenly over ``duration`` seconds, then wait up to ``drain`` more for
    the open ones to end (or ``stop``); the drain counts from the end of the load or of the
    ``faults``, whichever is later. Reads rows every :data:`POLL_SECONDS` meanwhile."""
    engine = make_engine(load.stack.database_url)
    sessions = make_session_factory(engine)
    gap = duration / max(1, len(load.ops))
    starts: list[asyncio.Task[None]] = []

    async def starter() -> None:
        t0 = time.monotonic()
        for i, op in enumerate(load.ops):
            await asyncio.sleep(max(0.0, t0 + i * gap - time.monotonic()))
            starts.append(asyncio.create_task(load.start(op)))

    launching = asyncio.create_task(starter())
    last_ask = time.monotonic()
    end_by = time.monotonic() + duration + drain
    try:
        while not stop.is_set():
            if faults is not None and not faults.done():
                end_by = max(end_by, time.monotonic() + drain)
            elif time.monotonic() >= end_by:
                break
            try:
                await load.read(sessions)
            except Exception as exc:  # a cut connection: read again next round
                print(f"  (read failed: {type(exc).__name__}: {str(exc)[:120]})", flush=True)
            if time.monotonic() - last_ask > 10:
                await load.ask_workflows()
                last_ask = time.monotonic()
            if (
                launching.done()
                and all(t.done() for t in starts)
                and all(op.end is not End.OPEN for op in load.ops)
            ):
                break
            await asyncio.sleep(POLL_SECONDS)
        await launching
        await asyncio.gather(*starts, return_exceptions=True)
        for _ in range(3):  # the last word, with the server up again
            try:
                await load.read(sessions)
                break
            except Exception:
                await asyncio.sleep(2)
        await load.ask_workflows(min_age=0)
        left = await load.quiesce(max(end_by, time.monotonic() + QUIESCE_SECONDS))
        if left:
            names = ", ".join(f"{op.workflow_id} ({op.status})" for op in left[:5])
            print(f"  ({len(left)} workflows still running after their rows ended: {names})")
    finally:
        await engine.dispose()

"""Ticket purchase, refund and NFT transfer.

``TicketPurchase`` (``ticket-purchase-<id>``): Stripe payment -> NFT minted to the buyer -> email
and signed webhook. A declined card fails fast with its reason. A mint that can never succeed is
compensated (saga): the payment is refunded, the buyer and the admins are told, and the original
error is raised again so the execution shows as failed.

``Refund`` (``refund-<refund id>``): full or partial, never above what was captured (reserved in
the database first), once per refund id; a full refund can freeze or burn the ticket.

``NftTransfer`` (``nft-transfer-<id>``): checks the on-chain owner, moves the ticket as the
permanent delegate, records the new owner, notifies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from domain.events import EventData, EventType
from domain.nft import (
    BurnTicketInput,
    FreezeTicketInput,
    MintTicketInput,
    TicketMetadata,
    TicketOwnerInput,
    TransferTicketInput,
)
from domain.queues import ActivityQueue, Routed
from domain.retries import DB_REFUSALS
from domain.search import OperationStatus
from domain.tickets import (
    CancelPaymentInput,
    EmailInput,
    MintOutcomeInput,
    NftTransferInput,
    NftTransferState,
    PayInput,
    PaymentCapturedInput,
    PurchaseStatus,
    PurchaseUpdate,
    RecordOutcomeInput,
    RefundInput,
    RefundSettledInput,
    RefundState,
    ReservedRefund,
    ReserveRefundInput,
    RetrievePaymentInput,
    RetrieveRefundInput,
    StripeEventSignal,
    StripeRefundInput,
    StripeRefundResult,
    TicketPurchaseInput,
    TicketPurchaseState,
    TransferRecordInput,
    WebhookInput,
)
from workflows import policies
from workflows.bookkeeping import db_step
from workflows.dead_letter import Decision, Parkable, StepVisibility, set_status
from workflows.events import emit
from workflows.failures import cause_message, reraise_if_cancelled, root_error_type
from workflows.refs import add_refs

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from activities.solana import SolanaActivities
    from activities.stripe import StripeActivities
    from activities.tickets import TicketActivities

T = TypeVar("T")

#: a bookkeeping write the database refuses for good parks the workflow (it used to fail it)
DB_STEP_PARKS_PATCH = "tickets-db-step-parks"


async def retire_nft(solana_queue: str, mint: str, action: str) -> None:
    """Retire a ticket's NFT: burn it when the configured action is ``burn``, else freeze it
    (a voided ticket, a purchase cancelled or refunded after its mint)."""
    if action == "burn":
        await workflow.execute_activity_method(
            SolanaActivities.burn_ticket,
            BurnTicketInput(mint=mint, owner=""),
            task_queue=solana_queue,
            start_to_close_timeout=policies.SOLANA_TIMEOUT,
            retry_policy=policies.SOLANA,
        )
    else:
        await workflow.execute_activity_method(
            SolanaActivities.freeze_ticket,
            FreezeTicketInput(mint=mint, owner=""),
            task_queue=solana_queue,
            start_to_close_timeout=policies.SOLANA_TIMEOUT,
            retry_policy=policies.SOLANA,
        )


class _StripeRefundFailed(Exception):
    """Stripe answered a compensating refund with ``failed`` or ``canceled``."""


#: TicketPurchase: a compensating refund Stripe answers ``pending`` waits for its verdict
PURCHASE_REFUND_FOLLOWS = "ticket-purchase-refund-follows-stripe-status"


@dataclass(frozen=True)
class _Compensation:
    """Why a paid purchase is refunded in full: names its refund, emails and webhook."""

    key: str  # refund id suffix and message ids
    code: str  # Stripe metadata and webhook reason
    after: str  # "refund after <after> failed"
    customer_reason: str
    alert_title: str
    final: PurchaseStatus = PurchaseStatus.REFUNDED


MINT_FAILED = _Compensation(
    "mint-failed", "mint_failed", "a failed mint", "the ticket could not be issued",
    "Ticket mint failed",
)  # fmt: skip
CANCELLED = _Compensation(
    "cancelled", "cancelled", "a cancellation", "the purchase was cancelled",
    "Ticket purchase cancelled after payment", PurchaseStatus.CANCELLED,
)  # fmt: skip
#: TicketPurchase: creating the payment is retried with its one key until Stripe answers (a charge
#: whose answer was lost used to end the purchase as payment_failed with the card charged)
PURCHASE_PAY_RESOLVES = "ticket-purchase-pay-until-stripe-answers"
#: TicketPurchase: a cancel is taken at safe points and compensates (refund, NFT retired)
PURCHASE_CANCEL_COMPENSATES = "ticket-purchase-cancel-compensates"
#: TicketPurchase: paid, minted and failed are pushed to the tenant's endpoints
PURCHASE_EVENTS_PATCH = "ticket-purchase-events"
PLACE_LOST = _Compensation(
    "place-lost", "place_lost", "a lost place", "the seat was no longer available",
    "Ticket place lost after payment",
)  # fmt: skip


def purchase_workflow_id(purchase_id: str) -> str:
    return f"ticket-purchase-{purchase_id}"


def refund_workflow_id(refund_id: str) -> str:
    return f"refund-{refund_id}"


def transfer_workflow_id(transfer_id: str) -> str:
    return f"nft-transfer-{transfer_id}"


def money(amount_minor: int) -> str:
    """Display amount; every ticket currency has two decimals (KES, USD, EUR, GBP)."""
    return f"{amount_minor // 100}.{amount_minor % 100:02d}"


class _Steps:
    """Helpers every ticket workflow uses: bookkeeping and notifications that never fail it."""

    _routed: Routed
    _events: list[StripeEventSignal]

    async def _db(self, method: Callable[..., Awaitable[T]], arg: Any) -> T:
        """Bookkeeping: retried while the database is away (reported from
        ``STEP_ALERT_AFTER_ATTEMPTS`` on). A write it refuses for good (a constraint) parks a
        purchase or refund for an operator at once; ``abandon`` lets the error through (the
        workflow fails as it did before, compensating)."""
        while True:
            try:
                return await db_step(method, arg, queue=self._routed.queue(ActivityQueue.DB))
            except ActivityError as err:
                reraise_if_cancelled(err)
                if not (
                    isinstance(self, Parkable)
                    and root_error_type(err) in DB_REFUSALS
                    and workflow.patched(DB_STEP_PARKS_PATCH)
                ):
                    raise
                reason = f"{getattr(method, '__name__', 'recording')} failed: {cause_message(err)}"
                state = getattr(self, "_state", None)
                if state is not None and hasattr(state, "error"):
                    state.error = reason
                if await self.park(reason) is Decision.ABANDON:
                    raise

    async def _email(
        self, template: str, to: str, message_id: str, context: dict[str, str]
    ) -> bool:
        try:
            return await workflow.execute_activity_method(
                NotifyActivities.email,
                EmailInput(message_id=message_id, to=to, template=template, context=context),
                task_queue=self._routed.queue(ActivityQueue.NOTIFY),
                start_to_close_timeout=policies.NOTIFY_TIMEOUT,
                retry_policy=policies.EMAIL,
            )
        except ActivityError as err:
            reraise_if_cancelled(err)
            await self._gave_up(message_id, "email", to, template, cause_message(err))
            return False

    async def _webhook(
        self, tenant: str, event_type: str, message_id: str, data: dict[str, Any]
    ) -> int:
        try:
            result = await workflow.execute_activity_method(
                NotifyActivities.webhook,
                WebhookInput(
                    message_id=message_id, tenant=tenant, event_type=event_type, data=data
                ),
                task_queue=self._routed.queue(ActivityQueue.NOTIFY),
                start_to_close_timeout=policies.NOTIFY_TIMEOUT,
                retry_policy=policies.WEBHOOK,
            )
            return result.delivered
        except ActivityError as err:
            reraise_if_cancelled(err)
            await self._gave_up(message_id, "webhook", tenant, event_type, cause_message(err))
            return 0

    async def _await_stripe(self, refund_id: str, timeout_seconds: float) -> str:
        """Stripe's final word on a refund it answered ``pending``: its webhook (a
        ``stripe_event`` signal), or asked again every ``REFUND_WEBHOOK_WAIT`` while none comes."""
        events: list[StripeEventSignal] = self._events

        def final() -> str | None:
            for event in events:
                if event.refund == refund_id and event.status in REFUND_FINAL:
                    return event.status
            return None

        while True:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: final() is not None, timeout=REFUND_WEBHOOK_WAIT
                )
            outcome = final()
            if outcome is not None:
                return outcome
            current = await workflow.execute_activity_method(
                StripeActivities.retrieve_refund,
                RetrieveRefundInput(refund_id=refund_id),
                task_queue=self._routed.queue(ActivityQueue.STRIPE),
                start_to_close_timeout=timedelta(seconds=timeout_seconds),
                retry_policy=policies.STRIPE,
            )
            if current.status in REFUND_FINAL:
                return current.status

    async def _gave_up(
        self, message_id: str, channel: str, target: str, kind: str, error: str
    ) -> None:
        workflow.logger.warning("gave up on %s %s: %s", channel, message_id, error)
        await workflow.execute_activity_method(
            NotifyActivities.record,
            RecordOutcomeInput(
                message_id=message_id,
                channel=channel,
                target=target,
                kind=kind,
                status="failed",
                error=error,
            ),
            task_queue=self._routed.queue(ActivityQueue.NOTIFY),
            start_to_close_timeout=policies.NOTIFY_TIMEOUT,
            retry_policy=policies.DB_BOOKKEEPING,
        )


@workflow.defn(name="TicketPurchase")
class TicketPurchase(Parkable, _Steps):
    def __init__(self) -> None:
        super().__init__()
        self._state = TicketPurchaseState(purchase_id="")
        self._events: list[StripeEventSignal] = []
        self._place_lost = False
        self._cancel_requested = False

    @workflow.signal(name="stripe_event")
    def stripe_event(self, event: StripeEventSignal) -> None:
        self._events.append(event)

    @workflow.query
    def status(self) -> TicketPurchaseState:
        return self._state

    @workflow.run
    async def run(self, request: TicketPurchaseInput) -> TicketPurchaseState:
        self._routed = self._request = request
        self._state = TicketPurchaseState(purchase_id=request.purchase_id)
        if not workflow.patched(PURCHASE_CANCEL_COMPENSATES):
            return await self._purchase()
        # a cancel never cuts a step in half: the purchase takes it at the next safe point and
        # compensates (the intent cancelled, or the payment refunded and the NFT retired)
        body = asyncio.ensure_future(self._purchase())
        try:
            return await asyncio.shield(body)
        except asyncio.CancelledError:
            self._cancel_requested = True
            workflow.logger.info("cancel requested: compensating at the next safe point")
        result = await body
        if self._state.status == PurchaseStatus.CANCELLED:
            set_status(OperationStatus.CANCELLED)
            raise asyncio.CancelledError()
        return result

    async def _purchase(self) -> TicketPurchaseState:
        paid = await self._pay()
        if not paid:
            return self._state
        if self._cancel_requested:
            await self._compensate(CANCELLED, "the purchase was cancelled after payment")
            return self._state
        if self._place_lost:
            await self._compensate(
                PLACE_LOST,
                "the seat hold expired before the payment succeeded and the place was sold to "
                "another buyer",
            )
            return self._state
        await self._paid_notifications()
        await self._emit(EventType.TICKET_PAID, {})
        minted = await self._mint()
        if minted is None and self._cancel_requested:
            await self._retire_minted()
            await self._compensate(CANCELLED, "the purchase was cancelled after payment")
            return self._state
        if minted is not None:
            await self._compensate(
                MINT_FAILED, f"the NFT ticket could not be minted: {cause_message(minted)}"
            )
            raise ApplicationError(
                "the NFT ticket could not be minted, the payment was refunded: "
                f"{cause_message(minted)}",
                type="TicketMintFailed",
                non_retryable=True,
            ) from minted
        self._move(PurchaseStatus.COMPLETED)
        set_status(OperationStatus.SUCCEEDED)
        await self._completed_notifications()
        await self._emit(EventType.TICKET_MINTED, {"mint": self._state.mint})
        return self._state

    # --- payment -------------------------------------------------------------------------------

    async def _pay(self) -> bool:
        request, config = self._request, self._request.config
        workflow_id = workflow.info().workflow_id
        try:
            payment = await workflow.execute_activity_method(
                StripeActivities.pay,
                PayInput(
                    idempotency_key=f"{workflow_id}:payment",
                    amount_minor=request.amount_minor,
                    currency=request.currency,
                    payment_method=request.payment_method,
                    customer_email=request.buyer_email,
                    metadata={
                        "purchase_id": request.purchase_id,
                        "event_id": request.event_id,
                        "seat": request.seat,
                    },
                ),
                task_queue=request.queue(ActivityQueue.STRIPE),
                start_to_close_timeout=timedelta(seconds=config.stripe_timeout_seconds),
                retry_policy=(
                    policies.STRIPE_PAYMENT
                    if workflow.patched(PURCHASE_PAY_RESOLVES)
                    else policies.STRIPE
                ),
            )
        except ActivityError as err:
            reraise_if_cancelled(err)
            await self._payment_failed(cause_message(err))
            return False
        self._state.payment_intent = payment.payment_intent
        add_refs(payment.payment_intent)
        status = payment.status
        if status == "requires_action":
            self._move(PurchaseStatus.REQUIRES_ACTION)
            await self._db(
                TicketActivities.update,
                PurchaseUpdate(
                    purchase_id=request.purchase_id,
                    status=PurchaseStatus.REQUIRES_ACTION,
                    payment_intent=payment.payment_intent,
                ),
            )
            status = await self._await_authentication(payment.payment_intent)
        if status != "succeeded":
            await self._payment_failed(payment.failure_message or f"payment ended as {status}")
            return False
        captured = await self._db(
            TicketActivities.payment_captured,
            PaymentCapturedInput(
                purchase_id=request.purchase_id,
                payment_intent=payment.payment_intent,
                amount_minor=request.amount_minor,
                currency=request.currency,
            ),
        )
        # None in histories from before holds expired
        self._place_lost = captured is not None and not captured.place_kept
        self._move(PurchaseStatus.PAID)
        return True

    async def _await_authentication(self, payment_intent: str) -> str:
        """The buyer authenticates (3-D Secure); Stripe's webhook tells us the outcome. If it never
        comes, ask Stripe, and cancel an intent still waiting so it cannot be paid later."""
        config = self._request.config

        def outcome() -> StripeEventSignal | None:
            for event in self._events:
                if event.payment_intent == payment_intent and event.type in (
                    "payment_intent.succeeded",
                    "payment_intent.payment_failed",
                    "payment_intent.canceled",
                ):
                    return event
            return None

        # a timeout is an answer too: no outcome, and the intent is cancelled below
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: outcome() is not None or self._cancel_requested,
                timeout=timedelta(seconds=config.action_timeout_seconds),
            )
        event = outcome()
        if event is not None:
            if event.type == "payment_intent.succeeded":
                return "succeeded"
            self._state.failure_reason = event.failure_message
            return "failed"
        current = await workflow.execute_activity_method(
            StripeActivities.retrieve,
            RetrievePaymentInput(payment_intent=payment_intent),
            task_queue=self._request.queue(ActivityQueue.STRIPE),
            start_to_close_timeout=timedelta(seconds=config.stripe_timeout_seconds),
            retry_policy=policies.STRIPE,
        )
        if current.status == "succeeded":
            return "succeeded"
        await workflow.execute_activity_method(
            StripeActivities.cancel,
            CancelPaymentInput(
                payment_intent=payment_intent,
                idempotency_key=f"{workflow.info().workflow_id}:cancel",
            ),
            task_queue=self._request.queue(ActivityQueue.STRIPE),
            start_to_close_timeout=timedelta(seconds=config.stripe_timeout_seconds),
            retry_policy=policies.STRIPE,
        )
        self._state.failure_reason = (
            "the purchase was cancelled"
            if self._cancel_requested
            else "the buyer did not complete authentication in time"
        )
        return "canceled"

    async def _payment_failed(self, reason: str) -> None:
        reason = self._state.failure_reason or reason
        self._state.failure_reason = reason
        status = (
            PurchaseStatus.CANCELLED if self._cancel_requested else PurchaseStatus.PAYMENT_FAILED
        )
        self._move(status)
        await self._db(
            TicketActivities.update,
            PurchaseUpdate(
                purchase_id=self._request.purchase_id,
                status=status,
                failure_reason=reason,
                payment_intent=self._state.payment_intent,
                release_seat=True,
            ),
        )
        set_status(OperationStatus.FAILED)
        await self._emit(EventType.TICKET_FAILED, {"status": status.value, "reason": reason})

    # --- mint and compensation -----------------------------------------------------------------

    async def _mint(self) -> ActivityError | None:
        """Mint the ticket; None when done, else the error that made it impossible."""
        request = self._request
        self._move(PurchaseStatus.MINTING)
        await self._db(
            TicketActivities.update,
            PurchaseUpdate(purchase_id=request.purchase_id, status=PurchaseStatus.MINTING),
        )
        try:
            minted = await workflow.execute_activity_method(
                SolanaActivities.mint_ticket,
                MintTicketInput(
                    ticket_id=request.purchase_id,
                    owner=request.buyer_wallet,
                    metadata=TicketMetadata(
                        name=(request.nft_name or f"Ticket {request.event_id}")[:32],
                        symbol=request.symbol,
                        uri=request.metadata_uri,
                        event_id=request.event_id,
                        seat=request.seat,
                        ticket_id=request.purchase_id,
                    ),
                ),
                task_queue=request.queue(ActivityQueue.SOLANA),
                start_to_close_timeout=timedelta(seconds=request.config.solana_timeout_seconds),
                retry_policy=policies.mint(request.config.mint_max_attempts),
            )
        except ActivityError as err:
            reraise_if_cancelled(err)
            return err
        self._state.mint, self._state.token_account = minted.mint, minted.token_account
        add_refs(minted.mint)
        await self._db(
            TicketActivities.update,
            PurchaseUpdate(
                purchase_id=request.purchase_id,
                status=PurchaseStatus.COMPLETED,
                mint=minted.mint,
                token_account=minted.token_account,
            ),
        )
        return None

    async def _compensate(self, why: _Compensation, reason: str) -> None:
        """Refund the whole payment (it must happen: park when it cannot), release the seat, and
        tell the buyer and the admins."""
        request, state = self._request, self._state
        state.failure_reason = reason
        await self._emit(EventType.TICKET_FAILED, {"status": why.final.value, "reason": why.code})
        refund_id = f"{request.purchase_id}-{why.key}"
        state.refund_id = refund_id
        try:
            reserved = await self._db(
                TicketActivities.reserve_refund,
                ReserveRefundInput(
                    refund_id=refund_id,
                    purchase_id=request.purchase_id,
                    amount_minor=None,
                    requested_by="system",
                    reason=reason,
                    workflow_id=workflow.info().workflow_id,
                ),
            )
        except ActivityError as err:
            reraise_if_cancelled(err)
            if root_error_type(err) != "RefundRefused":
                raise
            # the venue refunded everything already (while the mint ran): nothing is left
            self._move(why.final)
            await self._db(
                TicketActivities.update,
                PurchaseUpdate(
                    purchase_id=request.purchase_id,
                    status=why.final,
                    failure_reason=reason,
                    release_seat=True,
                ),
            )
            set_status(OperationStatus.FAILED)
            return
        attempt = 1
        while True:
            key = f"{workflow.info().workflow_id}:refund" + ("" if attempt == 1 else f":{attempt}")
            try:
                refund = await workflow.execute_activity_method(
                    StripeActivities.refund,
                    StripeRefundInput(
                        idempotency_key=key,
                        payment_intent=reserved.payment_intent,
                        amount_minor=reserved.amount_minor,
                        metadata={"purchase_id": request.purchase_id, "reason": why.code},
                    ),
                    task_queue=request.queue(ActivityQueue.STRIPE),
                    start_to_close_timeout=timedelta(seconds=request.config.stripe_timeout_seconds),
                    retry_policy=policies.STRIPE_REFUND,
                )
                if refund.status == "succeeded" or not workflow.patched(PURCHASE_REFUND_FOLLOWS):
                    break
                outcome = await self._await_stripe(
                    refund.refund_id, request.config.stripe_timeout_seconds
                )
                if outcome == "succeeded":
                    break
                attempt += 1
                raise _StripeRefundFailed(f"Stripe refund {refund.refund_id} ended {outcome}")
            except (ActivityError, _StripeRefundFailed) as err:
                if isinstance(err, ActivityError):
                    reraise_if_cancelled(err)
                message = cause_message(err) if isinstance(err, ActivityError) else str(err)
                state.error = f"refund after {why.after} failed: {message}"
                self._move(PurchaseStatus.NEEDS_ATTENTION)
                if await self.park(state.error) is Decision.ABANDON:
                    await self._db(
                        TicketActivities.settle_refund,
                        RefundSettledInput(
                            refund_id=refund_id,
                            stripe_refund_id=None,
                            succeeded=False,
                            failure_reason=self.abandon_reason,
                        ),
                    )
                    return
        add_refs(refund_id, refund.refund_id)
        await self._db(
            TicketActivities.settle_refund,
            RefundSettledInput(
                refund_id=refund_id, stripe_refund_id=refund.refund_id, succeeded=True
            ),
        )
        self._move(why.final)
        await self._db(
            TicketActivities.update,
            PurchaseUpdate(
                purchase_id=request.purchase_id,
                status=why.final,
                failure_reason=reason,
                release_seat=True,
            ),
        )
        set_status(OperationStatus.FAILED)
        context = self._context() | {
            "amount": money(reserved.amount_minor),
            "reason": why.customer_reason,
            "refund_reference": refund.refund_id,
        }
        await self._email(
            "refund_confirmation",
            request.buyer_email,
            f"{request.purchase_id}:refund-email",
            context,
        )
        for admin in request.config.admin_emails:
            await self._email(
                "admin_alert",
                admin,
                f"{request.purchase_id}:{why.key}-alert:{admin}",
                {
                    "title": f"{why.alert_title}, payment refunded "
                    f"({request.event_id} {request.seat})",
                    "detail": reason,
                    "workflow_id": workflow.info().workflow_id,
                },
            )
        await self._webhook(
            request.tenant,
            "ticket.refunded",
            f"{request.purchase_id}:refunded",
            {
                "purchase_id": request.purchase_id,
                "amount_minor": reserved.amount_minor,
                "reason": why.code,
            },
        )
        if workflow.patched(PURCHASE_EVENTS_PATCH):
            await emit(
                request,
                request.tenant,
                EventType.TICKET_REFUNDED,
                refund_id,
                {
                    "purchase_id": request.purchase_id,
                    "refund_id": refund_id,
                    "amount_minor": reserved.amount_minor,
                    "currency": reserved.currency,
                    "reason": why.code,
                },
            )

    async def _retire_minted(self) -> None:
        """Freeze (or burn, as configured) the NFT of a purchase cancelled while it was minted."""
        request, mint = self._request, self._state.mint
        assert mint is not None
        try:
            await retire_nft(
                request.queue(ActivityQueue.SOLANA), mint, request.config.full_refund_action
            )
        except ActivityError as err:
            # the refund still goes out; a ticket left valid is an operator's job
            self._state.error = f"could not retire the NFT: {cause_message(err)}"
            workflow.logger.error("could not retire ticket %s: %s", mint, cause_message(err))

    # --- notifications -------------------------------------------------------------------------

    def _context(self) -> dict[str, str]:
        request = self._request
        return {
            "event_id": request.event_id,
            "seat": request.seat,
            "amount": money(request.amount_minor),
            "currency": request.currency,
            "buyer_wallet": request.buyer_wallet,
            "payment_intent": self._state.payment_intent or "",
            "mint": self._state.mint or "",
        }

    async def _paid_notifications(self) -> None:
        request = self._request
        if await self._email(
            "payment_confirmation",
            request.buyer_email,
            f"{request.purchase_id}:payment-email",
            self._context(),
        ):
            self._state.emails_sent += 1

    async def _completed_notifications(self) -> None:
        request = self._request
        if await self._email(
            "nft_minted",
            request.buyer_email,
            f"{request.purchase_id}:minted-email",
            self._context(),
        ):
            self._state.emails_sent += 1
        self._state.webhooks_sent += await self._webhook(
            request.tenant,
            "ticket.purchased",
            f"{request.purchase_id}:purchased",
            {
                "purchase_id": request.purchase_id,
                "event_id": request.event_id,
                "seat": request.seat,
                "amount_minor": request.amount_minor,
                "currency": request.currency,
                "buyer_wallet": request.buyer_wallet,
                "mint": self._state.mint,
            },
        )

    def _move(self, status: PurchaseStatus) -> None:
        self._state.status = status
        self._state.updated_at = workflow.now()

    def event_scope(self) -> tuple[Routed, str] | None:
        return self._request, self._request.tenant

    async def _emit(self, event_type: EventType, data: EventData) -> None:
        """Push a step of the purchase to the tenant's endpoints (purchases from before: no)."""
        if not workflow.patched(PURCHASE_EVENTS_PATCH):
            return
        request = self._request
        await emit(
            request,
            request.tenant,
            event_type,
            request.purchase_id,
            {
                "purchase_id": request.purchase_id,
                "event_id": request.event_id,
                "seat": request.seat,
                "amount_minor": request.amount_minor,
                "currency": request.currency,
                **data,
            },
        )


#: Refund: a refund Stripe answers ``pending`` waits for Stripe's verdict, ``failed`` parks
REFUND_FOLLOWS_STRIPE = "refund-follows-stripe-status"
#: Refund: a cancel releases the reservation while nothing was refunded, else is refused
REFUND_CANCEL_RELEASES = "refund-cancel-releases"
#: Refund: a refund that voids a ticket whose mint is still running waits for the mint
REFUND_WAITS_FOR_MINT = "refund-waits-for-mint"
#: Refund: a settled refund is pushed as ticket.refunded to the endpoints subscribed to it
REFUND_EVENTS_PATCH = "refund-events"
#: how long a pending Stripe refund waits for its webhook before asking Stripe
REFUND_WEBHOOK_WAIT = timedelta(hours=1)
#: how often a refund waiting for a mint looks again (doubling up to the second)
MINT_POLL_FIRST, MINT_POLL_MAX = timedelta(seconds=1), timedelta(minutes=1)
REFUND_FINAL = ("succeeded", "failed", "canceled")
MINT_PENDING = (
    PurchaseStatus.PAYING,
    PurchaseStatus.REQUIRES_ACTION,
    PurchaseStatus.PAID,
    PurchaseStatus.MINTING,
)


@workflow.defn(name="Refund")
class Refund(Parkable, _Steps):
    def __init__(self) -> None:
        super().__init__()
        self._state = RefundState(refund_id="")
        self._events: list[StripeEventSignal] = []
        self._cancel_requested = False

    @workflow.signal(name="stripe_event")
    def stripe_event(self, event: StripeEventSignal) -> None:
        """A verified Stripe refund event (``refund.updated``, ``refund.failed``)."""
        self._events.append(event)

    def event_scope(self) -> tuple[Routed, str] | None:
        routed = self._routed
        return (routed, routed.tenant) if isinstance(routed, RefundInput) else None

    @workflow.query
    def status(self) -> RefundState:
        return self._state

    @workflow.run
    async def run(self, request: RefundInput) -> RefundState:
        self._routed = request
        state = self._state = RefundState(refund_id=request.refund_id)
        try:
            reserved = await workflow.execute_activity_method(
                TicketActivities.reserve_refund,
                ReserveRefundInput(
                    refund_id=request.refund_id,
                    purchase_id=request.purchase_id,
                    amount_minor=request.amount_minor,
                    requested_by=request.requested_by,
                    reason=request.reason,
                    workflow_id=workflow.info().workflow_id,
                ),
                task_queue=request.queue(ActivityQueue.DB),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_BOOKKEEPING,
            )
        except ActivityError as err:
            if is_cancelled_exception(err) and workflow.patched(REFUND_CANCEL_RELEASES):
                # the reservation may have been written: it is released
                state.status, state.failure_reason = "cancelled", "the refund was cancelled"
                await self._release(request, state.failure_reason)
                set_status(OperationStatus.CANCELLED)
            reraise_if_cancelled(err)
            state.status, state.failure_reason = "refused", cause_message(err)
            set_status(OperationStatus.FAILED)
            return state
        state.amount_minor = reserved.amount_minor
        if reserved.already_done:
            state.status, state.stripe_refund_id = "succeeded", reserved.stripe_refund_id
            set_status(OperationStatus.SUCCEEDED)
            return state
        if not workflow.patched(REFUND_CANCEL_RELEASES):
            return await self._settle(request, reserved)
        # a cancel must not cut a refund in half: it is taken at the points where nothing has
        # moved (parked before Stripe refunded) and refused once Stripe may have refunded
        body = asyncio.ensure_future(self._settle(request, reserved))
        try:
            return await asyncio.shield(body)
        except asyncio.CancelledError:
            self._cancel_requested = True
            if self.parked:
                self.abandon("the refund was cancelled")
            else:
                workflow.logger.warning("cancel refused: Stripe may be refunding; finishing")
        result = await body
        if state.status == "failed" and self.abandon_reason == "the refund was cancelled":
            state.status = "cancelled"
            set_status(OperationStatus.CANCELLED)
            raise asyncio.CancelledError()
        return result

    async def _settle(self, request: RefundInput, reserved: ReservedRefund) -> RefundState:
        state = self._state
        refund = await self._refund(request, reserved)
        if refund is None:
            return state
        add_refs(refund.refund_id, reserved.payment_intent)
        await self._db(
            TicketActivities.settle_refund,
            RefundSettledInput(
                refund_id=request.refund_id,
                stripe_refund_id=refund.refund_id,
                succeeded=True,
                void_ticket=request.void_ticket,
            ),
        )
        state.status, state.stripe_refund_id, state.failure_reason = (
            "succeeded",
            refund.refund_id,
            None,
        )
        set_status(OperationStatus.SUCCEEDED)
        if (reserved.full or request.void_ticket) and request.config.full_refund_action in (
            "freeze",
            "burn",
        ):
            mint = request.mint
            if mint is None and workflow.patched(REFUND_WAITS_FOR_MINT):
                mint = await self._await_mint(request, reserved.full)
            if mint is not None:
                await self._retire_ticket(request, mint)
        await self._email(
            "refund_confirmation",
            request.buyer_email,
            f"{request.refund_id}:refund-email",
            {
                "event_id": request.event_id,
                "seat": request.seat,
                "amount": money(reserved.amount_minor),
                "currency": reserved.currency,
                "reason": request.reason or "",
                "refund_reference": refund.refund_id,
            },
        )
        data: EventData = {
            "purchase_id": request.purchase_id,
            "refund_id": request.refund_id,
            "amount_minor": reserved.amount_minor,
            "full": int(reserved.full),
            "void": int(reserved.full or request.void_ticket),
        }
        await self._webhook(
            request.tenant, "ticket.refunded", f"{request.refund_id}:refunded", dict(data)
        )
        if workflow.patched(REFUND_EVENTS_PATCH):
            await emit(
                request,
                request.tenant,
                EventType.TICKET_REFUNDED,
                request.refund_id,
                data | {"currency": reserved.currency, "reason": request.reason},
            )
        return state

    async def _refund(
        self, request: RefundInput, reserved: ReservedRefund
    ) -> StripeRefundResult | None:
        """Stripe's refund once it has succeeded; None when it ended otherwise (the state says
        how: failed for good, or abandoned by an operator)."""
        state, attempt = self._state, 1
        while True:
            key = f"refund:{request.refund_id}" + ("" if attempt == 1 else f":{attempt}")
            try:
                refund = await workflow.execute_activity_method(
                    StripeActivities.refund,
                    StripeRefundInput(
                        idempotency_key=key,
                        payment_intent=reserved.payment_intent,
                        amount_minor=reserved.amount_minor,
                        metadata={
                            "purchase_id": request.purchase_id,
                            "refund_id": request.refund_id,
                        },
                    ),
                    task_queue=request.queue(ActivityQueue.STRIPE),
                    start_to_close_timeout=timedelta(seconds=request.config.stripe_timeout_seconds),
                    retry_policy=policies.STRIPE_REFUND,
                )
            except ActivityError as err:
                reraise_if_cancelled(err)
                if root_error_type(err) == "StripeRejected":
                    # Stripe refused it for good: release the reservation, nothing was refunded
                    state.status, state.failure_reason = "failed", cause_message(err)
                    await self._release(request, state.failure_reason)
                    set_status(OperationStatus.FAILED)
                    return None
                state.failure_reason = f"refund failed: {cause_message(err)}"
                if await self.park(state.failure_reason) is Decision.ABANDON:
                    await self._abandoned(request)
                    return None
                continue
            if refund.status == "succeeded" or not workflow.patched(REFUND_FOLLOWS_STRIPE):
                return refund
            state.stripe_refund_id = refund.refund_id
            state.status = "waiting_for_stripe"
            outcome = await self._await_stripe(
                refund.refund_id, request.config.stripe_timeout_seconds
            )
            if outcome == "succeeded":
                return refund
            # Stripe could not refund (e.g. the card was closed): an operator decides; a retry
            # asks Stripe for a new refund
            state.status = "needs_attention"
            state.failure_reason = f"Stripe refund {refund.refund_id} ended {outcome}"
            if await self.park(state.failure_reason) is Decision.ABANDON:
                await self._abandoned(request)
                return None
            attempt += 1

    async def _await_mint(self, request: RefundInput, full: bool) -> str | None:
        """The ticket's mint address once its purchase has minted it, None when it never will
        be (the mint failed: the purchase refunds itself). The purchase records the void."""
        delay = MINT_POLL_FIRST
        while True:
            outcome = await self._db(
                TicketActivities.mint_outcome, MintOutcomeInput(purchase_id=request.purchase_id)
            )
            if outcome.mint is not None:
                await self._db(
                    TicketActivities.update,
                    PurchaseUpdate(
                        purchase_id=request.purchase_id,
                        status=PurchaseStatus.REFUNDED if full else PurchaseStatus.VOIDED,
                        release_seat=True,
                    ),
                )
                return outcome.mint
            if outcome.status not in MINT_PENDING:
                return None
            self._state.nft_action = "waiting for the mint"
            await workflow.sleep(delay)
            delay = min(delay * 2, MINT_POLL_MAX)

    async def _release(self, request: RefundInput, reason: str | None) -> None:
        await self._db(
            TicketActivities.settle_refund,
            RefundSettledInput(
                refund_id=request.refund_id,
                stripe_refund_id=None,
                succeeded=False,
                failure_reason=reason,
            ),
        )

    async def _abandoned(self, request: RefundInput) -> None:
        await self._release(request, self.abandon_reason)
        self._state.status = "failed"
        set_status(OperationStatus.ABANDONED)

    async def _retire_ticket(self, request: RefundInput, mint: str) -> None:
        action = request.config.full_refund_action
        try:
            await retire_nft(request.queue(ActivityQueue.SOLANA), mint, action)
            self._state.nft_action = "burned" if action == "burn" else "frozen"
        except ActivityError as err:
            reraise_if_cancelled(err)
            # the money is back with the buyer; a ticket left unfrozen is an operator's job
            self._state.nft_action = f"{action} failed: {cause_message(err)}"
            workflow.logger.error(
                "could not %s ticket %s after a full refund: %s",
                action,
                mint,
                cause_message(err),
            )


@workflow.defn(name="NftTransfer")
class NftTransfer(StepVisibility, _Steps):
    def __init__(self) -> None:
        self._state = NftTransferState(transfer_id="")

    @workflow.query
    def status(self) -> NftTransferState:
        return self._state

    @workflow.run
    async def run(self, request: NftTransferInput) -> NftTransferState:
        self._routed = request
        state = self._state = NftTransferState(transfer_id=request.transfer_id)
        owner = await workflow.execute_activity_method(
            SolanaActivities.ticket_owner,
            TicketOwnerInput(mint=request.mint),
            task_queue=request.queue(ActivityQueue.SOLANA),
            start_to_close_timeout=policies.SOLANA_TIMEOUT,
            retry_policy=policies.SOLANA,
        )
        if owner.owner not in (request.from_wallet, request.to_wallet):
            return await self._refused(
                request, f"{request.from_wallet} does not hold this ticket (held by {owner.owner})"
            )
        if owner.frozen:
            return await self._refused(request, "the ticket is frozen (refunded)")
        try:
            moved = await workflow.execute_activity_method(
                SolanaActivities.transfer_ticket,
                TransferTicketInput(
                    ticket_id=request.purchase_id,
                    mint=request.mint,
                    from_owner=request.from_wallet,
                    to_owner=request.to_wallet,
                ),
                task_queue=request.queue(ActivityQueue.SOLANA),
                start_to_close_timeout=policies.SOLANA_TIMEOUT,
                retry_policy=policies.SOLANA,
            )
        except ActivityError as err:
            reraise_if_cancelled(err)
            return await self._refused(request, cause_message(err))
        state.status, state.signature = "transferred", moved.signature
        add_refs(request.mint, moved.signature)
        await self._db(
            TicketActivities.record_transfer,
            TransferRecordInput(
                transfer_id=request.transfer_id,
                status="transferred",
                signature=moved.signature,
                new_owner=request.to_wallet,
            ),
        )
        set_status(OperationStatus.SUCCEEDED)
        await self._email(
            "nft_minted",
            request.buyer_email,
            f"{request.transfer_id}:transfer-email",
            {
                "event_id": request.event_id,
                "seat": request.seat,
                "buyer_wallet": request.to_wallet,
                "mint": request.mint,
            },
        )
        await self._webhook(
            request.tenant,
            "ticket.transferred",
            f"{request.transfer_id}:transferred",
            {
                "purchase_id": request.purchase_id,
                "mint": request.mint,
                "from_wallet": request.from_wallet,
                "to_wallet": request.to_wallet,
            },
        )
        return state

    async def _refused(self, request: NftTransferInput, reason: str) -> NftTransferState:
        self._state.status, self._state.failure_reason = "refused", reason
        await self._db(
            TicketActivities.record_transfer,
            TransferRecordInput(
                transfer_id=request.transfer_id, status="refused", failure_reason=reason
            ),
        )
        set_status(OperationStatus.FAILED)
        return self._state

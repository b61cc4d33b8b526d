"""DepositWatch: one per deposit intent, on durable timers instead of a job polling every 30 s.

Workflow ID ``deposit-watch-<intent_id>``. The chain scanner signals ``transfer_seen``; the watch
then waits (a timer sized to the blocks still to come) until each transfer has its confirmations,
checks that its block is still canonical, and credits it; a transfer whose block was reorged away
is not credited and the watch goes on. With nothing pending, a slow fallback timer lets the watch
look for itself (through the scanner's records, or the chain when the scanner is down).

Ends when the amount has arrived (paid or overpaid), at expiry (transfers already seen still
finish confirming), or after ``max_checks`` wake-ups.

Chain data is hostile (patch ``deposit-watch-ignores-dust``): a transfer below
``config.min_amount_minor`` (zero always) neither wakes the watch nor spends one of its checks; it
is counted in ``status.ignored`` and dropped. A credit that fails (patch
``deposit-watch-parks-failed-credit``) parks the watch (``needs_attention``) for ``retry`` or
``abandon`` instead of failing it; an abandoned transfer can still be credited by an admin.

``LateTransferCredit`` (``deposit-late-credit-<intent id>-<tx hash>-<log index>``) credits a
transfer that arrived after its intent closed, once an admin asks: it checks the transfer's
confirmations and block on chain first, then credits it under the same ledger key as any credit.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from domain.deposit_watch import (
    CheckTransfersInput,
    CloseIntentInput,
    CreditTransferInput,
    DepositWatchInput,
    DepositWatchState,
    FallbackInput,
    IntentStatus,
    IntentTotals,
    LateCreditInput,
    LateCreditState,
    MarkTransferInput,
    TransferSeen,
    TransferStatus,
    qualifies,
)
from domain.events import EventData, EventType
from domain.queues import ActivityQueue, Routed
from domain.search import OperationStatus
from workflows import policies
from workflows.dead_letter import Decision, Parkable, set_status
from workflows.events import emit
from workflows.failures import cause_message, reraise_if_cancelled
from workflows.refs import add_refs

with workflow.unsafe.imports_passed_through():
    from activities.chain import ChainReadActivities
    from activities.intents import IntentActivities


def workflow_id_for(intent_id: str) -> str:
    return f"deposit-watch-{intent_id}"


def late_credit_workflow_id(intent_id: str, tx_hash: str, log_index: int) -> str:
    """One late credit per transfer (a transfer goes to one intent's address), whoever asks and
    however often; the ledger key (chain, tx hash, log index) is what makes it credit once."""
    return f"deposit-late-credit-{intent_id}-{tx_hash.lower()}-{log_index}"


#: dust and zero-value transfers neither wake the watch nor spend its checks
DUST_PATCH = "deposit-watch-ignores-dust"
#: a bookkeeping write the database refuses for good (a constraint) parks the watch; it failed it
RECORD_PARKS_PATCH = "deposit-watch-record-parks"
#: a credit that fails parks the watch instead of failing it
PARK_PATCH = "deposit-watch-parks-failed-credit"
#: credits and the intent's end are pushed to the tenant's endpoints
EVENTS_PATCH = "deposit-watch-events"
#: the final statuses pushed as events
FINAL_EVENTS = {
    IntentStatus.PAID: EventType.INTENT_PAID,
    IntentStatus.OVERPAID: EventType.INTENT_PAID,
    IntentStatus.EXPIRED: EventType.INTENT_EXPIRED,
    IntentStatus.EXPIRED_PARTIALLY_PAID: EventType.INTENT_EXPIRED,
}
#: while the scanner was fresh at the last look, the fallback waits the longer healthy interval
QUIET_PATCH = "deposit-watch-quiet-while-scanner-fresh"


FINAL_SEARCH_STATUS = {
    IntentStatus.PAID: OperationStatus.SUCCEEDED,
    IntentStatus.OVERPAID: OperationStatus.SUCCEEDED,
    IntentStatus.EXPIRED: OperationStatus.EXPIRED,
    IntentStatus.EXPIRED_PARTIALLY_PAID: OperationStatus.EXPIRED,
    IntentStatus.STOPPED: OperationStatus.EXPIRED,
}


@workflow.defn(name="DepositWatch")
class DepositWatch(Parkable):
    def __init__(self) -> None:
        super().__init__()
        self._inbox: list[TransferSeen] = []
        self._state = DepositWatchState(intent_id="")
        self._ignore_dust = False
        self._park_credits = False
        #: under ``QUIET_PATCH``: whether the scanner's checkpoint was fresh at the last look
        self._quiet = False
        self._scanner_fresh = False

    @workflow.signal(name="transfer_seen")
    def transfer_seen(self, transfer: TransferSeen) -> None:
        self._inbox.append(transfer)

    @workflow.query
    def status(self) -> DepositWatchState:
        return self._state

    @workflow.run
    async def run(self, request: DepositWatchInput) -> DepositWatchState:
        self._request, config = request, request.config
        self._ignore_dust = workflow.patched(DUST_PATCH)
        self._park_credits = workflow.patched(PARK_PATCH)
        if config.healthy_fallback_interval_seconds is not None and workflow.patched(QUIET_PATCH):
            self._quiet, self._scanner_fresh = True, request.scanner_fresh
        state = self._state = DepositWatchState(
            intent_id=request.intent_id, amount_minor=request.amount_minor
        )
        pending: dict[str, TransferSeen] = {}
        while True:
            self._take_inbox(pending)
            final = self._final_status(pending)
            if final is not None:
                break
            state.checks += 1
            if pending:
                blocks_to_go = await self._check(pending)
                if state.received_minor >= request.amount_minor:
                    continue
                wait = max(1, blocks_to_go) * config.block_time_seconds
                await self._wait_for_signal(wait)
            elif not await self._wait_for_signal(max(1.0, self._idle_wait())):
                await self._fallback()
        state.status = final
        state.pending = list(pending.values())
        state.updated_at = workflow.now()
        await self.refused_write_parks(
            lambda: workflow.execute_activity_method(
                IntentActivities.close,
                CloseIntentInput(
                    intent_id=request.intent_id, status=final, received_minor=state.received_minor
                ),
                task_queue=request.queue(ActivityQueue.DB),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_BOOKKEEPING,
            ),
            "closing the intent",
            RECORD_PARKS_PATCH,
        )
        set_status(FINAL_SEARCH_STATUS[final])
        if final in FINAL_EVENTS:
            await self._emit(
                FINAL_EVENTS[final],
                request.intent_id,
                {"status": final.value, "received_minor": state.received_minor},
            )
        return state

    def event_scope(self) -> tuple[Routed, str] | None:
        return self._request, self._request.tenant

    async def _emit(self, event_type: EventType, subject: str, data: EventData) -> None:
        if not workflow.patched(EVENTS_PATCH):
            return  # watches recorded before events existed
        request = self._request
        await emit(
            request,
            request.tenant,
            event_type,
            subject,
            {
                "intent_id": request.intent_id,
                "user_id": request.user_id,
                "chain": request.chain,
                "amount_minor": request.amount_minor,
                "currency": "USDC",
                **data,
            },
        )

    # --- decisions -----------------------------------------------------------------------------

    def _final_status(self, pending: dict[str, TransferSeen]) -> IntentStatus | None:
        state, request = self._state, self._request
        if state.received_minor > request.amount_minor:
            return IntentStatus.OVERPAID
        if state.received_minor == request.amount_minor:
            return IntentStatus.PAID
        if workflow.now() >= request.expires_at and not pending:
            return (
                IntentStatus.EXPIRED_PARTIALLY_PAID
                if state.received_minor
                else IntentStatus.EXPIRED
            )
        if state.checks >= request.config.max_checks:
            return IntentStatus.STOPPED
        return None

    def _idle_wait(self) -> float:
        """Until the next fallback look: the healthy interval while the scanner was fresh at
        the last look (it signals transfers; the look is a safety net), else the short one; never
        past expiry, where a last look is taken."""
        config = self._request.config
        interval = config.fallback_interval_seconds
        if self._quiet and self._scanner_fresh and config.healthy_fallback_interval_seconds:
            interval = config.healthy_fallback_interval_seconds
        until_expiry = (self._request.expires_at - workflow.now()).total_seconds()
        return max(0.0, min(interval, until_expiry))

    def _take_inbox(self, pending: dict[str, TransferSeen]) -> None:
        """New sightings join the pending set; a transfer seen again in another block (after a
        reorg) replaces its old sighting; credited ones are never looked at again."""
        for transfer in self._inbox:
            if transfer.key in self._state.credited or transfer.key in self._state.abandoned:
                continue
            if not self._counts(transfer):
                self._state.ignored += 1
                continue
            known = pending.get(transfer.key)
            if known is None or known.block_hash != transfer.block_hash:
                pending[transfer.key] = transfer
        self._inbox.clear()
        self._state.pending = list(pending.values())

    def _counts(self, transfer: TransferSeen) -> bool:
        return not self._ignore_dust or qualifies(
            transfer.amount_minor, self._request.config.min_amount_minor
        )

    async def _wait_for_signal(self, seconds: float) -> bool:
        """True when a transfer that counts arrived before ``seconds`` passed (dust does not
        wake the watch, so it cannot use up its checks)."""
        try:
            await workflow.wait_condition(
                lambda: any(self._counts(t) for t in self._inbox),
                timeout=timedelta(seconds=seconds),
            )
            return True
        except TimeoutError:
            return False

    # --- steps ---------------------------------------------------------------------------------

    async def _check(self, pending: dict[str, TransferSeen]) -> int:
        """Credit what is confirmed, drop what was reorged; the fewest blocks still to come."""
        request, state, config = self._request, self._state, self._request.config
        result = await workflow.execute_activity_method(
            ChainReadActivities.check_transfers,
            CheckTransfersInput(
                chain_id=request.chain_id,
                transfers=list(pending.values()),
                confirmations=config.confirmations,
                use_safe_tag=config.use_safe_tag,
            ),
            task_queue=request.queue(ActivityQueue.EVM_READ),
            start_to_close_timeout=policies.CHAIN_READ_TIMEOUT,
            heartbeat_timeout=policies.LIVENESS_HEARTBEAT,
            retry_policy=policies.CHAIN_READ,
        )
        to_go = [c.blocks_to_go for c in result.checks if c.outcome == "pending"]
        for check in result.checks:
            transfer = check.transfer
            if check.outcome == "confirmed":
                totals = await self._credit(transfer)
                if totals is None:  # abandoned by an operator: never credited by this watch
                    await self._mark(transfer, TransferStatus.ABANDONED)
                    state.abandoned.append(transfer.key)
                    pending.pop(transfer.key, None)
                    continue
                state.received_minor = totals.received_minor
                state.credited.append(transfer.key)
                add_refs(transfer.tx_hash)
                pending.pop(transfer.key, None)
                await self._emit(
                    EventType.DEPOSIT_CREDITED,
                    f"{request.intent_id}:{transfer.key}",
                    {"transfer": transfer.key, "credited_minor": transfer.amount_minor},
                )
            elif check.outcome == "reorged":
                await self._mark(transfer, TransferStatus.REORGED)
                state.reorged.append(f"{transfer.key}@{transfer.block_hash}")
                pending.pop(transfer.key, None)
        if state.received_minor and state.received_minor < request.amount_minor:
            state.status = IntentStatus.PARTIALLY_PAID
        state.pending = list(pending.values())
        state.updated_at = workflow.now()
        return min(to_go) if to_go else 1

    async def _credit(self, transfer: TransferSeen) -> IntentTotals | None:
        """Credit a confirmed transfer; when that keeps failing, park for an operator: ``retry``
        tries again, ``abandon`` leaves it uncredited (None)."""
        request, state = self._request, self._state
        retry_policy: RetryPolicy = (
            policies.intent_credit(request.config.credit_max_attempts)
            if self._park_credits
            else policies.DB_BOOKKEEPING
        )
        while True:
            try:
                return await workflow.execute_activity_method(
                    IntentActivities.credit_transfer,
                    CreditTransferInput(
                        intent_id=request.intent_id, chain_id=request.chain_id, transfer=transfer
                    ),
                    task_queue=request.queue(ActivityQueue.DB),
                    start_to_close_timeout=policies.DB_TIMEOUT,
                    retry_policy=retry_policy,
                )
            except ActivityError as err:
                if not self._park_credits:
                    raise
                reraise_if_cancelled(err)
                state.error = f"credit failed: {cause_message(err)}"
                state.needs_attention = True
                state.updated_at = workflow.now()
                decision = await self.park(state.error)
                state.error, state.needs_attention = None, False
                if decision is Decision.ABANDON:
                    workflow.logger.warning(
                        "credit abandoned: %s (%s)", transfer.key, self.abandon_reason
                    )
                    return None

    async def _mark(self, transfer: TransferSeen, status: TransferStatus) -> None:
        request = self._request
        await self.refused_write_parks(
            lambda: workflow.execute_activity_method(
                IntentActivities.mark_transfer,
                MarkTransferInput(
                    intent_id=request.intent_id,
                    chain=request.chain,
                    transfer=transfer,
                    status=status,
                ),
                task_queue=request.queue(ActivityQueue.DB),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_BOOKKEEPING,
            ),
            f"recording transfer {transfer.key} as {status.value}",
            RECORD_PARKS_PATCH,
        )

    async def _fallback(self) -> None:
        request = self._request
        result = await workflow.execute_activity_method(
            ChainReadActivities.fallback_transfers,
            FallbackInput(
                intent_id=request.intent_id,
                chain=request.chain,
                address=request.address,
                start_block=request.start_block,
                stale_after_seconds=request.config.scanner_stale_after_seconds,
                min_amount_minor=request.config.min_amount_minor,
            ),
            task_queue=request.queue(ActivityQueue.EVM_READ),
            start_to_close_timeout=policies.CHAIN_READ_TIMEOUT,
            heartbeat_timeout=policies.LIVENESS_HEARTBEAT,
            retry_policy=policies.CHAIN_READ,
        )
        if result.queried_chain:
            self._state.fallback_queries += 1
        self._scanner_fresh = result.scanner_fresh
        # what was credited or reorged before must not come back as new
        reorged = set(self._state.reorged)
        self._inbox += [t for t in result.transfers if f"{t.key}@{t.block_hash}" not in reorged]


@workflow.defn(name="LateTransferCredit")
class LateTransferCredit(Parkable):
    """An admin's credit of a transfer that reached a closed intent: confirmations and canonical
    block checked on chain, then one credit under the transfer's ledger key (a second request
    finds it credited and changes nothing). A credit that keeps failing parks."""

    def __init__(self) -> None:
        super().__init__()
        self._state = LateCreditState(intent_id="", transfer_key="")

    @workflow.query
    def status(self) -> LateCreditState:
        return self._state

    @workflow.run
    async def run(self, request: LateCreditInput) -> LateCreditState:
        transfer = request.transfer
        state = self._state = LateCreditState(
            intent_id=request.intent_id, transfer_key=transfer.key
        )
        while True:
            result = await workflow.execute_activity_method(
                ChainReadActivities.check_transfers,
                CheckTransfersInput(
                    chain_id=request.chain_id,
                    transfers=[transfer],
                    confirmations=request.confirmations,
                    use_safe_tag=request.use_safe_tag,
                ),
                task_queue=request.queue(ActivityQueue.EVM_READ),
                start_to_close_timeout=policies.CHAIN_READ_TIMEOUT,
                heartbeat_timeout=policies.LIVENESS_HEARTBEAT,
                retry_policy=policies.CHAIN_READ,
            )
            (check,) = result.checks
            if check.outcome == "confirmed":
                break
            if check.outcome == "reorged":
                await workflow.execute_activity_method(
                    IntentActivities.mark_transfer,
                    MarkTransferInput(
                        intent_id=request.intent_id,
                        chain=request.chain,
                        transfer=transfer,
                        status=TransferStatus.REORGED,
                    ),
                    task_queue=request.queue(ActivityQueue.DB),
                    start_to_close_timeout=policies.DB_TIMEOUT,
                    retry_policy=policies.DB_BOOKKEEPING,
                )
                state.status, state.error = "reorged", "its block is no longer on the chain"
                set_status(OperationStatus.FAILED)
                return state
            await workflow.sleep(max(1, check.blocks_to_go) * request.block_time_seconds)
        while True:
            try:
                totals = await workflow.execute_activity_method(
                    IntentActivities.credit_transfer,
                    CreditTransferInput(
                        intent_id=request.intent_id, chain_id=request.chain_id, transfer=transfer
                    ),
                    task_queue=request.queue(ActivityQueue.DB),
                    start_to_close_timeout=policies.DB_TIMEOUT,
                    retry_policy=policies.intent_credit(request.credit_max_attempts),
                )
                break
            except ActivityError as err:
                reraise_if_cancelled(err)
                state.status = "needs_attention"
                state.error = f"credit failed: {cause_message(err)}"
                if await self.park(state.error) is Decision.ABANDON:
                    state.status, state.error = "abandoned", self.abandon_reason
                    set_status(OperationStatus.ABANDONED)
                    return state
                state.status, state.error = "checking", None
        state.credited_now, state.received_minor = totals.credited_now, totals.received_minor
        state.status = "credited" if totals.credited_now else "already_credited"
        set_status(OperationStatus.SUCCEEDED)
        return state

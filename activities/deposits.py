"""Database activities of the M-Pesa deposit, on the ``db`` queue."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.job_log import add_line
from domain.mpesa import (
    CreditDepositInput,
    CreditDepositResult,
    DepositOutcomeInput,
    RaiseAlertInput,
    RecordConversionInput,
    RecordStkPushInput,
    StkCallback,
)
from runtime.logging import get_logger
from store import alerts, deposits

log = get_logger("activities.deposits")


class DepositActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="deposits.record_stk_push")
    async def record_stk_push(self, request: RecordStkPushInput) -> StkCallback | None:
        """Store the CheckoutRequestID so callbacks can find the deposit; hand back a callback that
        beat us to it (it was stored by the API, unmatched)."""
        async with self._sessions.begin() as session:
            early = await deposits.record_stk_push(
                session,
                request.deposit_id,
                request.merchant_request_id,
                request.checkout_request_id,
            )
            add_line(
                session,
                f"STK push accepted by Daraja: CheckoutRequestID {request.checkout_request_id}"
                + (" (its callback had already arrived)" if early is not None else ""),
            )
        return early

    @activity.defn(name="deposits.set_outcome")
    async def set_outcome(self, outcome: DepositOutcomeInput) -> str:
        """Persist a status change; returns the status the row ends with."""
        code = f" (ResultCode {outcome.result_code})" if outcome.result_code is not None else ""
        receipt = f", M-Pesa receipt {outcome.receipt}" if outcome.receipt else ""
        async with self._sessions.begin() as session:
            row = await deposits.set_outcome(session, outcome)
            add_line(
                session,
                f"deposit {outcome.status.value}{code}{receipt}",
                level="warning"
                if outcome.status.value in ("failed", "needs_attention")
                else "info",
            )
        return row.status

    @activity.defn(name="deposits.record_conversion")
    async def record_conversion(self, request: RecordConversionInput) -> None:
        """Keep the rate, the USDC amount and the transaction hash on the deposit row."""
        sent = f", transaction {request.usdc_tx_hash}" if request.usdc_tx_hash else ""
        async with self._sessions.begin() as session:
            await deposits.record_conversion(session, request)
            add_line(
                session,
                f"conversion recorded: {request.usdc_minor} USDC base units at "
                f"{request.fx_kes_per_usdc} KES/USDC{sent}",
            )

    @activity.defn(name="deposits.credit")
    async def credit(self, request: CreditDepositInput) -> CreditDepositResult:
        """Credit the portfolio exactly once (see :func:`store.deposits.credit`)."""
        async with self._sessions.begin() as session:
            result = await deposits.credit(session, request)
            add_line(
                session,
                ("portfolio already credited" if result.already_credited else "portfolio credited")
                + f": ledger entry {result.entry_id}",
            )
        log.info(
            "deposit credited" if not result.already_credited else "deposit already credited",
            deposit_id=request.deposit_id,
            entry_id=result.entry_id,
            key=result.idempotency_key,
        )
        return result

    @activity.defn(name="deposits.raise_alert")
    async def raise_alert(self, request: RaiseAlertInput) -> str:
        """Open an alert about this deposit (once per condition and reference); returns its id."""
        async with self._sessions.begin() as session:
            alert_id = await alerts.raise_event(session, request)
            add_line(
                session, f"alert {request.condition} raised (alert {alert_id})", level="warning"
            )
        log.warning(
            "alert raised", condition=request.condition, reference=request.reference, id=alert_id
        )
        return alert_id

"""M-Pesa deposits: initiate, status, and Daraja's callback.

HTTP only: the operations are :mod:`operations.mpesa_deposits`; Daraja's checks and answer are
in :mod:`api.daraja_results`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from api.daraja_results import CallbackAnswer, check_caller, json_body, read_status_result
from api.deps import ContextDep, CurrentUser
from api.errors import error_responses
from domain.errors import BadRequest, DarajaCallbackInvalid
from operations import mpesa_deposits
from operations.context import Context
from operations.mpesa_deposits_models import DepositAccepted, DepositView, InitiateDeposit
from providers.daraja import parse_stk_callback

router = APIRouter(prefix="/api/v1/deposit", tags=["mpesa-deposits"])


@router.post(
    "/initiate",
    status_code=202,
    response_model=DepositAccepted,
    responses=error_responses(400, 401, 409, 422, 503),
)
async def initiate(
    body: InitiateDeposit,
    principal: CurrentUser,
    ctx: ContextDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="repeat a request safely: the same key returns the same deposit",
        ),
    ] = None,
) -> DepositAccepted:
    """Start an M-Pesa deposit: the customer's phone gets an STK prompt for ``amount`` KES."""
    return await mpesa_deposits.start(ctx, principal, body, idempotency_key)


@router.get("/{deposit_id}", response_model=DepositView, responses=error_responses(401, 404))
async def get_deposit(deposit_id: str, principal: CurrentUser, ctx: ContextDep) -> DepositView:
    """A deposit of the caller's (or any deposit of the tenant, for an admin)."""
    return await mpesa_deposits.get(ctx, principal, deposit_id)


@router.post(
    "/mpesa-callback/{token}",
    response_model=CallbackAnswer,
    responses=error_responses(400, 403, 503),
    summary="Daraja STK callback (called by Safaricom, not by users)",
)
async def mpesa_callback(token: str, request: Request, ctx: ContextDep) -> CallbackAnswer:
    """Accept a Daraja callback and signal its deposit's workflow.

    Answers ``{"ResultCode": 0, "ResultDesc": "Accepted"}`` only once the signal is durable in
    Temporal. Duplicates are no-ops (the workflow keeps the first). A callback for a
    CheckoutRequestID not yet recorded is kept, and the workflow's recorder hands it over: the
    callback is kept and looked up under the CheckoutRequestID's lock, which the recorder takes
    too, so exactly one of the two delivers it (:func:`store.deposits.record_stk_push`). A
    success nobody recorded is an unmatched payment: offered to the deposit whose push attempt
    it answers, else open for an admin with an alert (``GET .../unmatched-payments``).
    """
    source = check_caller(token, request, ctx.settings, ctx.metrics)
    payload = await json_body(request, ctx.metrics)
    try:
        callback = parse_stk_callback(payload)
    except DarajaCallbackInvalid as exc:
        ctx.metrics.mpesa_callbacks.labels("malformed").inc()
        raise BadRequest(exc.message) from exc
    await mpesa_deposits.accept_callback(ctx, callback, source)
    return CallbackAnswer()


@router.post(
    "/mpesa-status-result/{token}/{deposit_id}",
    response_model=CallbackAnswer,
    responses=error_responses(400, 403, 404, 503),
    summary="Daraja Transaction Status result (ResultURL; called by Safaricom, not by users)",
)
async def transaction_status_result(
    token: str, deposit_id: str, request: Request, ctx: ContextDep
) -> CallbackAnswer:
    """Hand a Transaction Status result to its deposit's workflow (signal
    ``mpesa_transaction_status``). Protected like the STK callback (token, allow-list); the
    workflow uses a result only if its ConversationID is the one Daraja gave its own query."""
    return await _status_result(token, deposit_id, request, ctx, timed_out=False)


@router.post(
    "/mpesa-status-result/{token}/{deposit_id}/timeout",
    response_model=CallbackAnswer,
    responses=error_responses(400, 403, 404, 503),
    summary="Daraja Transaction Status queue timeout (QueueTimeOutURL; called by Safaricom)",
)
async def transaction_status_timeout(
    token: str, deposit_id: str, request: Request, ctx: ContextDep
) -> CallbackAnswer:
    """Daraja gave up on a Transaction Status query: the workflow asks again."""
    return await _status_result(token, deposit_id, request, ctx, timed_out=True)


async def _status_result(
    token: str, deposit_id: str, request: Request, ctx: Context, *, timed_out: bool
) -> CallbackAnswer:
    result = await read_status_result(
        token, request, ctx.settings, ctx.metrics, timed_out=timed_out
    )
    await mpesa_deposits.accept_status_result(ctx, deposit_id, result)
    return CallbackAnswer()

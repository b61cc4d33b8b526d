"""Record workflow histories for the replay test: ``python -m tests.histories.record``.

Records only the scenarios whose file is missing: histories of an old shape are what running
executions of that shape look like, and must never be re-recorded. When a workflow gains a new
shape (behind ``workflow.patched``), add scenarios for it here and run this again.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.fx import FxQuote
from domain.mpesa import (
    DepositStatus,
    DepositStep,
    MpesaDepositConfig,
    MpesaDepositInput,
    MpesaDepositState,
    StkQueryResult,
)
from domain.payouts import PayoutAnswer
from domain.search import ALL_KEYS, OperationKind, start_attributes
from runtime.devserver import temporal_cli
from tests.fixtures.temporal import new_prefix, running_workers
from tests.unit.test_mpesa_deposit_workflow import (
    BATCHING,
    CHECKOUT,
    WALLET,
    FakeMpesa,
    failure,
    initiation_quote,
    lost_answer,
    success,
)
from workflows.mpesa_deposit import MpesaDeposit

HERE = Path(__file__).parent
Handle = WorkflowHandle[MpesaDeposit, MpesaDepositState]


async def _until(handle: Handle, predicate: Callable[[MpesaDepositState], bool]) -> None:
    for _ in range(500):
        if predicate(await handle.query(MpesaDeposit.status)):
            return
        await asyncio.sleep(0.02)
    raise TimeoutError


async def _callback(handle: Handle) -> None:
    await _until(handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK)
    await handle.signal(MpesaDeposit.mpesa_callback, success())
    await handle.signal(MpesaDeposit.mpesa_callback, success())


async def _nothing(handle: Handle) -> None:
    return None


async def _adopt_lost_push(handle: Handle) -> None:
    await _until(handle, lambda s: s.step == DepositStep.RESOLVE_PUSH)
    await handle.signal(
        MpesaDeposit.mpesa_callback,
        success().model_copy(update={"checkout_request_id": "ws_CO_LOST"}),
    )


async def _cancelled(handle: Handle) -> None:
    await _until(handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK)
    await handle.signal(MpesaDeposit.mpesa_callback, failure(1032, "Request cancelled by user"))


async def _mismatch_then_retry(handle: Handle) -> None:
    await _until(handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK)
    await handle.signal(
        MpesaDeposit.mpesa_callback, success().model_copy(update={"amount_minor": 100})
    )
    await _until(handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION)
    await handle.signal(MpesaDeposit.retry)


async def _park_then_retry(handle: Handle) -> None:
    await _callback(handle)
    await _until(handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION)
    await handle.signal(MpesaDeposit.retry)


@dataclass
class Scenario:
    fake: Callable[[], FakeMpesa]
    drive: Callable[[Handle], Awaitable[None]]
    config: MpesaDepositConfig
    wallet: str | None = None
    quote: Callable[[], FxQuote] | None = None


def _treasury_short_reverted() -> Any:
    return ApplicationError(
        "treasury holds 0.000000 USDC, needs 1.162790 (transaction 0xabc (nonce 3) reverted)",
        type="TreasuryShort",
        non_retryable=True,
    )


def _reverted() -> Any:
    return ApplicationError("reverted", type="EvmReverted", non_retryable=True)


SCENARIOS: dict[str, Scenario] = {
    # v1: before the on-chain leg
    "v1_callback_success": Scenario(FakeMpesa, _callback, MpesaDepositConfig()),
    "v1_query_success": Scenario(
        lambda: FakeMpesa(
            query_answers=[
                StkQueryResult(checkout_request_id=CHECKOUT, pending=True),
                StkQueryResult(checkout_request_id=CHECKOUT, result_code=0),
            ]
        ),
        _nothing,
        MpesaDepositConfig(callback_wait_seconds=0.5, query_interval_seconds=0.2),
    ),
    "v1_parked_then_retried": Scenario(
        lambda: FakeMpesa(credit_failures=2),
        _park_then_retry,
        MpesaDepositConfig(credit_max_attempts=2, credit_initial_interval_seconds=0.1),
    ),
    "v1_query_cancelled": Scenario(
        lambda: FakeMpesa(
            query_answers=[
                StkQueryResult(
                    checkout_request_id=CHECKOUT,
                    result_code=1032,
                    result_desc="Request cancelled by user",
                )
            ]
        ),
        _nothing,
        MpesaDepositConfig(callback_wait_seconds=0.3),
    ),
    # v2: the USDC leg (patch "mpesa-deposit-usdc-leg")
    "v2_usdc_leg_success": Scenario(FakeMpesa, _callback, MpesaDepositConfig(), WALLET),
    "v2_usdc_reverted_then_retried": Scenario(
        lambda: FakeMpesa(confirm_errors=[_reverted()]),
        _park_then_retry,
        MpesaDepositConfig(),
        WALLET,
    ),
    # v3: callbacks confirmed with Daraja, lost pushes resolved, the initiation's FX quote
    # (patch "mpesa-deposit-verified-payment")
    "v3_verified_callback_with_quote": Scenario(
        FakeMpesa,
        _callback,
        MpesaDepositConfig(),
        WALLET,
        lambda: initiation_quote("125.00", 1_200_000, timedelta(hours=1)),
    ),
    "v3_lost_push_adopted": Scenario(
        lambda: FakeMpesa(push_errors=[lost_answer()]),
        _adopt_lost_push,
        MpesaDepositConfig(),
        WALLET,
    ),
    "v3_cancel_callback_confirmed": Scenario(
        lambda: FakeMpesa(truth=1032), _cancelled, MpesaDepositConfig(), WALLET
    ),
    "v3_mismatch_parked_then_retried": Scenario(
        FakeMpesa, _mismatch_then_retry, MpesaDepositConfig(), WALLET
    ),
    # v4: a short treasury waits with an alert, then parks (patch "mpesa-deposit-treasury-wait")
    "v4_treasury_short_waited": Scenario(
        lambda: FakeMpesa(short_transfers=2, confirm_errors=[_treasury_short_reverted()]),
        _callback,
        MpesaDepositConfig(treasury_short_initial_interval_seconds=0.2),
        WALLET,
    ),
    "v4_treasury_short_parked_then_retried": Scenario(
        lambda: FakeMpesa(short_transfers=3),
        _park_then_retry,
        MpesaDepositConfig(
            treasury_short_max_wait_seconds=1.0,
            treasury_short_initial_interval_seconds=0.3,
            treasury_short_max_interval_seconds=0.5,
        ),
        WALLET,
    ),
    # v5: the ids the deposit learns go into SettleRefs (patch "settle-refs")
    "v5_refs_usdc_leg_success": Scenario(
        FakeMpesa,
        _callback,
        MpesaDepositConfig(),
        WALLET,
        lambda: initiation_quote("125.00", 1_200_000, timedelta(hours=1)),
    ),
    "v5_refs_usdc_reverted_then_retried": Scenario(
        lambda: FakeMpesa(confirm_errors=[_reverted()]),
        _park_then_retry,
        MpesaDepositConfig(),
        WALLET,
    ),
    # v6: the outcome and a parking are pushed as events (patches "mpesa-deposit-events",
    # "emit-job-parked")
    "v6_events_credited": Scenario(FakeMpesa, _callback, MpesaDepositConfig(), WALLET),
    "v6_events_parked_then_retried": Scenario(
        lambda: FakeMpesa(credit_failures=2),
        _park_then_retry,
        MpesaDepositConfig(credit_max_attempts=2, credit_initial_interval_seconds=0.1),
        WALLET,
    ),
    "v6_events_query_cancelled": Scenario(
        lambda: FakeMpesa(
            query_answers=[
                StkQueryResult(
                    checkout_request_id=CHECKOUT, result_code=1032, result_desc="cancelled"
                )
            ]
        ),
        _nothing,
        MpesaDepositConfig(callback_wait_seconds=0.3),
    ),
    # v7: bookkeeping as local activities first (patch "bookkeeping-local-first")
    "v7_local_bookkeeping_credited": Scenario(FakeMpesa, _callback, MpesaDepositConfig(), WALLET),
    "v7_local_bookkeeping_parked_then_retried": Scenario(
        lambda: FakeMpesa(credit_failures=2),
        _park_then_retry,
        MpesaDepositConfig(credit_max_attempts=2, credit_initial_interval_seconds=0.1),
        WALLET,
    ),
    # v6: batched payouts (patch "mpesa-deposit-payout-batch")
    "v6_payout_batch_paid": Scenario(
        lambda: FakeMpesa(
            batch_answer=PayoutAnswer(
                paid=True,
                batch_key="payout-batch:abc",
                tx_hash="0xbatch",
                block_number=50,
                log_index=3,
                batch_size=7,
            )
        ),
        _callback,
        BATCHING,
        WALLET,
    ),
    "v6_payout_batch_fell_back": Scenario(
        lambda: FakeMpesa(
            batch_answer=PayoutAnswer(
                paid=False, batch_key="payout-batch:abc", error="EvmReverted: reverted"
            )
        ),
        _callback,
        BATCHING,
        WALLET,
    ),
}


async def record(name: str, scenario: Scenario, env: WorkflowEnvironment) -> None:
    fake = scenario.fake()
    fake.client = env.client
    prefix = new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[MpesaDeposit], activities=fake.activities()
    ) as queue:
        deposit_id = str(uuid.uuid4())
        handle = await env.client.start_workflow(
            MpesaDeposit.run,
            MpesaDepositInput(
                deposit_id=deposit_id,
                tenant="t1",
                user_id="u1",
                subject="alice",
                phone="254708374149",
                amount_minor=15000,
                account_reference="Settle",
                config=scenario.config,
                task_queue_prefix=prefix,
                wallet_address=scenario.wallet,
                quote=scenario.quote() if scenario.quote else None,
            ),
            id=f"mpesa-deposit-{deposit_id}",
            task_queue=queue,
            search_attributes=start_attributes(OperationKind.MPESA_DEPOSIT, "t1", "alice"),
        )
        await scenario.drive(handle)
        await handle.result()
        history = await handle.fetch_history()
    target = HERE / "mpesa_deposit" / f"{name}.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(history.to_json())
    print(f"recorded {target}")


async def main() -> None:
    missing = {
        n: s for n, s in SCENARIOS.items() if not (HERE / "mpesa_deposit" / f"{n}.json").exists()
    }
    if not missing:
        print("every scenario is recorded already")
        return
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_cli(),
        search_attributes=ALL_KEYS,
    )
    async with env:
        for name, scenario in missing.items():
            await record(name, scenario, env)


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)

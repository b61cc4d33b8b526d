"""The wallet writer: every transaction from the treasury goes through here (queue ``evm-write``).

One writer per wallet, as a nonce allocator under a database lock rather than an entity workflow:
workflows cannot send updates to other workflows, so an entity writer would need update-with-start
from inside activities plus a second copy of its state in history; a locked row does the same job
for any number of worker processes and is easy to inspect.

* ``evm.submit`` takes the wallet row's lock, hands out the next nonce, signs, stores the signed
  transaction under the caller's idempotency key, commits, and only then broadcasts. A retry (after
  a crash, a timeout, anything) finds the key and re-broadcasts the same signed bytes, so one key is
  one transaction: never two.
* ``evm.cancel`` makes sure a transaction its caller gave up on can never land later unnoticed:
  when it is not mined yet, it is replaced by a 0-value transfer to the treasury itself with the
  same nonce (fees bumped like any replacement) and that is waited for; when it was mined first,
  its receipt is reported instead (the caller's status follows it).
* ``evm.await_confirmations`` waits (heartbeating) for a receipt and the required confirmations,
  checking that the block is still canonical; re-broadcasts a transaction the node forgot; replaces
  one not mined within ``EVM_STUCK_AFTER_SECONDS`` with fees at least ``EVM_FEE_BUMP_PERCENT``
  (12.5 %) higher, same nonce; and re-broadcasts our lower-nonce transactions that block it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from domain.errors import EvmRejected, EvmReverted, TreasuryShort
from domain.evm import (
    AwaitTxInput,
    CancelOutcome,
    CancelTxInput,
    SubmittedTx,
    SubmitTxInput,
    TransferUsdcInput,
    TxReceipt,
)
from domain.money import Currency, format_minor
from providers.evm import EvmClient, FeeQuote, LocalSigner
from providers.evm.client import GWEI, EvmAlreadyKnown, EvmNonceTooLow, EvmUnderpriced
from providers.evm.erc20 import Erc20, transfer_calldata
from providers.evm.revert import DecodedRevert
from runtime.logging import get_logger
from store import evm as records
from store.db import reads_of
from store.models import EvmTransaction, EvmTxAttempt, new_id

log = get_logger("activities.evm")


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


#: gas of a plain transfer with no data: what a cancel costs
CANCEL_GAS = 21_000


def _is_cancel(tx: EvmTransaction, wallet: str) -> bool:
    """A transaction whose payload was turned into a 0-value transfer to ourselves."""
    return tx.to_address.lower() == wallet.lower() and tx.data in ("", "0x") and tx.value == "0"


def _to_self(receipt: dict[str, Any], writer: EvmWriteActivities) -> bool:
    """Whether a mined transaction of ours went to ourselves (only a cancel does)."""
    return str(receipt.get("to") or "").lower() == writer.address.lower()


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def treasury_short(balance: int, needed: int) -> TreasuryShort:
    """The readable shortfall: "treasury holds 0.000000 USDC, needs 1.162790"."""
    return TreasuryShort(
        f"treasury holds {format_minor(balance, Currency.USDC)} USDC, "
        f"needs {format_minor(needed, Currency.USDC)}",
        balance=balance,
        needed=needed,
    )


def _short_from(error: EvmReverted) -> TreasuryShort | None:
    """MockUSDC's (and any token's) ``InsufficientBalance(balance, needed)`` as a shortfall."""
    decoded = error.revert
    if isinstance(decoded, DecodedRevert) and decoded.name == "InsufficientBalance":
        values = list(decoded.args.values())
        if len(values) == 2 and all(isinstance(v, int) for v in values):
            return treasury_short(values[0], values[1])
    return None


class WriterConfig:
    def __init__(
        self,
        *,
        usdc_address: str,
        stuck_after_seconds: float = 30.0,
        fee_bump_percent: float = 12.5,
        priority_fee_gwei: float | None = None,
        max_fee_gwei: float = 500.0,
        poll_interval_seconds: float = 1.0,
    ) -> None:
        if fee_bump_percent < 12.5:
            raise ValueError(
                "EVM_FEE_BUMP_PERCENT must be at least 12.5 (nodes refuse smaller bumps)"
            )
        self.usdc_address = to_checksum_address(usdc_address)
        self.stuck_after = timedelta(seconds=stuck_after_seconds)
        self.fee_bump_percent = fee_bump_percent
        self.priority_fee_gwei = priority_fee_gwei
        self.max_fee_wei = int(max_fee_gwei * GWEI)
        self.max_fee_gwei = max_fee_gwei
        self.poll_interval_seconds = poll_interval_seconds


@dataclass(frozen=True)
class _Signed:
    """What :meth:`EvmWriteActivities._allocate_and_sign` committed (or found under the key)."""

    tx_id: str
    nonce: int
    tx_hash: str
    raw: str
    already: bool = False
    attempt_id: str = ""


class EvmWriteActivities:
    def __init__(
        self,
        client: EvmClient,
        signer: LocalSigner,
        sessions: async_sessionmaker[AsyncSession],
        config: WriterConfig,
    ) -> None:
        self._client = client
        self._signer = signer
        self._sessions = sessions
        self._reads = reads_of(sessions)
        self._config = config

    @property
    def address(self) -> str:
        return self._signer.address

    # --- submit --------------------------------------------------------------------------------

    @activity.defn(name="evm.transfer_usdc")
    async def transfer_usdc(self, request: TransferUsdcInput) -> SubmittedTx:
        """Send USDC from the treasury: an ERC-20 transfer submitted through :meth:`submit`."""
        if not is_address(request.to):
            raise EvmRejected(f"not an EVM address: {request.to!r}")
        async with self._reads() as session:
            known = await records.by_key(session, request.idempotency_key)
        if known is None:
            # a short treasury is found before anything is signed: no nonce taken, no gas burnt
            await self._client.ensure_chain()
            balance = await Erc20(self._client, self._config.usdc_address).balance_of(self.address)
            if balance < request.amount_minor:
                short = treasury_short(balance, request.amount_minor)
                log.warning("treasury short", key=request.idempotency_key, error=short.message)
                raise short
        try:
            return await self.submit(
                SubmitTxInput(
                    idempotency_key=request.idempotency_key,
                    to=self._config.usdc_address,
                    data=transfer_calldata(to_checksum_address(request.to), request.amount_minor),
                    purpose=request.purpose,
                )
            )
        except EvmReverted as err:
            # the gas estimate reverted (the balance moved since the check): same shortfall
            shortfall = _short_from(err)
            if shortfall is not None:
                raise shortfall from err
            raise

    @activity.defn(name="evm.submit")
    async def submit(self, request: SubmitTxInput) -> SubmittedTx:
        await self._client.ensure_chain()
        async with self._reads() as session:
            known = await records.by_key(session, request.idempotency_key)
        if known is not None:
            if _is_cancel(known, self.address) and request.to.lower() != self.address.lower():
                raise EvmRejected(
                    f"the transaction under {request.idempotency_key!r} was cancelled "
                    f"(nonce {known.nonce}); send again under a new key"
                )
            await self._rebroadcast(known.id)
            return SubmittedTx(
                idempotency_key=request.idempotency_key,
                tx_hash=known.current_hash,
                nonce=known.nonce,
                already_submitted=True,
            )
        to = to_checksum_address(request.to)
        # gas and fees do not depend on the nonce: asked together, before taking the lock
        fees_asked = asyncio.ensure_future(self._fees())
        try:
            gas = request.gas_limit or int(
                await self._client.estimate_gas(
                    {
                        "from": self.address,
                        "to": to,
                        "data": request.data,
                        "value": hex(request.value),
                    }
                )
                * 1.2
            )
        except BaseException:
            fees_asked.cancel()
            raise
        fees = await fees_asked
        signed = await self._allocate_and_sign(request, to, gas, fees)
        if signed.already:
            await self._rebroadcast(signed.tx_id)
        else:
            # the bytes just committed: sent as they are, without reading them back
            await self._broadcast_new(signed)
        log.info(
            "transaction submitted",
            key=request.idempotency_key,
            nonce=signed.nonce,
            tx_hash=signed.tx_hash,
            purpose=request.purpose,
        )
        return SubmittedTx(
            idempotency_key=request.idempotency_key,
            tx_hash=signed.tx_hash,
            nonce=signed.nonce,
            already_submitted=signed.already,
        )

    async def _allocate_and_sign(
        self, request: SubmitTxInput, to: str, gas: int, fees: FeeQuote
    ) -> _Signed:
        """Under the wallet's lock: the next nonce, signed and stored with the key. Committed
        before anything is broadcast, so a crash can only lead to re-broadcasting these bytes.

        The lock is held from the wallet's ``SELECT ... FOR UPDATE`` to the commit, so that span
        does as few round trips as it can: the transaction and its signed attempt are written in
        the commit's one flush (ids made here, not by a flush in between)."""
        async with self._sessions.begin() as session:
            wallet = await records.lock_wallet(session, self._client.chain_id, self.address)
            raced = await records.by_key(session, request.idempotency_key)
            if raced is not None:
                return _Signed(raced.id, raced.nonce, raced.current_hash, "", already=True)
            if wallet.next_nonce is None:
                wallet.next_nonce = await self._client.nonce(self.address, "pending")
            nonce = wallet.next_nonce
            wallet.next_nonce = nonce + 1
            tx = EvmTransaction(
                id=new_id(),
                wallet_id=wallet.id,
                idempotency_key=request.idempotency_key,
                purpose=request.purpose or None,
                nonce=nonce,
                to_address=to,
                data=request.data,
                value=str(request.value),
                gas_limit=gas,
                status=records.SIGNED,
                current_hash="",
            )
            attempt = self._sign_attempt(tx, fees)
            attempt.id = new_id()
            tx.current_hash = attempt.tx_hash
            session.add_all([tx, attempt])
            return _Signed(tx.id, nonce, attempt.tx_hash, attempt.raw, attempt_id=attempt.id)

    async def _broadcast_new(self, signed: _Signed) -> None:
        """A first broadcast of freshly signed bytes; anything unusual (the node refuses or
        already has them) takes the general path, which reads the stored state."""
        try:
            await self._client.send_raw(signed.raw)
        except (EvmAlreadyKnown, EvmNonceTooLow, EvmUnderpriced):
            await self._rebroadcast(signed.tx_id)
            return
        async with self._sessions.begin() as session:
            tx = await session.get(EvmTransaction, signed.tx_id)
            stored = await session.get(EvmTxAttempt, signed.attempt_id)
            assert tx is not None and stored is not None
            records.mark_broadcast(stored, tx)

    def _sign_attempt(self, tx: EvmTransaction, fees: FeeQuote) -> EvmTxAttempt:
        signed = self._signer.sign(
            {
                "type": 2,
                "chainId": self._client.chain_id,
                "nonce": tx.nonce,
                "to": tx.to_address,
                "data": tx.data,
                "value": int(tx.value),
                "gas": tx.gas_limit,
                "maxFeePerGas": fees.max_fee_per_gas,
                "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
            }
        )
        return EvmTxAttempt(
            transaction_id=tx.id,
            tx_hash=signed.hash,
            raw=signed.raw,
            max_fee_per_gas=str(fees.max_fee_per_gas),
            max_priority_fee_per_gas=str(fees.max_priority_fee_per_gas),
        )

    async def _fees(self) -> FeeQuote:
        return await self._client.fee_quote(
            priority_gwei=self._config.priority_fee_gwei, max_fee_gwei=self._config.max_fee_gwei
        )

    # --- broadcast and replacement -------------------------------------------------------------

    async def _rebroadcast(self, tx_id: str) -> None:
        """Send the latest signed attempt; a node that already has it, or mined it, is fine."""
        async with self._reads() as session:
            tx = await session.get(EvmTransaction, tx_id)
            assert tx is not None
            if tx.status not in (records.SIGNED, records.BROADCAST):
                return
            attempt = await records.latest_attempt(session, tx.id)
        try:
            await self._client.send_raw(attempt.raw)
        except EvmAlreadyKnown:
            pass
        except EvmNonceTooLow:
            if not await self._any_attempt_mined(tx_id):
                raise EvmRejected(
                    f"nonce {tx.nonce} of {self.address} was used by a transaction Settle did not "
                    "send: the treasury key must be used by Settle alone"
                ) from None
        except EvmUnderpriced:
            # fees moved above what we signed (a base-fee spike): replace right away
            await self._replace(tx_id)
            return
        async with self._sessions.begin() as session:
            tx = await session.get(EvmTransaction, tx_id)
            stored = await session.get(EvmTxAttempt, attempt.id)
            assert tx is not None and stored is not None
            records.mark_broadcast(stored, tx)

    async def _any_attempt_mined(self, tx_id: str) -> bool:
        async with self._reads() as session:
            hashes = [a.tx_hash for a in await records.attempts(session, tx_id)]
        for tx_hash in hashes:
            if await self._client.receipt(tx_hash) is not None:
                return True
        return False

    async def _replace(self, tx_id: str) -> None:
        """Same nonce, fees raised by at least the bump (or to today's quote if that is higher)."""
        async with self._sessions.begin() as session:
            tx = await session.get(EvmTransaction, tx_id)
            assert tx is not None
            latest = await records.latest_attempt(session, tx.id)
            previous = FeeQuote(int(latest.max_fee_per_gas), int(latest.max_priority_fee_per_gas))
            bumped = previous.bumped(self._config.fee_bump_percent, self._config.max_fee_wei)
            fresh = await self._fees()
            fees = FeeQuote(
                max(bumped.max_fee_per_gas, fresh.max_fee_per_gas),
                max(bumped.max_priority_fee_per_gas, fresh.max_priority_fee_per_gas),
            )
            attempt = self._sign_attempt(tx, fees)
            session.add(attempt)
            tx.current_hash = attempt.tx_hash
            log.warning(
                "replacing a stuck transaction",
                key=tx.idempotency_key,
                nonce=tx.nonce,
                old_hash=latest.tx_hash,
                new_hash=attempt.tx_hash,
                max_fee=fees.max_fee_per_gas,
                previous_max_fee=previous.max_fee_per_gas,
            )
        try:
            await self._client.send_raw(attempt.raw)
        except (EvmAlreadyKnown, EvmUnderpriced):
            return  # an underpriced replacement is bumped again on the next round
        except EvmNonceTooLow:
            return  # an earlier attempt got mined meanwhile: the receipt check will see it
        async with self._sessions.begin() as session:
            stored = await session.get(EvmTxAttempt, attempt.id)
            tx = await session.get(EvmTransaction, tx_id)
            assert stored is not None and tx is not None
            records.mark_broadcast(stored, tx)

    # --- cancellation --------------------------------------------------------------------------

    @activity.defn(name="evm.cancel")
    async def cancel(self, request: CancelTxInput) -> CancelOutcome:
        """Settle the fate of the transaction under the key: replace it, if it is not mined yet,
        with a 0-value self-transfer of the same nonce, and wait until one of the two has its
        confirmations. Heartbeats; a retry resumes (the replacement is stored like any attempt).
        """
        await self._client.ensure_chain()
        key = request.idempotency_key
        confirm = AwaitTxInput(
            idempotency_key=key,
            confirmations=request.confirmations,
            use_safe_tag=request.use_safe_tag,
        )
        while True:
            async with self._reads() as session:
                tx = await records.by_key(session, key)
                if tx is None:
                    return CancelOutcome(idempotency_key=key, outcome="never_submitted")
                tx_id, nonce = tx.id, tx.nonce
                cancelling = _is_cancel(tx, self.address)
                attempts = await records.attempts(session, tx.id)
            activity.heartbeat({"nonce": nonce, "attempts": len(attempts)})
            receipt = await self._mined_receipt(attempts)
            if receipt is not None:
                landed = not _to_self(receipt, self)
                try:
                    done = await self._confirmed(tx_id, receipt, confirm)
                except (EvmReverted, TreasuryShort):
                    return CancelOutcome(
                        idempotency_key=key,
                        outcome="reverted",
                        nonce=nonce,
                        tx_hash=str(receipt["transactionHash"]),
                    )
                if done is not None:
                    if landed:
                        log.warning("a transaction being cancelled landed", key=key, nonce=nonce)
                    return CancelOutcome(
                        idempotency_key=key,
                        outcome="landed" if landed else "cancelled",
                        nonce=nonce,
                        tx_hash=done.tx_hash,
                        receipt=done if landed else None,
                    )
            elif not cancelling:
                await self._sign_cancel(tx_id)
                await self._rebroadcast(tx_id)
            else:
                await self._keep_moving(tx_id, attempts)
            await asyncio.sleep(self._config.poll_interval_seconds)

    async def _sign_cancel(self, tx_id: str) -> None:
        """The transaction's payload becomes a 0-value transfer to ourselves, signed with fees
        bumped over its last attempt (a node replaces a pending transaction only then); from now
        on every re-broadcast or replacement at this nonce sends the cancel."""
        async with self._sessions.begin() as session:
            await records.lock_wallet(session, self._client.chain_id, self.address)
            tx = await session.get(EvmTransaction, tx_id)
            assert tx is not None
            if _is_cancel(tx, self.address) or tx.status not in (
                records.SIGNED,
                records.BROADCAST,
            ):
                return
            latest = await records.latest_attempt(session, tx.id)
            previous = FeeQuote(int(latest.max_fee_per_gas), int(latest.max_priority_fee_per_gas))
            bumped = previous.bumped(self._config.fee_bump_percent, self._config.max_fee_wei)
            fresh = await self._fees()
            fees = FeeQuote(
                max(bumped.max_fee_per_gas, fresh.max_fee_per_gas),
                max(bumped.max_priority_fee_per_gas, fresh.max_priority_fee_per_gas),
            )
            tx.to_address, tx.data, tx.value, tx.gas_limit = self.address, "0x", "0", CANCEL_GAS
            tx.purpose = f"cancel:{tx.purpose or ''}"[:64]
            attempt = self._sign_attempt(tx, fees)
            session.add(attempt)
            tx.current_hash = attempt.tx_hash
            log.warning(
                "cancelling a transaction: same nonce, 0-value self-transfer",
                key=tx.idempotency_key,
                nonce=tx.nonce,
                old_hash=latest.tx_hash,
                cancel_hash=attempt.tx_hash,
            )

    # --- confirmations -------------------------------------------------------------------------

    @activity.defn(name="evm.await_confirmations")
    async def await_confirmations(self, request: AwaitTxInput) -> TxReceipt:
        """Until the transaction has ``confirmations`` blocks on top (or is under the safe tag).

        Heartbeats every round; a retry simply resumes, all state is in the database.
        """
        await self._client.ensure_chain()
        while True:
            async with self._reads() as session:
                tx = await records.by_key(session, request.idempotency_key)
                if tx is None:
                    raise EvmRejected(
                        f"no transaction was submitted for {request.idempotency_key!r}"
                    )
                tx_id = tx.id
                attempts = await records.attempts(session, tx.id)
            activity.heartbeat({"nonce": tx.nonce, "attempts": len(attempts)})
            receipt = await self._mined_receipt(attempts)
            if receipt is not None and _is_cancel(tx, self.address) and _to_self(receipt, self):
                raise EvmRejected(
                    f"the transaction under {request.idempotency_key!r} was cancelled "
                    f"(nonce {tx.nonce}): a 0-value self-transfer took its nonce"
                )
            if receipt is not None:
                done = await self._confirmed(tx_id, receipt, request)
                if done is not None:
                    return done
            else:
                await self._keep_moving(tx_id, attempts)
            await asyncio.sleep(self._config.poll_interval_seconds)

    async def _mined_receipt(self, attempts: list[EvmTxAttempt]) -> dict[str, Any] | None:
        for attempt in attempts:
            receipt = await self._client.receipt(attempt.tx_hash)
            if receipt is not None:
                return receipt
        return None

    async def _confirmed(
        self, tx_id: str, receipt: dict[str, Any], request: AwaitTxInput
    ) -> TxReceipt | None:
        block_number = _int(receipt["blockNumber"])
        block_hash = str(receipt["blockHash"])
        call: dict[str, Any] = {}
        if await self._client.block_hash(block_number) != block_hash:
            return None  # reorged out: wait for it to be mined again
        async with self._sessions.begin() as session:
            tx = await session.get(EvmTransaction, tx_id)
            assert tx is not None
            if _int(receipt["status"]) != 1:
                tx.status = records.REVERTED
                tx.mined_hash = str(receipt["transactionHash"])
                tx.block_number, tx.block_hash = block_number, block_hash
                reverted = EvmReverted(f"transaction {tx.mined_hash} (nonce {tx.nonce}) reverted")
                call = {"from": self.address, "to": tx.to_address, "data": tx.data}
            else:
                reverted = None
                if tx.status in (records.SIGNED, records.BROADCAST):
                    tx.status = records.MINED
                tx.mined_hash = str(receipt["transactionHash"])
                tx.block_number, tx.block_hash = block_number, block_hash
        if reverted is not None:
            raise await self._why_reverted(reverted, call, block_number)
        if request.use_safe_tag:
            final = await self._client.tagged_number("safe")
            confirmations = max(0, await self._client.block_number() - block_number + 1)
            if final < block_number:
                return None
        else:
            confirmations = await self._client.block_number() - block_number + 1
            if confirmations < request.confirmations:
                return None
        async with self._sessions.begin() as session:
            tx = await session.get(EvmTransaction, tx_id)
            assert tx is not None
            tx.status = records.CONFIRMED
            replacements = len(await records.attempts(session, tx.id)) - 1
            log.info(
                "transaction confirmed",
                key=tx.idempotency_key,
                tx_hash=tx.mined_hash,
                block=block_number,
            )
            return TxReceipt(
                idempotency_key=tx.idempotency_key,
                tx_hash=str(tx.mined_hash),
                nonce=tx.nonce,
                block_number=block_number,
                block_hash=block_hash,
                confirmations=confirmations,
                replacements=replacements,
                gas_used=_int(receipt.get("gasUsed", 0)),
                effective_gas_price=_int(receipt.get("effectiveGasPrice", 0)),
            )

    async def _why_reverted(
        self, reverted: EvmReverted, call: dict[str, Any], block_number: int
    ) -> Exception:
        """The mined revert with its reason: the call replayed on the state before its block
        (best effort), decoded by the project's ABIs; a short treasury becomes TreasuryShort."""
        try:
            await self._client.rpc("eth_call", [call, hex(max(block_number - 1, 0))])
        except EvmReverted as replayed:
            reason = replayed.revert
            if isinstance(reason, DecodedRevert):
                reverted = EvmReverted(f"{reverted.message}: {reason}")
                reverted.revert = reason
                short = _short_from(reverted)
                if short is not None:
                    return TreasuryShort(
                        f"{short.message} ({reverted.message})",
                        balance=short.balance,
                        needed=short.needed,
                    )
        except Exception:  # the reason is a courtesy: the revert itself is what counts
            log.info("could not replay a reverted transaction", exc_info=True)
        return reverted

    async def _keep_moving(self, tx_id: str, attempts: list[EvmTxAttempt]) -> None:
        """Not mined yet: re-broadcast if forgotten (with the lower nonces that block it), and
        once it is stuck, unblock lower nonces or replace it.

        A transaction the node holds and that is not stuck yet is left alone: it is waiting for
        its block like every other. (Re-broadcasting every lower nonce on every poll made each
        round cost one broadcast and two transactions per transaction in flight, quadratic in a
        burst; the lower nonces' own waits keep them moving, this is for the ones nobody waits
        on.)"""
        latest = attempts[0]
        known = await self._client.transaction(latest.tx_hash) is not None
        sent_at = _as_utc(latest.broadcast_at or latest.created_at)
        stuck = datetime.now(UTC) - sent_at >= self._config.stuck_after
        if known and not stuck:
            return
        async with self._reads() as session:
            tx = await session.get(EvmTransaction, tx_id)
            assert tx is not None
            blockers = await records.open_below(session, tx.wallet_id, tx.nonce)
        for blocker in blockers:
            await self._rebroadcast(blocker.id)
        if not known:
            await self._rebroadcast(tx_id)
            return
        if not blockers:
            await self._replace(tx_id)

"""Tables. Money columns are ``BigInteger`` minor units; ids are UUID strings.

The constraint naming convention keeps Alembic migrations stable.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A caller known by the (tenant, subject) pair of its JWT."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant", "subject"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Wallet(Base):
    """A user's address on a chain, where on-chain value is sent to them."""

    __tablename__ = "wallets"
    __table_args__ = (UniqueConstraint("user_id", "chain", "address"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    chain: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Account(Base):
    """A ledger account: a user's portfolio in one currency, or a system account.

    ``balance_minor`` is a cache updated in the same transaction as the postings; the postings
    are the truth and a check compares the two.
    """

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("owner_type", "owner_id", "kind", "currency"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str | None] = mapped_column(String(64))
    owner_type: Mapped[str] = mapped_column(String(16))  # "user" | "system"
    owner_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # "portfolio", "mpesa_float", ...
    currency: Mapped[str] = mapped_column(String(8))
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerEntry(Base):
    """A balanced set of postings. The idempotency key makes replaying a step a no-op."""

    __tablename__ = "ledger_entries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Posting(Base):
    """One leg of an entry: positive raises the account's balance, negative lowers it."""

    __tablename__ = "postings"
    __table_args__ = (Index("ix_postings_account_id", "account_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    entry_id: Mapped[str] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8))


class MpesaDeposit(Base):
    __tablename__ = "mpesa_deposits"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    phone: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8), default="KES")
    status: Mapped[str] = mapped_column(String(32))
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    #: the caller's Idempotency-Key header, if any (the id is derived from it)
    request_key: Mapped[str | None] = mapped_column(String(255))
    merchant_request_id: Mapped[str | None] = mapped_column(String(64))
    checkout_request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    mpesa_receipt: Mapped[str | None] = mapped_column(String(32), unique=True)
    result_code: Mapped[int | None] = mapped_column(Integer)
    result_desc: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    ledger_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))
    #: the on-chain leg: where the USDC goes, how much, at what rate, in which transaction
    wallet_address: Mapped[str | None] = mapped_column(String(42))
    usdc_minor: Mapped[int | None] = mapped_column(BigInteger)
    fx_kes_per_usdc: Mapped[str | None] = mapped_column(String(32))
    usdc_tx_hash: Mapped[str | None] = mapped_column(String(66))
    #: the deposit's Transfer log in that transaction: a batched payout shares its transaction
    #: with other deposits (empty: a transaction of its own)
    usdc_log_index: Mapped[int | None] = mapped_column(Integer)
    #: the FX quote given to the caller at initiation (honoured until it expires)
    fx_quote_kes_per_usdc: Mapped[str | None] = mapped_column(String(32))
    fx_quote_usdc_minor: Mapped[int | None] = mapped_column(BigInteger)
    fx_quote_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class MpesaCallbackRecord(Base):
    """The first Daraja callback received for a CheckoutRequestID, kept for audit and for the
    rare callback that arrives before the workflow recorded its CheckoutRequestID."""

    __tablename__ = "mpesa_callbacks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    checkout_request_id: Mapped[str] = mapped_column(String(64), unique=True)
    result_code: Mapped[int] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MpesaPushAttempt(Base):
    """One STK push that may have reached Daraja, written before the request leaves: a push whose
    answer was lost (the worker died, a timeout) is resolved from this row, never repeated
    blindly (:mod:`store.push_attempts`)."""

    __tablename__ = "mpesa_push_attempts"

    deposit_id: Mapped[str] = mapped_column(ForeignKey("mpesa_deposits.id"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    #: sending | accepted | not_sent | unknown | adopted | expired
    state: Mapped[str] = mapped_column(String(16))
    checkout_request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    merchant_request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MpesaUnmatchedPayment(Base):
    """A success callback no deposit has recorded the CheckoutRequestID of: offered to the deposit
    whose push it may answer, or open for an admin (credit it to a deposit, or mark it refunded).
    Never silently kept (:mod:`store.unmatched_payments`)."""

    __tablename__ = "mpesa_unmatched_payments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    checkout_request_id: Mapped[str] = mapped_column(String(64), unique=True)
    merchant_request_id: Mapped[str | None] = mapped_column(String(64))
    receipt: Mapped[str | None] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(16))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    #: the tenant of the deposit it was matched to; None: unknown, platform_admin only
    tenant: Mapped[str | None] = mapped_column(String(64), index=True)
    #: the deposit it was offered to (offered) or that may own it (open)
    deposit_id: Mapped[str | None] = mapped_column(String(36))
    #: offered | open | adopted | credited | refunded
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(255))
    #: the refund's reference, or the deposit credited
    resolution_reference: Mapped[str | None] = mapped_column(String(255))
    ledger_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))


class EvmWallet(Base):
    """A wallet Settle sends from. Its row is the nonce owner: locked while a nonce is taken."""

    __tablename__ = "evm_wallets"
    __table_args__ = (UniqueConstraint("chain_id", "address"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    address: Mapped[str] = mapped_column(String(42))
    #: next nonce to hand out; read from the chain on first use
    next_nonce: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class EvmTransaction(Base):
    """One logical transaction (one nonce), identified by the caller's idempotency key.

    Replacements (fee bumps) are attempts of the same transaction; whichever is mined wins.
    """

    __tablename__ = "evm_transactions"
    __table_args__ = (UniqueConstraint("wallet_id", "nonce"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    wallet_id: Mapped[str] = mapped_column(ForeignKey("evm_wallets.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    purpose: Mapped[str | None] = mapped_column(String(64))
    nonce: Mapped[int] = mapped_column(BigInteger)
    to_address: Mapped[str] = mapped_column(String(42))
    data: Mapped[str] = mapped_column(Text)
    #: wei, as a decimal string (uint256 does not fit a BIGINT)
    value: Mapped[str] = mapped_column(String(80))
    gas_limit: Mapped[int] = mapped_column(BigInteger)
    #: signed -> broadcast -> mined -> confirmed, or reverted
    status: Mapped[str] = mapped_column(String(16), index=True)
    current_hash: Mapped[str] = mapped_column(String(66))
    mined_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(66))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class EvmTxAttempt(Base):
    """A signed version of a transaction: the first, or a replacement with higher fees."""

    __tablename__ = "evm_tx_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("evm_transactions.id"), index=True)
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    raw: Mapped[str] = mapped_column(Text)
    max_fee_per_gas: Mapped[str] = mapped_column(String(80))
    max_priority_fee_per_gas: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    broadcast_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DepositIntent(Base):
    """A request to deposit USDC on chain: an address of its own (BIP-44 index), amount, expiry."""

    __tablename__ = "deposit_intents"
    __table_args__ = (UniqueConstraint("chain", "address"), UniqueConstraint("chain", "hd_index"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    chain: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(42))
    hd_index: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    received_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(32), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    #: a transfer arrived after the intent closed: recorded, not credited, needs a person
    late_transfer_seen: Mapped[bool] = mapped_column(default=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DepositTransfer(Base):
    """A USDC Transfer to an intent's address, as seen in one block.

    The same transfer re-included in another block after a reorg is a second row (other block
    hash); it is credited once, by its (chain, tx hash, log index) ledger key.
    """

    __tablename__ = "deposit_transfers"
    __table_args__ = (UniqueConstraint("chain", "tx_hash", "log_index", "block_hash"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    intent_id: Mapped[str] = mapped_column(ForeignKey("deposit_intents.id"), index=True)
    chain: Mapped[str] = mapped_column(String(32))
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    from_address: Mapped[str] = mapped_column(String(42))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    ledger_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class ChainCheckpoint(Base):
    """Per chain: the last block the scanner has read, and HD indexes handed out so far."""

    __tablename__ = "chain_checkpoints"

    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_scanned_block: Mapped[int | None] = mapped_column(BigInteger)
    scanned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_hd_index: Mapped[int] = mapped_column(BigInteger, default=0)


class TicketEvent(Base):
    """An event a tenant sells tickets for: the catalogue sets prices, currency and seats."""

    __tablename__ = "ticket_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    venue: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str] = mapped_column(String(3))
    #: tickets are sold from ``sales_start`` (now when null) until ``sales_end`` (starts_at)
    sales_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sales_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    nft_name: Mapped[str | None] = mapped_column(String(32))
    nft_symbol: Mapped[str | None] = mapped_column(String(10))
    #: where the tickets' metadata JSON lives (the ticket id is appended)
    nft_metadata_base_uri: Mapped[str | None] = mapped_column(String(512))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class TicketEventSection(Base):
    """A priced part of an event: ``capacity`` places, or the named ``seats`` (a JSON list)."""

    __tablename__ = "ticket_event_sections"
    __table_args__ = (
        UniqueConstraint("event_id", "code"),
        CheckConstraint("price_minor > 0", name="price_positive"),
        CheckConstraint("capacity >= 0", name="capacity_not_negative"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("ticket_events.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    capacity: Mapped[int] = mapped_column(Integer)
    seats: Mapped[list[str] | None] = mapped_column(JSON)
    #: bumped by every hold: the UPDATE takes the row's lock, so holds on a section queue
    lock_version: Mapped[int] = mapped_column(BigInteger, default=0)


class SeatHold(Base):
    """A place of an event is sold once: held at purchase (until ``expires_at``), ``sold`` once
    paid, deleted when the purchase fails, is cancelled or fully refunded. ``seat`` is null for a
    place in a section without named seats (the section's capacity bounds those)."""

    __tablename__ = "seat_holds"
    __table_args__ = (UniqueConstraint("tenant", "event_id", "seat"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(128))
    seat: Mapped[str | None] = mapped_column(String(64))
    purchase_id: Mapped[str] = mapped_column(String(36), unique=True)
    section_id: Mapped[str | None] = mapped_column(String(36), index=True)
    #: held | sold
    status: Mapped[str] = mapped_column(String(16), default="held", server_default="held")
    #: null: never expires (holds made before the catalogue, and sold places)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TicketRefundRequest(Base):
    """A buyer asks for a refund; the venue approves (a Refund starts) or declines."""

    __tablename__ = "ticket_refund_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    purchase_id: Mapped[str] = mapped_column(ForeignKey("ticket_purchases.id"), index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    requested_by: Mapped[str] = mapped_column(String(255))
    #: null: everything left
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    #: pending | approved | declined
    status: Mapped[str] = mapped_column(String(16), index=True)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    refund_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class TicketPurchase(Base):
    __tablename__ = "ticket_purchases"
    __table_args__ = (
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount_captured",
            name="refund_within_capture",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(128))
    seat: Mapped[str] = mapped_column(String(64))
    #: the catalogue section bought from (null for purchases made before the catalogue)
    section: Mapped[str | None] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    buyer_email: Mapped[str] = mapped_column(String(320))
    buyer_wallet: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    request_key: Mapped[str | None] = mapped_column(String(255))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    amount_captured: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    mint_address: Mapped[str | None] = mapped_column(String(64))
    token_account: Mapped[str | None] = mapped_column(String(64))
    #: who holds the NFT now (changes with transfers)
    owner_wallet: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class TicketRefund(Base):
    """A refund request (its id is the business key: one Stripe refund per id)."""

    __tablename__ = "ticket_refunds"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(ForeignKey("ticket_purchases.id"), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    #: reserved -> succeeded, or failed (the reservation is released)
    status: Mapped[str] = mapped_column(String(16))
    stripe_refund_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    reason: Mapped[str | None] = mapped_column(Text)
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    requested_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class NftTransferRecord(Base):
    __tablename__ = "nft_transfers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(ForeignKey("ticket_purchases.id"), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    from_wallet: Mapped[str] = mapped_column(String(64))
    to_wallet: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str | None] = mapped_column(String(128))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class StripeEvent(Base):
    """Stripe webhook events already handled (Stripe may deliver one several times)."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookEndpoint(Base):
    """Where a tenant (a venue) receives signed event notifications."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: the event types it receives; None (made without a list): the ticket and alert events
    #: endpoints received before subscriptions existed (``domain.events.UNSUBSCRIBED_DEFAULT``)
    event_types: Mapped[list[str] | None] = mapped_column(JSON)
    #: ``endpoint`` (a tenant's, listed and managed) or ``callback`` (one operation's
    #: ``callback_url``: only that operation's completion goes there)
    kind: Mapped[str] = mapped_column(String(16), default="endpoint", server_default="endpoint")


class WebhookDelivery(Base):
    """One event for one endpoint: its ``webhook-id`` is the same on every attempt, so a retried
    activity, a replayed workflow or an operator's redelivery never sends it under another id."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "endpoint_id"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the webhook-id header
    event_id: Mapped[str] = mapped_column(String(160))
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    tenant: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, object]] = mapped_column(JSON)
    #: pending (not delivered yet), delivered, failed (refused target, gone endpoint, gave up)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookAttempt(Base):
    """One HTTP attempt at a delivery: what the receiver answered and how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint_seq", "endpoint_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[str] = mapped_column(String(36))
    #: succeeded | failed
    status: Mapped[str] = mapped_column(String(16))
    response_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    #: ``retry`` (the workflow's schedule) or ``redeliver`` (an operator asked)
    trigger: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Notification(Base):
    """Every email and webhook Settle sends, by its message id (retries send the same id)."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))  # email | webhook
    target: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(64))  # template or event type
    #: sent, failed (gave up), skipped (endpoint disabled)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Alert(Base):
    """A condition the Monitor found out of bounds: open until a later run finds it back within."""

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    condition: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[str] = mapped_column(String(64))
    #: open | cleared
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: the tenant whose operation it is about; None: the platform's (Monitor conditions), shown
    #: to platform_admin only
    tenant: Mapped[str | None] = mapped_column(String(64), index=True)
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(String(255))


class CredentialAnchorRecord(Base):
    """One credential anchored on the registry: pending until its transaction is confirmed."""

    __tablename__ = "credential_anchors"

    #: the registry's bytes32 key: keccak256(abi.encode(tenant, credential id)); rows made before
    #: that carry the legacy keccak256("<tenant>:<credential id>") (domain/credentials.py)
    credential_key: Mapped[str] = mapped_column(String(66), primary_key=True)
    credential_id: Mapped[str] = mapped_column(String(128))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    requested_by: Mapped[str] = mapped_column(String(255))
    data_hash: Mapped[str] = mapped_column(String(66))
    ipfs_cid: Mapped[str] = mapped_column(String(128))
    #: pending | confirmed | failed
    status: Mapped[str] = mapped_column(String(16), index=True)
    workflow_id: Mapped[str] = mapped_column(String(200))
    #: single (its own transaction) or batch (one Merkle root per transaction)
    mode: Mapped[str] = mapped_column(String(16), default="single")
    #: batch mode: the root anchored and this credential's proof (JSON list of 0x-hex siblings)
    batch_root: Mapped[str | None] = mapped_column(String(66), index=True)
    proof: Mapped[str | None] = mapped_column(Text)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class VerificationJob(Base):
    """One file checked against its manifest, its signer and the ContentRegistry (``verify``),
    or the same with an offline-checkable bundle (``proof``)."""

    __tablename__ = "verification_jobs"
    __table_args__ = (Index("ix_verification_jobs_owner", "tenant", "owner", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    #: the caller who uploaded the file: listings show a caller their own jobs
    owner: Mapped[str] = mapped_column(String(255))
    #: verify | proof
    kind: Mapped[str] = mapped_column(String(16))
    #: queued | active | completed | failed
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    #: async (a workflow) or sync (run in the API because Temporal could not be reached)
    mode: Mapped[str] = mapped_column(String(8), default="async")
    registry_address: Mapped[str] = mapped_column(String(42))
    manifest_uri: Mapped[str] = mapped_column(String(512))
    file_name: Mapped[str | None] = mapped_column(String(255))
    file_size: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(66))
    workflow_id: Mapped[str] = mapped_column(String(200))
    #: the VerificationResult as JSON, once the job has one
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AbuseCounter(Base):
    """Operations started in one minute by one subject, against one abuse limit."""

    __tablename__ = "abuse_counters"

    #: ``<limit>:<subject>`` (personal subjects hashed)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class JobLog(Base):
    """A line an activity wrote about the job it works for (``activities/job_log.py``), shown in
    ``GET /api/v1/jobs/{id}/timeline`` beside the workflow's history. Ids and outcomes only,
    never personal data: operators of the job's tenant read these lines."""

    __tablename__ = "job_logs"
    __table_args__ = (Index("ix_job_logs_workflow", "workflow_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    run_id: Mapped[str | None] = mapped_column(String(64))
    #: the activity type that wrote the line, and its attempt
    activity: Mapped[str | None] = mapped_column(String(128))
    attempt: Mapped[int | None] = mapped_column(Integer)
    #: info | warning | error
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CircuitBreaker(Base):
    """One provider's circuit breaker, shared by every worker process (their activity outcomes
    are counted here, so the fleet trips it together, not each worker on its own share)."""

    __tablename__ = "circuit_breakers"

    #: the task-queue prefix: deployments (and tests) sharing one database keep their own
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: daraja | stripe | evm | solana | smtp
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: closed | open | half_open
    state: Mapped[str] = mapped_column(String(16))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    #: the error-rate window: calls and failures since window_start
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_calls: Mapped[int] = mapped_column(Integer, default=0)
    window_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: when it last opened, and when the next probe is due while it is open
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_probe_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConcurrencySlot(Base):
    """One of N fleet-wide slots of a concurrency limit (a lease): free when ``holder`` is None or
    its lease has expired, so a worker killed while holding one loses it after the TTL."""

    __tablename__ = "concurrency_slots"

    #: the limit's name, e.g. ``<task-queue prefix>credentials``
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Reconciliation(Base):
    """One comparison of Settle's rows with the providers' records over a window (issue 14 §5)."""

    __tablename__ = "reconciliations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: the platform_admin who asked, or ``schedule``
    requested_by: Mapped[str] = mapped_column(String(255))
    #: running | completed (a run that never completes stays running: its workflow says why)
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: completed with no item; null until completed
    clean: Mapped[bool | None] = mapped_column()
    #: provider -> records compared (JSON object)
    checked: Mapped[dict[str, int] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReconciliationItem(Base):
    """One mismatch: the provider's record and Settle's (``settle_ref`` ``none``: no row)."""

    __tablename__ = "reconciliation_items"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    reconciliation_id: Mapped[str] = mapped_column(ForeignKey("reconciliations.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    provider_ref: Mapped[str] = mapped_column(String(200))
    provider_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(8))
    settle_ref: Mapped[str] = mapped_column(String(200))
    settle_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text, default="")
    alert_id: Mapped[str | None] = mapped_column(String(36))

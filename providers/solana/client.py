"""NFT tickets on Solana: mint, transfer, freeze, burn, and look-ups, through the ``solana`` client.

A ticket is a Token-2022 mint (0 decimals, supply 1) with the metadata-pointer, permanent-delegate
and token-metadata extensions, minted to the buyer's associated token account, its mint authority
removed afterwards, all in one transaction.

* **One NFT per ticket, even across crashes.** The mint's address is derived from the authority
  and the ticket id (``create_account_with_seed``), and the whole mint is one atomic transaction:
  a retry finds the mint either complete or absent, never half-made, and never mints a second.
* **The platform keeps control.** The authority is fee payer, freeze authority, metadata update
  authority and permanent delegate: it can move a ticket on the secondary market, freeze or burn
  it on a full refund, without the holder signing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import CreateAccountWithSeedParams, create_account_with_seed
from solders.transaction import Transaction, VersionedTransaction
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.instructions import (
    AuthorityType,
    burn_checked,
    create_idempotent_associated_token_account,
    freeze_account,
    get_associated_token_address,
    mint_to,
    set_authority,
    transfer_checked,
)
from spl.token.instructions import models as spl

from domain.errors import NotTicketOwner, SolanaRejected, SolanaUnavailable
from domain.nft import TicketMetadata
from providers.solana import token2022
from providers.solana.token2022 import MintAccount, TokenAccount, parse_mint, parse_token_account

LAMPORTS_PER_SOL = 1_000_000_000


def parse_pubkey(value: str, what: str = "address") -> Pubkey:
    """A base58 Solana public key, or SolanaRejected naming what was wrong."""
    try:
        key = Pubkey.from_string(value)
    except (ValueError, TypeError) as exc:
        raise SolanaRejected(f"{what} is not a base58 Solana public key: {value!r}") from exc
    if str(key) != value:
        raise SolanaRejected(f"{what} is not a canonical base58 Solana public key: {value!r}")
    return key


def mint_seed(ticket_id: str) -> str:
    """32 characters (the seed limit) derived from the ticket id."""
    return hashlib.sha256(ticket_id.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Sent:
    signature: str


@dataclass(frozen=True)
class MintSeen:
    """A mint the authority initialised, as the chain records it (reconciliation)."""

    mint: str
    signature: str
    block_time: int | None


#: getSignaturesForAddress answers at most 1,000 per call
SIGNATURE_PAGE = 1000
#: the Token-2022 instruction that initialises a mint (every ticket's mint)
INITIALIZE_MINT2 = 20


class SolanaTicketClient:
    def __init__(
        self,
        rpc_url: str,
        authority: Keypair | Pubkey,
        *,
        commitment: str = "confirmed",
        timeout_seconds: float = 15.0,
        confirm_timeout_seconds: float = 30.0,
        poll_seconds: float = 0.2,
    ) -> None:
        self.rpc_url = rpc_url
        self.authority = authority
        self._commitment = Commitment(commitment)
        self._rpc = AsyncClient(
            rpc_url, commitment=self._commitment, timeout=timeout_seconds, http2=False
        )
        self._confirm_timeout = confirm_timeout_seconds
        self._poll = poll_seconds

    async def aclose(self) -> None:
        await self._rpc.close()

    @property
    def authority_key(self) -> Pubkey:
        if isinstance(self.authority, Pubkey):
            return self.authority
        return self.authority.pubkey()

    def mint_address(self, ticket_id: str) -> Pubkey:
        return Pubkey.create_with_seed(
            self.authority_key, mint_seed(ticket_id), TOKEN_2022_PROGRAM_ID
        )

    @staticmethod
    def token_account(owner: Pubkey, mint: Pubkey) -> Pubkey:
        return get_associated_token_address(owner, mint, TOKEN_2022_PROGRAM_ID)

    # --- look-ups ------------------------------------------------------------------------------

    async def account_data(self, key: Pubkey) -> bytes | None:
        try:
            response = await self._rpc.get_account_info(key, commitment=self._commitment)
        except SolanaRpcException as exc:
            raise SolanaUnavailable(f"getAccountInfo: {exc}") from exc
        return bytes(response.value.data) if response.value is not None else None

    async def mint(self, mint: Pubkey) -> MintAccount | None:
        data = await self.account_data(mint)
        return parse_mint(data) if data is not None else None

    async def token(self, account: Pubkey) -> TokenAccount | None:
        data = await self.account_data(account)
        return parse_token_account(data) if data is not None else None

    async def holder(self, mint: Pubkey) -> tuple[Pubkey, TokenAccount] | None:
        """The token account holding a ticket's single token, or None (burned, or unknown)."""
        try:
            response = await self._rpc.get_token_largest_accounts(mint, commitment=self._commitment)
        except SolanaRpcException as exc:
            raise SolanaUnavailable(f"getTokenLargestAccounts: {exc}") from exc
        except RPCException:
            return None
        for entry in response.value:
            if int(entry.amount.amount) == 1:
                account = await self.token(entry.address)
                if account is not None and account.amount == 1:
                    return entry.address, account
        return None

    async def balance_lamports(self) -> int:
        try:
            return (
                await self._rpc.get_balance(self.authority_key, commitment=self._commitment)
            ).value
        except SolanaRpcException as exc:
            raise SolanaUnavailable(f"getBalance: {exc}") from exc

    async def ticket_mints(self, since: int, until: int) -> list[MintSeen]:
        """Mints the authority initialised between two Unix times (inclusive), read from the
        chain: its signatures, newest first (``getSignaturesForAddress`` paged with ``before``),
        then each transaction in the window (``getTransaction``) for a Token-2022
        InitializeMint2. Failed transactions minted nothing and are skipped."""
        found: list[MintSeen] = []
        before: Signature | None = None
        while True:
            try:
                page = (
                    await self._rpc.get_signatures_for_address(
                        self.authority_key,
                        before=before,
                        limit=SIGNATURE_PAGE,
                        commitment=self._commitment,
                    )
                ).value
            except SolanaRpcException as exc:
                raise SolanaUnavailable(f"getSignaturesForAddress: {exc}") from exc
            for entry in page:
                if entry.block_time is not None and entry.block_time < since:
                    return found
                if entry.err is not None or (
                    entry.block_time is not None and entry.block_time > until
                ):
                    continue
                found += await self._mints_in(entry.signature, entry.block_time)
            if len(page) < SIGNATURE_PAGE:
                return found
            before = page[-1].signature

    async def _mints_in(self, signature: Signature, block_time: int | None) -> list[MintSeen]:
        try:
            response = await self._rpc.get_transaction(
                signature,
                encoding="base64",
                commitment=self._commitment,
                max_supported_transaction_version=0,
            )
        except SolanaRpcException as exc:
            raise SolanaUnavailable(f"getTransaction: {exc}") from exc
        if response.value is None:
            return []
        tx = response.value.transaction.transaction
        if not isinstance(tx, VersionedTransaction):
            raise SolanaUnavailable(f"getTransaction {signature}: not a binary transaction")
        keys = tx.message.account_keys
        return [
            MintSeen(
                mint=str(keys[ix.accounts[0]]), signature=str(signature), block_time=block_time
            )
            for ix in tx.message.instructions
            if keys[ix.program_id_index] == TOKEN_2022_PROGRAM_ID
            and bytes(ix.data)[:1] == bytes([INITIALIZE_MINT2])
            and ix.accounts
        ]

    # --- mint ----------------------------------------------------------------------------------

    async def mint_ticket(
        self, ticket_id: str, owner: str, metadata: TicketMetadata
    ) -> tuple[Pubkey, Pubkey, str | None]:
        """(mint, token account, signature); the signature is None when it was minted already."""
        owner_key = parse_pubkey(owner, "owner")
        mint = self.mint_address(ticket_id)
        ata = self.token_account(owner_key, mint)
        existing = await self.mint(mint)
        if existing is not None:
            self._check_is_ticket(existing, ticket_id)
            return mint, ata, None
        additional = [
            ("event", metadata.event_id),
            ("seat", metadata.seat),
            ("ticket_id", metadata.ticket_id),
        ]
        meta_bytes = token2022.metadata_size(
            metadata.name, metadata.symbol, metadata.uri, additional
        )
        try:
            rent = (
                await self._rpc.get_minimum_balance_for_rent_exemption(
                    token2022.MINT_WITH_EXTENSIONS + meta_bytes
                )
            ).value
        except SolanaRpcException as exc:
            raise SolanaUnavailable(f"getMinimumBalanceForRentExemption: {exc}") from exc
        authority = self.authority_key
        instructions: list[Instruction] = [
            create_account_with_seed(
                CreateAccountWithSeedParams(
                    from_pubkey=authority,
                    to_pubkey=mint,
                    base=authority,
                    seed=mint_seed(ticket_id),
                    lamports=rent,
                    space=token2022.MINT_WITH_EXTENSIONS,
                    owner=TOKEN_2022_PROGRAM_ID,
                )
            ),
            token2022.initialize_metadata_pointer(mint, authority),
            token2022.initialize_permanent_delegate(mint, authority),
            _initialize_mint(mint, authority),
            token2022.initialize_metadata(
                mint, authority, metadata.name, metadata.symbol, metadata.uri
            ),
            *(token2022.update_metadata_field(mint, authority, k, v) for k, v in additional),
            create_idempotent_associated_token_account(
                authority, owner_key, mint, TOKEN_2022_PROGRAM_ID
            ),
            mint_to(
                spl.MintToParams(
                    program_id=TOKEN_2022_PROGRAM_ID,
                    mint=mint,
                    dest=ata,
                    mint_authority=authority,
                    amount=1,
                )
            ),
            set_authority(
                spl.SetAuthorityParams(
                    program_id=TOKEN_2022_PROGRAM_ID,
                    account=mint,
                    authority=AuthorityType.MINT_TOKENS,
                    current_authority=authority,
                    new_authority=None,
                )
            ),
        ]
        try:
            sent = await self._send(instructions)
        except SolanaRejected:
            # a concurrent or earlier attempt may have created it meanwhile
            if (made := await self.mint(mint)) is not None:
                self._check_is_ticket(made, ticket_id)
                return mint, ata, None
            raise
        return mint, ata, sent.signature

    def _check_is_ticket(self, mint: MintAccount, ticket_id: str) -> None:
        metadata = mint.metadata
        if (
            metadata is None
            or metadata.additional.get("ticket_id") != ticket_id
            or mint.supply != 1
        ):
            raise SolanaRejected(f"the account for ticket {ticket_id} exists but is not its NFT")

    # --- transfer, freeze, burn ----------------------------------------------------------------

    async def transfer_ticket(
        self, mint_address: str, from_owner: str, to_owner: str
    ) -> tuple[Pubkey, str | None]:
        """Move the ticket from ``from_owner`` to ``to_owner`` as the permanent delegate."""
        mint = parse_pubkey(mint_address, "mint")
        source_owner, target_owner = (
            parse_pubkey(from_owner, "from_owner"),
            parse_pubkey(to_owner, "to_owner"),
        )
        target = self.token_account(target_owner, mint)
        held = await self.holder(mint)
        if held is None:
            raise NotTicketOwner(f"ticket {mint_address} is not held by anyone (burned?)")
        if held[1].owner == target_owner:
            return target, None
        if held[1].owner != source_owner:
            raise NotTicketOwner(f"{from_owner} does not hold ticket {mint_address}")
        if held[1].frozen:
            raise SolanaRejected(f"ticket {mint_address} is frozen")
        sent = await self._send(
            [
                create_idempotent_associated_token_account(
                    self.authority_key, target_owner, mint, TOKEN_2022_PROGRAM_ID
                ),
                transfer_checked(
                    spl.TransferCheckedParams(
                        program_id=TOKEN_2022_PROGRAM_ID,
                        source=held[0],
                        mint=mint,
                        dest=target,
                        owner=self.authority_key,
                        amount=1,
                        decimals=0,
                    )
                ),
            ]
        )
        return target, sent.signature

    async def freeze_ticket(self, mint_address: str) -> str | None:
        mint = parse_pubkey(mint_address, "mint")
        held = await self.holder(mint)
        if held is None or held[1].frozen:
            return None
        sent = await self._send(
            [
                freeze_account(
                    spl.FreezeAccountParams(
                        program_id=TOKEN_2022_PROGRAM_ID,
                        account=held[0],
                        mint=mint,
                        authority=self.authority_key,
                    )
                )
            ]
        )
        return sent.signature

    async def burn_ticket(self, mint_address: str) -> str | None:
        mint = parse_pubkey(mint_address, "mint")
        held = await self.holder(mint)
        if held is None:
            return None
        sent = await self._send(
            [
                burn_checked(
                    spl.BurnCheckedParams(
                        program_id=TOKEN_2022_PROGRAM_ID,
                        mint=mint,
                        account=held[0],
                        owner=self.authority_key,
                        amount=1,
                        decimals=0,
                    )
                )
            ]
        )
        return sent.signature

    # --- transport -----------------------------------------------------------------------------

    async def _send(self, instructions: list[Instruction]) -> Sent:
        """Sign, send with preflight, and wait for the commitment. A program error is permanent;
        an expired blockhash or an unreachable node is worth retrying."""
        try:
            blockhash = (
                await self._rpc.get_latest_blockhash(commitment=self._commitment)
            ).value.blockhash
        except SolanaRpcException as exc:
            raise SolanaUnavailable(f"getLatestBlockhash: {exc}") from exc
        message = Message.new_with_blockhash(instructions, self.authority_key, blockhash)
        if not isinstance(self.authority, Keypair):
            raise SolanaRejected("this client has the authority's public key only: it cannot sign")
        transaction = Transaction([self.authority], message, blockhash)
        try:
            response = await self._rpc.send_raw_transaction(
                bytes(transaction),
                opts=TxOpts(skip_preflight=False, preflight_commitment=self._commitment),
            )
        except SolanaRpcException as exc:
            raise SolanaUnavailable(f"sendTransaction: {exc}") from exc
        except RPCException as exc:
            message_text = str(exc)
            if "Blockhash not found" in message_text or "BlockhashNotFound" in message_text:
                raise SolanaUnavailable(f"sendTransaction: {message_text}") from exc
            raise SolanaRejected(f"sendTransaction: {message_text}") from exc
        signature = response.value
        await self._confirm(signature)
        return Sent(str(signature))

    async def _confirm(self, signature: Signature) -> None:
        deadline = time.monotonic() + self._confirm_timeout
        wanted = (
            {"confirmed", "finalized"}
            if self._commitment != "processed"
            else {"processed", "confirmed", "finalized"}
        )
        while time.monotonic() < deadline:
            try:
                statuses = (await self._rpc.get_signature_statuses([signature])).value
            except SolanaRpcException as exc:
                raise SolanaUnavailable(f"getSignatureStatuses: {exc}") from exc
            status = statuses[0]
            if status is not None:
                if status.err is not None:
                    raise SolanaRejected(f"transaction {signature} failed: {status.err}")
                level = (
                    str(status.confirmation_status).split(".")[-1].lower()
                    if status.confirmation_status
                    else ""
                )
                if level in wanted:
                    return
            await asyncio.sleep(self._poll)
        raise SolanaUnavailable(
            f"transaction {signature} not {self._commitment} after {self._confirm_timeout} s"
        )


def _initialize_mint(mint: Pubkey, authority: Pubkey) -> Instruction:
    from spl.token.instructions import initialize_mint2

    return initialize_mint2(
        spl.InitializeMint2Params(
            decimals=0,
            program_id=TOKEN_2022_PROGRAM_ID,
            mint=mint,
            mint_authority=authority,
            freeze_authority=authority,
        )
    )


def sol(lamports: int) -> float:
    return lamports / LAMPORTS_PER_SOL

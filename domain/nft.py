"""NFT tickets on Solana: the contract between the ticket workflows and the Solana activities.

Activity names (queue ``solana``), implemented by ``activities/solana.py``:

=========================  ======================  =====================
activity                   input                   output
=========================  ======================  =====================
``solana.mint_ticket``     MintTicketInput         MintTicketResult
``solana.transfer_ticket`` TransferTicketInput     TransferTicketResult
``solana.ticket_owner``    TicketOwnerInput        TicketOwnerResult
``solana.freeze_ticket``   FreezeTicketInput       TicketTxResult
``solana.burn_ticket``     BurnTicketInput         TicketTxResult
=========================  ======================  =====================

A ticket is a Token-2022 mint (0 decimals, supply 1, mint authority removed) with the
metadata-pointer and token-metadata extensions. Minting is idempotent per ``ticket_id``: a retry
after a crash finds the NFT it already minted and never mints a second one.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class TicketMetadata(BaseModel):
    name: str = Field(max_length=32)
    symbol: str = Field(max_length=10)
    uri: str = Field(max_length=200)
    event_id: str
    seat: str
    ticket_id: str


class MintTicketInput(BaseModel):
    ticket_id: str
    #: the buyer's wallet (base58); the NFT goes to its associated token account
    owner: str
    metadata: TicketMetadata


class MintTicketResult(BaseModel):
    mint: str
    token_account: str
    signature: str | None
    #: True when a previous attempt had already minted it (nothing was sent this time)
    already_minted: bool = False


class TransferTicketInput(BaseModel):
    ticket_id: str
    mint: str
    from_owner: str
    to_owner: str


class TransferTicketResult(BaseModel):
    signature: str | None
    to_token_account: str
    already_transferred: bool = False


class TicketOwnerInput(BaseModel):
    mint: str


class TicketOwnerResult(BaseModel):
    #: wallet holding the ticket's single token, None when burned
    owner: str | None
    frozen: bool = False


class FreezeTicketInput(BaseModel):
    mint: str
    owner: str


class BurnTicketInput(BaseModel):
    mint: str
    owner: str


class TicketTxResult(BaseModel):
    signature: str | None
    already_done: bool = False

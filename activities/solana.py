"""Solana activities (queue ``solana``): the NFT ticket steps of ``domain/nft.py``, idempotent."""

from __future__ import annotations

from temporalio import activity

from domain.nft import (
    BurnTicketInput,
    FreezeTicketInput,
    MintTicketInput,
    MintTicketResult,
    TicketOwnerInput,
    TicketOwnerResult,
    TicketTxResult,
    TransferTicketInput,
    TransferTicketResult,
)
from providers.solana.client import SolanaTicketClient, parse_pubkey
from runtime.logging import get_logger

log = get_logger("activities.solana")


class SolanaActivities:
    def __init__(self, client: SolanaTicketClient) -> None:
        self._client = client

    @activity.defn(name="solana.mint_ticket")
    async def mint_ticket(self, request: MintTicketInput) -> MintTicketResult:
        """The ticket's NFT at its derived address: minted once, found again on every retry."""
        mint, account, signature = await self._client.mint_ticket(
            request.ticket_id, request.owner, request.metadata
        )
        log.info(
            "ticket minted" if signature else "ticket already minted",
            ticket_id=request.ticket_id,
            mint=str(mint),
        )
        return MintTicketResult(
            mint=str(mint),
            token_account=str(account),
            signature=signature,
            already_minted=signature is None,
        )

    @activity.defn(name="solana.transfer_ticket")
    async def transfer_ticket(self, request: TransferTicketInput) -> TransferTicketResult:
        account, signature = await self._client.transfer_ticket(
            request.mint, request.from_owner, request.to_owner
        )
        return TransferTicketResult(
            signature=signature,
            to_token_account=str(account),
            already_transferred=signature is None,
        )

    @activity.defn(name="solana.ticket_owner")
    async def ticket_owner(self, request: TicketOwnerInput) -> TicketOwnerResult:
        held = await self._client.holder(parse_pubkey(request.mint, "mint"))
        if held is None:
            return TicketOwnerResult(owner=None)
        return TicketOwnerResult(owner=str(held[1].owner), frozen=held[1].frozen)

    @activity.defn(name="solana.freeze_ticket")
    async def freeze_ticket(self, request: FreezeTicketInput) -> TicketTxResult:
        signature = await self._client.freeze_ticket(request.mint)
        return TicketTxResult(signature=signature, already_done=signature is None)

    @activity.defn(name="solana.burn_ticket")
    async def burn_ticket(self, request: BurnTicketInput) -> TicketTxResult:
        signature = await self._client.burn_ticket(request.mint)
        return TicketTxResult(signature=signature, already_done=signature is None)

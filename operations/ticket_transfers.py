"""NFT ticket transfers (secondary market): record the transfer, start ``NftTransfer``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from api.auth import Principal
from domain.errors import Conflict, Forbidden, InvalidInput
from domain.search import OperationKind
from domain.tickets import NftTransferInput, PurchaseStatus
from operations.context import Context
from operations.tickets_common import (
    Accepted,
    derived_id,
    is_staff,
    solana_address,
    start_workflow,
    visible,
)
from store.models import NftTransferRecord
from workflows.tickets import NftTransfer, transfer_workflow_id


class TransferBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_wallet: str

    @field_validator("to_wallet")
    @classmethod
    def _wallet(cls, value: str) -> str:
        return solana_address(value, "to_wallet")


async def transfer(
    ctx: Context,
    principal: Principal,
    purchase_id: str,
    body: TransferBody,
    idempotency_key: str | None = None,
) -> Accepted:
    """Move a minted ticket to ``body.to_wallet``: by its buyer while it is in the wallet it was
    bought with, or by the venue from whoever holds it."""
    transfer_id = derived_id(principal, idempotency_key, f"transfer:{purchase_id}")
    workflow_id = transfer_workflow_id(transfer_id)
    async with ctx.sessions.begin() as session:
        purchase = await visible(session, purchase_id, principal)
        if purchase.mint_address is None or purchase.status != PurchaseStatus.COMPLETED:
            raise Conflict("the ticket has not been minted (or was refunded)")
        owner = purchase.owner_wallet or purchase.buyer_wallet
        if not is_staff(principal) and owner != purchase.buyer_wallet:
            # the buyer moved it on: the holder now is someone else, and the permanent delegate
            # never acts for a former holder. The holder moves it with their own key; the venue
            # can move it from its holder.
            raise Forbidden(
                "the ticket is no longer in the wallet it was bought with: only its current "
                "holder or the venue may move it"
            )
        existing = await session.get(NftTransferRecord, transfer_id)
        if existing is None:
            if body.to_wallet == owner:
                raise InvalidInput("to_wallet already holds this ticket", field="to_wallet")
            session.add(
                NftTransferRecord(
                    id=transfer_id,
                    purchase_id=purchase.id,
                    tenant=purchase.tenant,
                    from_wallet=owner,
                    to_wallet=body.to_wallet,
                    status="pending",
                    workflow_id=workflow_id,
                )
            )
        elif existing.to_wallet != body.to_wallet:
            raise Conflict(
                "Idempotency-Key was already used for a different transfer", field="Idempotency-Key"
            )
        else:
            owner = existing.from_wallet
    request = NftTransferInput(
        transfer_id=transfer_id,
        purchase_id=purchase.id,
        tenant=purchase.tenant,
        mint=purchase.mint_address,
        from_wallet=owner,
        to_wallet=body.to_wallet,
        buyer_email=purchase.buyer_email,
        event_id=purchase.event_id,
        seat=purchase.seat,
        task_queue_prefix=ctx.settings.task_queue_prefix,
    )
    await start_workflow(
        ctx,
        NftTransfer.run,
        request,
        workflow_id,
        OperationKind.NFT_TRANSFER,
        principal,
        undo=[(NftTransferRecord, transfer_id)] if existing is None else [],
    )
    return Accepted(
        id=transfer_id,
        workflow_id=workflow_id,
        status="pending",
        status_url=f"/api/v1/tickets/purchase/{purchase.id}",
    )

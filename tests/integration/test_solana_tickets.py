"""NFT tickets with the real ``solana`` client against the LiteSVM RPC stand-in, which runs the
real Token-2022 and associated-token-account programs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from solders.keypair import Keypair

from domain.errors import NotTicketOwner, SolanaRejected
from domain.nft import TicketMetadata
from providers.solana.client import SolanaTicketClient
from tests.fixtures.solana import SolanaRpc


@pytest.fixture
async def client(solana_rpc: SolanaRpc) -> AsyncIterator[SolanaTicketClient]:
    made = SolanaTicketClient(solana_rpc.url, solana_rpc.authority, poll_seconds=0.05)
    yield made
    await made.aclose()


def metadata(ticket_id: str) -> TicketMetadata:
    return TicketMetadata(
        name="Settle Ticket",
        symbol="TIX",
        uri=f"https://tickets.test/{ticket_id}.json",
        event_id="evt-9",
        seat="B-7",
        ticket_id=ticket_id,
    )


def wallet() -> str:
    return str(Keypair().pubkey())


async def test_mint_puts_one_nft_with_its_metadata_in_the_buyers_account(
    client: SolanaTicketClient,
) -> None:
    ticket, buyer = str(uuid.uuid4()), wallet()
    mint, ata, signature = await client.mint_ticket(ticket, buyer, metadata(ticket))
    assert signature is not None
    on_chain = await client.mint(mint)
    assert on_chain is not None
    assert (on_chain.supply, on_chain.decimals, on_chain.mint_authority) == (1, 0, None)
    assert on_chain.freeze_authority == client.authority_key
    assert on_chain.permanent_delegate == client.authority_key
    meta = on_chain.metadata
    assert meta is not None
    assert (meta.name, meta.symbol, meta.uri) == (
        "Settle Ticket",
        "TIX",
        f"https://tickets.test/{ticket}.json",
    )
    assert meta.additional == {"event": "evt-9", "seat": "B-7", "ticket_id": ticket}
    token = await client.token(ata)
    assert token is not None and (str(token.owner), token.amount, token.frozen) == (buyer, 1, False)


async def test_minting_the_same_ticket_again_mints_nothing(
    client: SolanaTicketClient, solana_rpc: SolanaRpc
) -> None:
    ticket, buyer = str(uuid.uuid4()), wallet()
    first = await client.mint_ticket(ticket, buyer, metadata(ticket))
    sent = solana_rpc.sandbox.transactions
    again = await client.mint_ticket(ticket, buyer, metadata(ticket))  # e.g. a retry after a crash
    assert again[0] == first[0] and again[2] is None
    assert solana_rpc.sandbox.transactions == sent
    minted = await client.mint(first[0])
    assert minted is not None and minted.supply == 1


async def test_transfer_freeze_burn(client: SolanaTicketClient) -> None:
    ticket, buyer, second = str(uuid.uuid4()), wallet(), wallet()
    mint, _, _ = await client.mint_ticket(ticket, buyer, metadata(ticket))
    target, signature = await client.transfer_ticket(str(mint), buyer, second)
    assert signature is not None
    held = await client.holder(mint)
    assert held is not None and str(held[1].owner) == second and held[0] == target
    again = await client.transfer_ticket(str(mint), buyer, second)  # a retry: already there
    assert again == (target, None)
    with pytest.raises(NotTicketOwner):
        await client.transfer_ticket(str(mint), buyer, wallet())
    assert await client.freeze_ticket(str(mint)) is not None
    held = await client.holder(mint)
    assert held is not None and held[1].frozen
    with pytest.raises(SolanaRejected):
        await client.transfer_ticket(str(mint), second, buyer)

    other, other_buyer = str(uuid.uuid4()), wallet()
    other_mint, _, _ = await client.mint_ticket(other, other_buyer, metadata(other))
    assert await client.burn_ticket(str(other_mint)) is not None
    assert await client.holder(other_mint) is None
    burned = await client.mint(other_mint)
    assert burned is not None and burned.supply == 0


async def test_invalid_owner_is_rejected(client: SolanaTicketClient) -> None:
    with pytest.raises(SolanaRejected, match="owner"):
        await client.mint_ticket("t", "not-a-key", metadata("t"))


async def test_a_refused_mint_is_a_permanent_error(
    client: SolanaTicketClient, solana_rpc: SolanaRpc
) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(f"{solana_rpc.url}/_sandbox/fail-mints", json={"count": 1})
    ticket = str(uuid.uuid4())
    with pytest.raises(SolanaRejected, match="custom program error"):
        await client.mint_ticket(ticket, wallet(), metadata(ticket))
    assert await client.mint(client.mint_address(ticket)) is None


async def test_fee_payer_balance(client: SolanaTicketClient) -> None:
    assert 0 < await client.balance_lamports() <= 100 * 10**9


async def test_rpc_error_shapes(solana_rpc: SolanaRpc) -> None:
    async with httpx.AsyncClient() as http:
        unknown = (
            await http.post(solana_rpc.url, json={"jsonrpc": "2.0", "id": 1, "method": "nope"})
        ).json()
        bad_key = (
            await http.post(
                solana_rpc.url,
                json={"jsonrpc": "2.0", "id": 2, "method": "getBalance", "params": ["xyz"]},
            )
        ).json()
        garbage = (
            await http.post(
                solana_rpc.url, content=b"{", headers={"Content-Type": "application/json"}
            )
        ).json()
    assert unknown["error"]["code"] == -32601 and unknown["id"] == 1
    assert bad_key["error"]["code"] == -32602
    assert garbage["error"]["code"] == -32700


async def test_a_transaction_the_programs_refuse_is_rejected_with_their_error(
    client: SolanaTicketClient, solana_rpc: SolanaRpc
) -> None:
    """Minting a second token of a ticket: the real Token-2022 program refuses (no mint authority)."""
    from spl.token.constants import TOKEN_2022_PROGRAM_ID
    from spl.token.instructions import mint_to
    from spl.token.instructions import models as spl

    ticket = str(uuid.uuid4())
    mint, ata, _ = await client.mint_ticket(ticket, wallet(), metadata(ticket))
    failed = solana_rpc.sandbox.failed
    second = mint_to(
        spl.MintToParams(
            program_id=TOKEN_2022_PROGRAM_ID,
            mint=mint,
            dest=ata,
            mint_authority=client.authority_key,
            amount=1,
        )
    )
    with pytest.raises(SolanaRejected, match="custom program error: 0x5"):
        await client._send([second])
    assert solana_rpc.sandbox.failed == failed + 1
    minted = await client.mint(mint)
    assert minted is not None and minted.supply == 1

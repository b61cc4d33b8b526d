"""Solana: RPC, the authority keypair that mints NFT tickets, commitment and timings."""

from __future__ import annotations

from pydantic import BaseModel, SecretStr

#: a fixed keypair for the local validator stand-in (base58 of its 64 secret bytes);
#: refused when SETTLE_ENV=production
SANDBOX_AUTHORITY_KEYPAIR = (
    "4NMwxzmYj2uvHuq8xoqhY8RXg63KSVJM1DXkpbmkUY7YQWuoyQgFnnzn6yo3CMnqZasnNPNuAT2TLwQsCaKkUddp"
)


class SolanaSettings(BaseModel):
    solana_rpc_url: str = "http://127.0.0.1:8899"
    #: processed, confirmed or finalized
    solana_commitment: str = "confirmed"
    #: fee payer, mint and freeze authority and permanent delegate of the tickets (base58)
    solana_authority_keypair: SecretStr = SecretStr(SANDBOX_AUTHORITY_KEYPAIR)
    #: the authority's public key (base58), for the API (fee-payer balance); empty: derived from
    #: SOLANA_AUTHORITY_KEYPAIR, which only the worker needs
    solana_authority_pubkey: str | None = None
    solana_timeout_seconds: float = 15.0
    #: how long a sent transaction may take to reach the commitment before it is checked again
    solana_confirm_timeout_seconds: float = 30.0
    solana_ticket_symbol: str = "TIX"
    #: below this the readiness check reports the fee payer as low on funds
    solana_min_balance_sol: float = 0.05

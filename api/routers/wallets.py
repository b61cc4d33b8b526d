"""The caller's wallets: where on-chain value (USDC from deposits) is sent to them."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, field_validator

from api.deps import CurrentUser, SessionFactoryDep, SettingsDep
from api.errors import error_responses
from domain.addresses import normalize_evm_address
from domain.errors import NotFound
from store import accounts, wallets

router = APIRouter(prefix="/api/v1/wallets", tags=["wallets"])


class WalletBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str

    @field_validator("address")
    @classmethod
    def _evm(cls, value: str) -> str:
        return normalize_evm_address(value)


class WalletView(BaseModel):
    chain: str
    address: str


@router.get("", response_model=list[WalletView], responses=error_responses(401))
async def list_wallets(principal: CurrentUser, sessions: SessionFactoryDep) -> list[WalletView]:
    async with sessions.begin() as session:
        user = await accounts.get_or_create_user(session, principal.tenant, principal.subject)
        return [
            WalletView(chain=w.chain, address=w.address)
            for w in await wallets.wallets_of(session, user.id)
        ]


@router.put("/{chain}", response_model=WalletView, responses=error_responses(401, 404, 422))
async def set_wallet(
    chain: str,
    body: WalletBody,
    principal: CurrentUser,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
) -> WalletView:
    """Register the caller's wallet on an EVM chain Settle serves (``base``)."""
    if chain != settings.evm_chain:
        raise NotFound(f"unknown chain {chain!r}; this deployment serves {settings.evm_chain!r}")
    async with sessions.begin() as session:
        user = await accounts.get_or_create_user(session, principal.tenant, principal.subject)
        wallet = await wallets.set_wallet(session, user.id, chain, body.address)
        return WalletView(chain=wallet.chain, address=wallet.address)

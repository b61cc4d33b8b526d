"""The caller's balances, derived from ledger postings."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CurrentUser, SessionFactoryDep
from api.errors import error_responses
from domain.money import Currency, format_minor
from store import accounts
from store.ledger import account_balance

router = APIRouter(prefix="/api/v1/portfolio", tags=["portfolio"])


class Balance(BaseModel):
    currency: str
    kind: str
    balance: str
    balance_minor: int


class Portfolio(BaseModel):
    tenant: str
    subject: str
    balances: list[Balance]


@router.get("", response_model=Portfolio, responses=error_responses(401))
async def portfolio(principal: CurrentUser, sessions: SessionFactoryDep) -> Portfolio:
    async with sessions.begin() as session:
        user = await accounts.get_or_create_user(session, principal.tenant, principal.subject)
        balances = []
        for account in await accounts.user_accounts(session, user.id):
            minor = await account_balance(session, account.id)
            balances.append(
                Balance(
                    currency=account.currency,
                    kind=account.kind,
                    balance=format_minor(minor, Currency(account.currency)),
                    balance_minor=minor,
                )
            )
    return Portfolio(tenant=principal.tenant, subject=principal.subject, balances=balances)

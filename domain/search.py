"""Custom search attributes set on every workflow, so the Web UI and the API can filter by them.

``temporal workflow list --query 'SettleKind="mpesa_deposit" AND SettleStatus="needs_attention"'``
"""

from __future__ import annotations

from enum import StrEnum

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

SETTLE_KIND = SearchAttributeKey.for_keyword("SettleKind")
SETTLE_TENANT = SearchAttributeKey.for_keyword("SettleTenant")
SETTLE_USER = SearchAttributeKey.for_keyword("SettleUser")
SETTLE_STATUS = SearchAttributeKey.for_keyword("SettleStatus")

ALL_KEYS = (SETTLE_KIND, SETTLE_TENANT, SETTLE_USER, SETTLE_STATUS)


class OperationKind(StrEnum):
    MPESA_DEPOSIT = "mpesa_deposit"
    DEPOSIT_WATCH = "deposit_watch"
    CHAIN_SCANNER = "chain_scanner"
    TICKET_PURCHASE = "ticket_purchase"
    TICKET_REFUND = "ticket_refund"
    NFT_TRANSFER = "nft_transfer"
    CREDENTIAL_ANCHOR = "credential_anchor"
    VERIFICATION = "verification"
    PROOF = "proof"


class OperationStatus(StrEnum):
    """The business outcome, which may differ from Temporal's execution status.

    A deposit the customer cancelled completes its workflow normally, yet its status is ``failed``;
    a parked step keeps the workflow running with status ``needs_attention``.
    """

    RUNNING = "running"
    #: running, but a step has failed ``STEP_ALERT_AFTER_ATTEMPTS`` times and is still retried
    #: (see :mod:`domain.retries`); back to ``running`` when it succeeds or gives up
    RETRYING = "retrying"
    NEEDS_ATTENTION = "needs_attention"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"
    #: ended by its deadline (a deposit intent nobody paid in time)
    EXPIRED = "expired"


def start_attributes(kind: OperationKind, tenant: str, user: str) -> TypedSearchAttributes:
    """Search attributes to start a workflow with: status starts as ``running``."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(SETTLE_KIND, kind.value),
            SearchAttributePair(SETTLE_TENANT, tenant),
            SearchAttributePair(SETTLE_USER, user),
            SearchAttributePair(SETTLE_STATUS, OperationStatus.RUNNING.value),
        ]
    )


def dev_server_flags() -> list[str]:
    """``--search-attribute`` flags that register the attributes on a dev server at start."""
    flags: list[str] = []
    for key in ALL_KEYS:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags

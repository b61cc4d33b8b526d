"""Custom search attributes set on every workflow, so the Web UI and the API can filter by them.

``temporal workflow list --query 'SettleKind="mpesa_deposit" AND SettleStatus="needs_attention"'``
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

SETTLE_KIND = SearchAttributeKey.for_keyword("SettleKind")
SETTLE_TENANT = SearchAttributeKey.for_keyword("SettleTenant")
SETTLE_USER = SearchAttributeKey.for_keyword("SettleUser")
SETTLE_STATUS = SearchAttributeKey.for_keyword("SettleStatus")
#: the external references a job has learned (CheckoutRequestID, M-Pesa receipt, transaction
#: hashes, PaymentIntent and refund ids, mint address, credential id, content hash), so that any
#: of them finds the job: ``temporal workflow list --query 'SettleRefs="ws_CO_..."'``. Never
#: personal data (no phone, email or name): search attributes are stored in clear.
SETTLE_REFS = SearchAttributeKey.for_keyword_list("SettleRefs")

ALL_KEYS: tuple[SearchAttributeKey[Any], ...] = (
    SETTLE_KIND,
    SETTLE_TENANT,
    SETTLE_USER,
    SETTLE_STATUS,
    SETTLE_REFS,
)


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


#: the CLI's spelling of each attribute's type (``--search-attribute Name=Type``)
_CLI_TYPE = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def dev_server_flags() -> list[str]:
    """``--search-attribute`` flags that register the attributes on a dev server at start."""
    flags: list[str] = []
    for key in ALL_KEYS:
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPE[key.indexed_value_type]}"]
    return flags


def indexed_types() -> dict[str, int]:
    """Each attribute's ``IndexedValueType`` (the operator service's enum), to register them."""
    return {key.name: int(key.indexed_value_type) for key in ALL_KEYS}

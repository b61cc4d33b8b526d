"""Pure parts of the operations API's job lookups: safe visibility queries and error parsing."""

from __future__ import annotations

import pytest

from api.auth import Principal
from api.jobs_lookup import error_parts, parked_query, quote, tenant_query
from domain.search import OperationKind


def principal(*roles: str, tenant: str = "t1", subject: str = "alice") -> Principal:
    return Principal(subject=subject, tenant=tenant, roles=frozenset(roles))


@pytest.mark.parametrize("value", ['a"b', "a'b", "a\\b", "a b", "", "x" * 256, 'x" OR "1"="1'])
def test_values_that_could_break_a_query_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        quote(value)


def test_every_query_is_limited_to_the_callers_tenant() -> None:
    assert tenant_query(principal("admin")) == 'SettleTenant = "t1"'
    assert tenant_query(principal("venue_admin"), 'SettleKind = "x"') == (
        'SettleTenant = "t1" AND SettleKind = "x"'
    )
    # a user only ever sees their own jobs
    assert tenant_query(principal("user")) == 'SettleTenant = "t1" AND SettleUser = "alice"'
    assert parked_query(principal("admin"), OperationKind.MPESA_DEPOSIT) == (
        'SettleTenant = "t1" AND SettleStatus = "needs_attention" AND ExecutionStatus = "Running"'
        ' AND SettleKind = "mpesa_deposit"'
    )


@pytest.mark.parametrize(
    ("error", "parts"),
    [
        (
            "credit failed: IdempotencyConflict: idempotency key 'k' was already used",
            ("IdempotencyConflict", "credit failed"),
        ),
        (
            "USDC transfer failed: EvmReverted: execution reverted",
            ("EvmReverted", "USDC transfer failed"),
        ),
        ("send USDC failed: activity timed out", (None, "send USDC failed")),
        ("something odd", (None, None)),
        (None, (None, None)),
        ("", (None, None)),
    ],
)
def test_error_type_and_step_are_read_from_the_parked_error(
    error: str | None, parts: tuple[str | None, str | None]
) -> None:
    assert error_parts(error) == parts

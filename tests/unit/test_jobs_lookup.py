"""Pure parts of the operations API's job lookups: safe visibility queries and error parsing."""

from __future__ import annotations

import pytest

from api.auth import Principal
from api.jobs_lookup import error_parts, parked_query, quote, tenant_query
from domain.errors import Unauthorized
from domain.search import OperationKind


def principal(*roles: str, tenant: str = "t1", subject: str = "alice") -> Principal:
    return Principal(subject=subject, tenant=tenant, roles=frozenset(roles))


@pytest.mark.parametrize(
    "value", ['a"b', "a'b", "a\\b", "a\nb", "a\n", "", "x" * 256, 'x" OR "1"="1']
)
def test_values_that_could_break_a_query_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        quote(value)


@pytest.mark.parametrize("value", ["t1", "auth0|123", "alice+ops@example.com", "Acme Corp"])
def test_token_claims_of_usual_shapes_are_quoted(value: str) -> None:
    assert quote(value) == f'"{value}"'


def test_a_tenant_with_a_quote_is_refused_not_a_server_error() -> None:
    with pytest.raises(Unauthorized):
        tenant_query(principal("admin", tenant='t1" OR "1"="1'))


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

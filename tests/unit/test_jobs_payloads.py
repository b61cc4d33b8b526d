"""A job's input and result are cleaned before an operator reads them (``operations/jobs_payloads.py``)."""

from __future__ import annotations

from domain.search import OperationKind, OperationStatus
from operations.jobs_payloads import clean
from operations.jobs_search import JobFilters
from runtime.redact import MASK


def test_secret_keys_are_masked_and_strings_redacted_at_any_depth() -> None:
    value = {
        "deposit_id": "d-1",
        "amount_minor": 15000,
        "config": {"daraja_passkey": "bfb279f9aa9bdbcf", "api_key": "k" * 20, "retries": 3},
        "callbacks": [{"url": "https://user:hunter22@example.com/cb", "access_token": "t"}],
    }
    cleaned = clean(value)
    assert cleaned["deposit_id"] == "d-1" and cleaned["amount_minor"] == 15000
    assert cleaned["config"] == {"daraja_passkey": MASK, "api_key": MASK, "retries": 3}
    assert cleaned["callbacks"][0]["access_token"] == MASK
    assert "hunter22" not in cleaned["callbacks"][0]["url"]


def test_filters_become_visibility_clauses() -> None:
    from datetime import UTC, datetime

    clauses = JobFilters(
        kind=OperationKind.MPESA_DEPOSIT,
        status=OperationStatus.SUCCEEDED,
        user="auth0|amy",
        ref="ws_CO_0112",
        since=datetime(2026, 12, 1, 5, 0, tzinfo=UTC),
        until=datetime(2026, 12, 1, 6, 0),
    ).clauses()
    assert clauses == [
        'SettleKind = "mpesa_deposit"',
        'SettleStatus = "succeeded"',
        'SettleUser = "auth0|amy"',
        'SettleRefs = "ws_CO_0112"',
        'StartTime >= "2026-12-01T05:00:00Z"',
        'StartTime < "2026-12-01T06:00:00Z"',
    ]

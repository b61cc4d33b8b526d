"""The queue tables of the operations API against the workflow sources, and the holder codec."""

from __future__ import annotations

import re
from pathlib import Path

from api.task_queue_limits import EMERGENCY_STOP, _holders, _reason, default_rate
from domain.operation_queues import KIND_QUEUES, sharing
from domain.queues import RATE_LIMITED_QUEUES, ActivityQueue, RateLimitKey
from domain.search import OperationKind
from runtime.settings import Settings

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def test_every_kind_has_queues_and_every_scheduled_queue_is_in_the_table() -> None:
    assert set(KIND_QUEUES) == set(OperationKind)
    used = {
        ActivityQueue[name]
        for source in WORKFLOWS.glob("*.py")
        for name in re.findall(r"ActivityQueue\.([A-Z_]+)", source.read_text())
    }
    assert used <= {q for queues in KIND_QUEUES.values() for q in queues}


def test_kinds_sharing_a_task_queue_are_named() -> None:
    assert OperationKind.DEPOSIT_WATCH in sharing(OperationKind.MPESA_DEPOSIT)  # db
    assert OperationKind.TICKET_PURCHASE in sharing(OperationKind.NFT_TRANSFER)  # solana
    assert OperationKind.MPESA_DEPOSIT not in sharing(OperationKind.MPESA_DEPOSIT)


def test_holders_round_trip_through_the_reason() -> None:
    reason = _reason(["queue:mpesa_deposit", EMERGENCY_STOP, EMERGENCY_STOP], "by ops")
    assert _holders(reason) == [EMERGENCY_STOP, "queue:mpesa_deposit"]
    assert _holders("paused from the CLI") == []
    assert _holders("settle not json") == []


def test_defaults_come_from_settings_by_provider() -> None:
    settings = Settings(_env_file=None, rate_limit_stripe_per_second=7.5)
    assert default_rate(settings, ActivityQueue.STRIPE) == 7.5
    assert default_rate(settings, ActivityQueue.NOTIFY) == settings.rate_limit_smtp_per_second
    assert default_rate(settings, ActivityQueue.DB) is None
    assert set(RATE_LIMITED_QUEUES) == set(RateLimitKey)

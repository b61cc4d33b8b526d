"""Business counters, counted by the worker where the event happens (issue 15 §7).

Each is added once, when the database step that makes the event true commits for the first time
(a retried activity finds the row already in its final state and adds nothing). They go through
the activity's metric meter to the worker's ``WORKER_METRICS_BIND`` endpoint, one per worker
process; the exposition adds ``_total`` to every counter name (``payment_amount_total_cents`` is
served as ``payment_amount_total_cents_total``).
"""

from __future__ import annotations

from temporalio import activity

PAYMENTS = "Ticket payments by status: succeeded (captured) or failed (card declined)"


def count(name: str, description: str, labels: dict[str, str] | None = None, by: int = 1) -> None:
    if by <= 0:
        return
    activity.metric_meter().create_counter(name, description).add(by, labels or {})


def payment_captured(currency: str, amount_minor: int) -> None:
    labels = {"currency": currency.upper()}
    count("payments_processed", PAYMENTS, {"status": "succeeded", **labels})
    count(
        "payment_amount_total_cents", "Captured ticket payments, minor units", labels, amount_minor
    )


def payment_declined(currency: str) -> None:
    count("payments_processed", PAYMENTS, {"status": "failed", "currency": currency.upper()})


def refund_made(currency: str, amount_minor: int, reason: str) -> None:
    labels = {"currency": currency.upper()}
    count("refunds_processed", "Ticket refunds made", {"reason": reason, **labels})
    count("refund_amount_total_cents", "Refunded amounts, minor units", labels, amount_minor)


def nft_minted() -> None:
    count("nfts_minted", "NFT tickets minted")


def nft_transferred() -> None:
    count("nft_transfers", "NFT tickets transferred to another wallet")


def notification(channel: str, kind: str, outcome: str) -> None:
    """``emails_sent{type}``, ``emails_failed{type}``, ``webhooks_sent{event}``,
    ``webhooks_failed{event}``: ``kind`` is the email template or the webhook's event type."""
    if channel == "email":
        count(f"emails_{outcome}", f"Emails {outcome}", {"type": kind})
    else:
        count(f"webhooks_{outcome}", f"Webhook deliveries {outcome}", {"event": kind})

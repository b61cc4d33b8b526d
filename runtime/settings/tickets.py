"""Ticket purchases: Stripe, notifications (SMTP, outbound webhooks), timings and retry figures."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, SecretStr


class TicketSettings(BaseModel):
    #: https://api.stripe.com in production, the sandbox stand-in locally
    stripe_api_base: str = "http://127.0.0.1:8102"
    stripe_api_key: SecretStr = SecretStr("sk_test_dev-only-settle-sandbox")
    #: the signing secret of the Stripe webhook endpoint (whsec_...)
    stripe_webhook_secret: SecretStr = SecretStr("whsec_dev-only-settle-sandbox")
    #: how old a Stripe-Signature timestamp may be, in seconds
    stripe_webhook_tolerance_seconds: int = 300
    stripe_timeout_seconds: float = 20.0
    #: how long a payment that needs the buyer's authentication (3-D Secure) is waited for
    stripe_action_timeout_seconds: float = 900.0

    #: ISO currencies tickets may be sold in, and per-purchase bounds in minor units
    ticket_currencies: list[str] = ["usd", "eur", "gbp", "kes"]
    ticket_min_amount_minor: int = 50
    ticket_max_amount_minor: int = 1_000_000
    #: how long a purchase holds its seat before it is paid; a hold that expired can be taken by
    #: another buyer (the late payment is then refunded). Keep it above the 3-D Secure wait.
    ticket_hold_seconds: int = 1200
    #: where ticket metadata JSON lives; the ticket id is appended
    ticket_metadata_base_uri: str = "https://tickets.settle.local/t/"
    #: on a full refund: leave the NFT, freeze it in the holder's account, or burn it
    ticket_full_refund_action: Literal["none", "freeze", "burn"] = "freeze"
    ticket_mint_max_attempts: int = 8
    #: how long one Solana step (a mint) may take before it is presumed lost and retried
    solana_activity_timeout_seconds: float = 90.0

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    #: plain, starttls or ssl (implicit TLS, usually port 465)
    smtp_security: Literal["plain", "starttls", "ssl"] = "plain"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = 15.0
    email_from: str = "Settle <tickets@settle.local>"
    #: who receives admin alerts by email
    admin_emails: list[str] = ["ops@settle.local"]

    webhook_timeout_seconds: float = 10.0
    #: CIDRs of private or loopback targets outbound webhooks may reach (none by default)
    webhook_allowed_networks: list[str] = []

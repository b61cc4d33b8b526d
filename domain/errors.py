"""The error hierarchy shared by the API, activities and providers.

Every error carries the HTTP status the API answers with and a stable ``code``. Activities raise
the provider families below; the ones listed in :data:`NON_RETRYABLE` are permanent, and the retry
policies in ``workflows/policies.py`` name them so Temporal stops retrying at once.
"""

from __future__ import annotations


class SettleError(Exception):
    """Base of every error Settle raises on purpose."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --- API-facing errors -----------------------------------------------------------------------


class InvalidInput(SettleError):
    """The request is well-formed but a field's value is not acceptable."""

    status_code = 422
    code = "invalid_input"


class BadRequest(SettleError):
    """The request body cannot be understood at all."""

    status_code = 400
    code = "bad_request"


class Unauthorized(SettleError):
    """No valid bearer token."""

    status_code = 401
    code = "unauthorized"


class Forbidden(SettleError):
    """Authenticated, but this caller may not do this."""

    status_code = 403
    code = "forbidden"


class NotFound(SettleError):
    """The resource does not exist, or the caller may not know that it does."""

    status_code = 404
    code = "not_found"


class Conflict(SettleError):
    """The request conflicts with what already exists (e.g. an idempotency key reused)."""

    status_code = 409
    code = "conflict"


class QuotaExceeded(SettleError):
    """A per-tenant quota is used up until ``retry_after_seconds`` from now (429 + Retry-After)."""

    status_code = 429
    code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after_seconds: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_seconds = max(1, retry_after_seconds)


class RateLimited(QuotaExceeded):
    """Too many operations started by one phone, user or tenant this minute (429)."""

    code = "rate_limited"


class ServiceUnavailable(SettleError):
    """A dependency (database, Temporal, provider) cannot be reached right now."""

    status_code = 503
    code = "service_unavailable"


# --- provider errors: Daraja (M-Pesa) -------------------------------------------------------


class ProviderError(SettleError):
    """A provider answered with an error or could not be reached."""

    status_code = 502
    code = "provider_error"


class DarajaError(ProviderError):
    """Base of every M-Pesa Daraja error."""

    code = "daraja_error"

    def __init__(self, message: str, *, error_code: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class DarajaAuthError(DarajaError):
    """The consumer key or secret was refused: retrying will not help."""


class DarajaRejected(DarajaError):
    """Daraja refused the request itself (bad phone, bad shortcode, invalid CheckoutRequestID)."""


class DarajaUnavailable(DarajaError):
    """5xx, timeout or connection failure: worth retrying."""


class DarajaPushUnknown(DarajaUnavailable):
    """An STK push was sent but its answer was lost (timeout, 5xx, dropped connection): it may
    have prompted the customer, so it is resolved before any new push."""


class DarajaPushUnresolved(DarajaPushUnknown):
    """An earlier push of the same deposit may still be on the customer's phone (no
    CheckoutRequestID recorded, no matching callback, its prompt not yet expired): nothing was
    sent; try again once it has a callback or has expired."""


class DarajaPushUnconfirmed(DarajaError):
    """An earlier push of the same deposit may have prompted the customer, and nothing resolved
    it (no CheckoutRequestID recorded, no matching success callback) before its prompt expired:
    nothing is sent. Prompting again could charge the customer twice (Daraja has no idempotency
    key), so the deposit ends; a late payment for that push becomes an unmatched payment that an
    admin credits or refunds."""


class DarajaRateLimited(DarajaError):
    """429 or spike arrest: worth retrying later."""


class DarajaCallbackInvalid(DarajaError):
    """A callback body that does not have the shape Daraja sends."""

    status_code = 400
    code = "invalid_callback"


# --- provider errors: EVM chains --------------------------------------------------------------


class EvmError(ProviderError):
    """Base of every EVM RPC or transaction error."""

    code = "evm_error"


class EvmUnavailable(EvmError):
    """The RPC node timed out, refused the connection or answered 5xx: worth retrying."""


class EvmRejected(EvmError):
    """The node refused the request itself (bad parameters, insufficient funds for gas)."""


class EvmReverted(EvmError):
    """The transaction was mined and reverted (or a call or gas estimate reverted): sending it
    again would revert again. ``revert`` holds the decoded custom error when it is one of ours
    (``providers.evm.revert.DecodedRevert``)."""

    revert: object | None = None


class TreasuryShort(EvmError):
    """The treasury holds less USDC than a transfer needs: nothing was signed or sent. Not a
    permanent failure (the treasury can be funded); the workflow waits, alerts, then parks."""

    code = "treasury_short"

    def __init__(self, message: str, *, balance: int, needed: int) -> None:
        super().__init__(message)
        self.balance = balance
        self.needed = needed


class EvmChainMismatch(EvmError):
    """The RPC serves another chain than the one configured: nothing is sent."""


class LogRangeTooLarge(EvmError):
    """The node refused an eth_getLogs block range as too large; split it and ask again."""


# --- provider errors: Solana ----------------------------------------------------------------


class SolanaError(ProviderError):
    """Base of every Solana RPC or transaction error."""

    code = "solana_error"


class SolanaUnavailable(SolanaError):
    """RPC unreachable, timed out, rate limited, or the blockhash expired: worth retrying."""


class SolanaRejected(SolanaError):
    """The transaction can never succeed as sent (invalid address, a program error)."""


class NotTicketOwner(SolanaError):
    """The wallet named as the ticket's owner does not hold it."""

    status_code = 409
    code = "not_ticket_owner"


# --- provider errors: Stripe ----------------------------------------------------------------


class StripeError(ProviderError):
    """Base of every Stripe error."""

    code = "stripe_error"


class CardDeclined(StripeError):
    """The card was declined (or lacks funds): asking again will not change the answer."""

    status_code = 402
    code = "card_declined"

    def __init__(
        self, message: str, *, decline_code: str | None = None, payment_intent: str | None = None
    ) -> None:
        super().__init__(message)
        self.decline_code = decline_code
        self.payment_intent = payment_intent


class StripeRejected(StripeError):
    """Stripe refused the request itself (invalid parameters, an idempotency conflict, auth)."""


class StripeUnavailable(StripeError):
    """Rate limited, 5xx, or a connection failure: worth retrying with the same Idempotency-Key."""


# --- notifications ----------------------------------------------------------------------------


class NotificationError(ProviderError):
    code = "notification_error"


class EmailUnavailable(NotificationError):
    """The SMTP server could not be reached or refused temporarily."""


class EmailRejected(NotificationError):
    """The SMTP server refused the message for good (bad recipient, auth)."""


class WebhookTargetRefused(NotificationError):
    """The target resolves to a private or loopback address that is not allow-listed."""

    status_code = 422
    code = "webhook_target_refused"


class WebhookEndpointGone(NotificationError):
    """The endpoint answered 410 Gone: it is disabled and never called again."""


class WebhookDeliveryFailed(NotificationError):
    """The endpoint answered an error or could not be reached: retried on the schedule."""

    def __init__(self, message: str, *, answered: int | None = None) -> None:
        super().__init__(message)
        #: the HTTP status the endpoint answered (None: no answer), for the deliveries listing
        self.answered = answered


# --- IPFS and content verification -------------------------------------------------------------


class PayloadTooLarge(SettleError):
    """An upload above the configured size limit."""

    status_code = 413
    code = "payload_too_large"


class IpfsError(ProviderError):
    """Base of every IPFS gateway error."""

    code = "ipfs_error"


class IpfsUnavailable(IpfsError):
    """The gateway timed out, refused the connection or answered 5xx/429: worth retrying."""


class IpfsNotFound(IpfsError):
    """The gateway answered 404 for the CID (or path): asking again will not help."""


class IpfsTooLarge(IpfsError):
    """The content is larger than the configured limit: it is not read any further."""


class IpfsContentMismatch(IpfsError):
    """The gateway's bytes do not hash to the CID asked for (a raw-codec CID can be checked)."""


class InvalidManifest(SettleError):
    """A manifest that is not the documented JSON (missing field, bad hash, bad address)."""

    status_code = 422
    code = "invalid_manifest"


class RegistryNotFound(EvmError):
    """No contract (no code) at the registry address given: reading it would mean nothing."""


# --- tickets ----------------------------------------------------------------------------------


class RefundRefused(SettleError):
    """The refund would exceed what was captured and not yet refunded."""

    status_code = 422
    code = "refund_refused"


class SeatTaken(SettleError):
    """Another purchase holds this seat."""

    status_code = 409
    code = "seat_taken"


# --- ledger ---------------------------------------------------------------------------------


class LedgerError(SettleError):
    """A ledger invariant would be broken."""

    code = "ledger_error"


class UnbalancedEntry(LedgerError):
    """Postings of one entry do not sum to zero per currency."""


class IdempotencyConflict(LedgerError):
    """The same idempotency key was used for a different entry."""

    status_code = 409
    code = "idempotency_conflict"


#: exception type names Temporal must not retry (matched on the class name of the raised error)
NON_RETRYABLE: tuple[str, ...] = (
    "DarajaAuthError",
    "DarajaRejected",
    "DarajaCallbackInvalid",
    "DarajaPushUnconfirmed",
    "EvmRejected",
    "EvmReverted",
    "TreasuryShort",
    "EvmChainMismatch",
    "SolanaRejected",
    "NotTicketOwner",
    "CardDeclined",
    "StripeRejected",
    "EmailRejected",
    "WebhookTargetRefused",
    "WebhookEndpointGone",
    "RefundRefused",
    "UnbalancedEntry",
    "IdempotencyConflict",
    "InvalidInput",
    "NotFound",
    "IpfsNotFound",
    "IpfsTooLarge",
    "IpfsContentMismatch",
    "InvalidManifest",
    "RegistryNotFound",
)

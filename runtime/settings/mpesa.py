"""M-Pesa Daraja: endpoints, credentials, callback protection, limits and timings."""

from __future__ import annotations

from pydantic import BaseModel, SecretStr


class MpesaSettings(BaseModel):
    #: https://api.safaricom.co.ke in production, the sandbox stand-in locally
    daraja_base_url: str = "http://127.0.0.1:8101"
    daraja_consumer_key: SecretStr = SecretStr("dev-only-daraja-consumer-key")
    daraja_consumer_secret: SecretStr = SecretStr("dev-only-daraja-consumer-secret")
    daraja_shortcode: str = "174379"
    daraja_passkey: SecretStr = SecretStr("dev-only-daraja-passkey")
    daraja_transaction_type: str = "CustomerPayBillOnline"
    daraja_timeout_seconds: float = 15.0
    #: refresh the OAuth token this long before Daraja says it expires
    daraja_token_refresh_margin_seconds: float = 60.0

    #: secret path segment of the callback URL (Daraja does not sign callbacks)
    mpesa_callback_token: SecretStr = SecretStr("dev-only-mpesa-callback-token")
    #: where Daraja sends callbacks; defaults to API_PUBLIC_URL
    mpesa_callback_base_url: str | None = None
    #: CIDRs allowed to call the callback endpoint; empty allows any source
    mpesa_callback_allowed_ips: list[str] = []

    mpesa_min_amount_kes: int = 1
    mpesa_max_amount_kes: int = 150_000
    mpesa_account_reference: str = "Settle"

    mpesa_callback_wait_seconds: float = 90.0
    mpesa_query_interval_seconds: float = 10.0
    mpesa_query_max_attempts: int = 12
    mpesa_stk_push_max_attempts: int = 5
    mpesa_stk_push_initial_interval_seconds: float = 2.0
    mpesa_credit_max_attempts: int = 5
    mpesa_credit_initial_interval_seconds: float = 1.0

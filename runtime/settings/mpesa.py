"""M-Pesa Daraja: endpoints, credentials, callback protection, limits and timings."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, SecretStr, field_validator

#: Safaricom's published addresses that Daraja calls back from (check Safaricom's current list)
SAFARICOM_CALLBACK_IPS = (
    "196.201.214.200",
    "196.201.214.206",
    "196.201.213.114",
    "196.201.214.207",
    "196.201.214.208",
    "196.201.213.44",
    "196.201.212.127",
    "196.201.212.138",
    "196.201.212.129",
    "196.201.212.136",
    "196.201.212.74",
    "196.201.212.69",
)


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
    #: Transaction Status API: the initiator (API operator) and its encrypted security credential
    daraja_initiator_name: str = "testapi"
    daraja_security_credential: SecretStr = SecretStr("dev-only-daraja-security-credential")

    #: secret path segment of the callback URL (Daraja does not sign callbacks)
    mpesa_callback_token: SecretStr = SecretStr("dev-only-mpesa-callback-token")
    #: where Daraja sends callbacks; defaults to API_PUBLIC_URL
    mpesa_callback_base_url: str | None = None
    #: CIDRs allowed to call the callback endpoints; empty allows any source (refused with
    #: SETTLE_ENV=production). Safaricom's published addresses, e.g.
    #: ["196.201.214.200","196.201.214.206","196.201.213.114","196.201.214.207","196.201.214.208",
    #: "196.201.213.44","196.201.212.127","196.201.212.138","196.201.212.129","196.201.212.136",
    #: "196.201.212.74","196.201.212.69"]
    mpesa_callback_allowed_ips: list[str] = []
    #: CIDRs of the reverse proxies allowed to name the client in X-Forwarded-For; a request from
    #: any other peer is judged by its own address (uvicorn's proxy headers are off)
    trusted_proxy_ips: list[str] = []

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
    #: a push whose answer was lost (timeout, 5xx): how long its callback is awaited before the
    #: customer is prompted again
    mpesa_push_resolve_seconds: float = 120.0
    #: how long an STK prompt may still be on the customer's phone: a push whose CheckoutRequestID
    #: is unknown (the worker died after Daraja accepted it) is not repeated before this age
    mpesa_stk_prompt_expiry_seconds: float = 90.0
    #: a success callback nobody recorded matches a push attempt of the same phone and amount
    #: written at most this long before it
    mpesa_push_match_seconds: float = 300.0
    #: Transaction Status: how long its result (ResultURL) is awaited, and how many queries
    mpesa_transaction_status_wait_seconds: float = 60.0
    mpesa_transaction_status_max_attempts: int = 3

    @field_validator("mpesa_callback_allowed_ips", "trusted_proxy_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not an IP address or network") from exc
        return value

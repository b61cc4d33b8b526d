"""One settings class for every process, read from the environment (and ``.env``).

Each section lives in its own module; :class:`Settings` combines them. Names are the environment
variable names in lower case (``DATABASE_URL`` -> ``database_url``).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import PrivateAttr, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings.abuse import AbuseSettings
from runtime.settings.breakers import BreakerSettings
from runtime.settings.codec import CodecSettings
from runtime.settings.core import CoreSettings
from runtime.settings.credentials import CredentialSettings
from runtime.settings.deposits import DepositSettings
from runtime.settings.evm import EvmSettings
from runtime.settings.monitor import MonitorSettings
from runtime.settings.mpesa import MpesaSettings
from runtime.settings.rate_limits import RateLimitSettings
from runtime.settings.retention import RetentionSettings
from runtime.settings.sandbox import SandboxSettings
from runtime.settings.solana import SANDBOX_AUTHORITY_KEYPAIR, SolanaSettings
from runtime.settings.temporal import TemporalSettings
from runtime.settings.tickets import TicketSettings
from runtime.settings.verification import VerificationSettings

#: every default secret starts with this, so production can refuse to run with one
PLACEHOLDER_PREFIX = "dev-only-"
#: an HS256 secret shorter than the hash is guessable offline from any one token
MIN_JWT_SECRET_BYTES = 32
#: anvil's and BIP-39's public test mnemonics: anything derived from them is public
PUBLIC_TEST_MNEMONICS = (
    "test test test test test test test test test test test junk",
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
)


#: the database ``make run`` keeps its data in, on the embedded server
EMBEDDED_DATABASE = "settle"


def embedded_database_url(port: int, database: str = EMBEDDED_DATABASE) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{database}"


@lru_cache(maxsize=1)
def well_known_dev_secrets() -> frozenset[str]:
    """The mnemonics above and the first 20 keys anvil derives from its own: public knowledge,
    fine for the local chain, never for production."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    keys = {
        Account.from_mnemonic(
            PUBLIC_TEST_MNEMONICS[0], account_path=f"m/44'/60'/0'/0/{i}"
        ).key.hex()
        for i in range(20)
    }
    return frozenset(
        {*PUBLIC_TEST_MNEMONICS, *keys, *(f"0x{k}" for k in keys), SANDBOX_AUTHORITY_KEYPAIR}
    )


class Settings(
    BaseSettings,
    CoreSettings,
    TemporalSettings,
    CodecSettings,
    MpesaSettings,
    EvmSettings,
    DepositSettings,
    SolanaSettings,
    TicketSettings,
    RateLimitSettings,
    SandboxSettings,
    MonitorSettings,
    CredentialSettings,
    VerificationSettings,
    BreakerSettings,
    AbuseSettings,
    RetentionSettings,
):
    _embedded_database: bool = PrivateAttr(default=False)

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    @model_validator(mode="after")
    def _embedded_database_by_default(self) -> Settings:
        if not self.database_url:
            self._embedded_database = True
            self.database_url = embedded_database_url(self.embedded_postgres_port)
        elif not self.database_url.startswith("postgresql"):
            raise ValueError(
                "DATABASE_URL must be a PostgreSQL URL (postgresql+asyncpg://...); "
                "Settle no longer supports SQLite"
            )
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.settle_env != "production":
            return self
        placeholders = sorted(
            name.upper()
            for name, value in self
            if isinstance(value, SecretStr)
            and PLACEHOLDER_PREFIX in value.get_secret_value()
            and not (name == "jwt_secret" and self.jwt_algorithm == "RS256")
        )
        if self.jwt_algorithm == "RS256" and not self.jwt_public_key_path:
            raise ValueError("JWT_ALGORITHM=RS256 needs JWT_PUBLIC_KEY_PATH")
        if (
            self.jwt_algorithm == "HS256"
            and len(self.jwt_secret.get_secret_value().encode()) < MIN_JWT_SECRET_BYTES
        ):
            raise ValueError(
                f"SETTLE_ENV=production needs a JWT_SECRET of at least {MIN_JWT_SECRET_BYTES} "
                "bytes (or JWT_ALGORITHM=RS256)"
            )
        if not self.jwt_issuer or not self.jwt_audience:
            raise ValueError(
                "SETTLE_ENV=production needs JWT_ISSUER and JWT_AUDIENCE (tokens are checked "
                "for both)"
            )
        if placeholders:
            raise ValueError(
                "SETTLE_ENV=production refuses placeholder secrets; set real values for: "
                + ", ".join(placeholders)
            )
        dev_keys = sorted(
            name.upper()
            for name, value in self
            if isinstance(value, SecretStr) and value.get_secret_value() in well_known_dev_secrets()
        )
        if dev_keys:
            raise ValueError(
                "SETTLE_ENV=production refuses the local chain's well-known keys and mnemonics: "
                + ", ".join(dev_keys)
            )
        if not self.deposit_xpub:
            raise ValueError(
                "SETTLE_ENV=production needs DEPOSIT_XPUB: the API derives deposit addresses from "
                "it and holds no seed phrase (python -m providers.evm.xpub prints it)"
            )
        if self.uses_embedded_database:
            raise ValueError(
                "SETTLE_ENV=production needs DATABASE_URL pointing at its PostgreSQL "
                "(the embedded server is for local runs and tests)"
            )
        if not (self.payload_codec_keys or self.payload_codec_key_dir):
            raise ValueError(
                "SETTLE_ENV=production needs a payload codec key: PAYLOAD_CODEC_KEYS or "
                "PAYLOAD_CODEC_KEY_DIR (python -m runtime.codec new-key)"
            )
        if not self.mpesa_callback_allowed_ips:
            raise ValueError(
                "SETTLE_ENV=production needs MPESA_CALLBACK_ALLOWED_IPS: the addresses Daraja "
                "calls back from (Safaricom's published list, see .env.example); a callback from "
                "anywhere else is refused"
            )
        if self.fx_provider == "fixed" and not self.fx_allow_fixed_rate_in_production:
            raise ValueError(
                "SETTLE_ENV=production refuses FX_PROVIDER=fixed (one rate from FX_KES_PER_USDC "
                "for every deposit) unless FX_ALLOW_FIXED_RATE_IN_PRODUCTION=true"
            )
        return self

    @property
    def uses_embedded_database(self) -> bool:
        """True when DATABASE_URL is unset: `make run` starts the embedded PostgreSQL."""
        return self._embedded_database

    @property
    def callback_base_url(self) -> str:
        return (self.mpesa_callback_base_url or self.api_public_url).rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once. Tests build their own ``Settings(...)`` instead."""
    return Settings()


__all__ = [
    "EMBEDDED_DATABASE",
    "PLACEHOLDER_PREFIX",
    "Settings",
    "embedded_database_url",
    "get_settings",
]

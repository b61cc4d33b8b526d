"""EVM chain (Base; anvil locally): RPC, USDC contract, treasury signer, confirmations, fees."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

#: anvil's well-known account #1: the local treasury (refused when SETTLE_ENV=production)
ANVIL_TREASURY_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
#: where MockUSDC lands when anvil's account #0 deploys it as its first transaction
SANDBOX_USDC_ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
#: where CredentialRegistry lands when anvil's account #2 deploys it as its first transaction
SANDBOX_CREDENTIAL_REGISTRY_ADDRESS = "0x663F3ad617193148711d28f5334eE4Ed07016602"
#: where Disperse lands when anvil's account #7 deploys it as its first transaction
SANDBOX_DISPERSE_ADDRESS = "0xef11D1c2aA48826D4c41e54ab82D1Ff5Ad8A64Ca"


class EvmSettings(BaseModel):
    #: the chain's name in the API ("chain": "base") and its chain id (8453 on Base mainnet)
    evm_chain: str = "base"
    evm_chain_id: int = 31337
    evm_rpc_url: str = "http://127.0.0.1:8545"
    evm_rpc_timeout_seconds: float = 10.0
    usdc_contract_address: str = SANDBOX_USDC_ADDRESS
    #: CredentialRegistry: credential hashes and batch roots are anchored here (the treasury
    #: wallet is its issuer and sends through the wallet writer)
    credential_registry_address: str = SANDBOX_CREDENTIAL_REGISTRY_ADDRESS
    #: Disperse (``disperse(token, recipients, amounts)``): batched USDC payouts go through it
    #: (PAYOUT_BATCH_ENABLED); the treasury approves it once
    payout_disperse_address: str = SANDBOX_DISPERSE_ADDRESS
    #: batch the USDC payouts of M-Pesa deposits: those arriving within PAYOUT_BATCH_WAIT_SECONDS
    #: go out as one Disperse transaction (a batch that fails is paid one transfer at a time)
    payout_batch_enabled: bool = False
    #: how long a batch waits for more payouts after its first
    payout_batch_wait_seconds: float = Field(default=2.0, gt=0)
    #: payouts per batch at most (one transaction's gas grows with it)
    payout_batch_max: int = Field(default=50, ge=2, le=200)
    #: the treasury's key: every transaction from it goes through the wallet writer (the worker
    #: signs; the API never does: leave it empty in the API's environment)
    treasury_private_key: SecretStr = SecretStr(ANVIL_TREASURY_KEY)
    #: the treasury's address, for the API (balances in /metrics); empty: derived from
    #: TREASURY_PRIVATE_KEY
    treasury_address: str | None = None

    #: confirmations before a transfer counts (ignored when EVM_USE_SAFE_TAG is true)
    evm_confirmations: int = 2
    #: count a block as final once the node's "safe" tag has reached it
    evm_use_safe_tag: bool = False
    #: a sent transaction not mined after this long is replaced with higher fees
    evm_stuck_after_seconds: float = 30.0
    #: fee increase of a replacement, in percent (at least 12.5: nodes refuse smaller bumps)
    evm_fee_bump_percent: float = 12.5
    #: priority fee (tip) in gwei; empty asks the node (eth_maxPriorityFeePerGas)
    evm_priority_fee_gwei: float | None = None
    #: never offer more than this per gas, in gwei, even after bumps
    evm_max_fee_gwei: float = 500.0
    evm_poll_interval_seconds: float = 1.0
    #: how long one wait for confirmations may run before the activity is retried
    evm_confirmation_timeout_seconds: float = 600.0
    #: a worker silent this long while waiting for confirmations is presumed dead: retry elsewhere
    evm_heartbeat_timeout_seconds: float = 60.0
    #: widest eth_getLogs block range asked for (ranges the node refuses are split)
    evm_getlogs_max_range: int = 2000

    #: KES per 1 USDC for the M-Pesa deposit's conversion (the sandbox's fixed-rate provider)
    fx_kes_per_usdc: str = "129.00"
    #: how long a fetched FX rate is reused, in seconds
    fx_cache_seconds: float = 60.0
    #: where the KES -> USDC rate comes from; only ``fixed`` (FX_KES_PER_USDC) exists today
    fx_provider: Literal["fixed"] = "fixed"
    #: SETTLE_ENV=production refuses the fixed-rate provider unless this is true
    fx_allow_fixed_rate_in_production: bool = False
    #: the quote given when a deposit is initiated is honoured for payments within this time
    fx_quote_ttl_seconds: float = Field(default=900.0, gt=0)
    #: a later payment takes the current rate only within this many percent of the quote
    #: (else the deposit parks for an operator)
    fx_max_deviation_percent: Decimal = Field(default=Decimal("2"), ge=0)
    #: a short treasury (less USDC than a deposit's send): the send waits this long in all, with an
    #: alert ``treasury_low``, retrying with backoff, before the deposit parks for an operator
    treasury_short_max_wait_seconds: float = Field(default=3600.0, ge=0)
    #: first pause between checks of a short treasury (doubles each time)
    treasury_short_initial_interval_seconds: float = Field(default=30.0, gt=0)
    #: longest pause between checks of a short treasury
    treasury_short_max_interval_seconds: float = Field(default=300.0, gt=0)

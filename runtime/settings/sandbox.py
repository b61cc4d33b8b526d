"""The local stand-ins started by ``make run`` and by the tests."""

from __future__ import annotations

from pydantic import BaseModel


class SandboxSettings(BaseModel):
    sandbox_host: str = "127.0.0.1"
    sandbox_daraja_port: int = 8101
    #: seconds between an STK push and the sandbox's callback
    sandbox_daraja_callback_delay_seconds: float = 1.0

    sandbox_stripe_port: int = 8102
    #: where the Stripe stand-in delivers signed webhook events; defaults to this API's endpoint
    sandbox_stripe_webhook_url: str | None = None
    sandbox_smtp_port: int = 1025
    #: the SMTP catcher keeps each message here as an .eml file
    sandbox_mail_dir: str = ".data/mail"

    sandbox_solana_port: int = 8899
    #: SOL given to the Solana authority when the sandbox validator starts
    sandbox_solana_airdrop_sol: float = 100.0

    sandbox_ipfs_port: int = 8104
    #: the IPFS gateway stand-in serves <dir>/<cid> (a file) or <dir>/<cid>/<path> (a folder) and
    #: keeps what is added through its Kubo-style /api/v0/add here
    sandbox_ipfs_dir: str = ".data/ipfs"

    sandbox_anvil_port: int = 8545
    #: seconds between blocks on the local chain (Base makes one every 2 s)
    sandbox_anvil_block_time: float = 2.0
    #: anvil's state is loaded from and dumped to this file, so `make run` keeps the chain
    sandbox_anvil_state_file: str = ".data/anvil-state.json"
    #: key that deploys the sandbox contracts (anvil's account #0)
    sandbox_deployer_private_key: str = (
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    )
    #: key that deploys CredentialRegistry (anvil's account #2, so its address does not depend on
    #: how many transactions account #0 has sent)
    sandbox_registry_deployer_private_key: str = (
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
    )
    #: key that deploys ContentRegistry (anvil's account #3, so its address is that account's first
    #: contract whatever the other deployers have sent)
    sandbox_content_registry_deployer_private_key: str = (
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
    )
    #: key that deploys Disperse (anvil's account #7, so its address is that account's first
    #: contract whatever the other deployers have sent)
    sandbox_disperse_deployer_private_key: str = (
        "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"
    )
    #: USDC minted to the treasury when the sandbox chain is first set up (whole USDC)
    sandbox_treasury_usdc: int = 10_000_000

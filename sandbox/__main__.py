"""``python -m sandbox``: every local stand-in, on the ports from settings, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from fastapi import FastAPI
from solders.keypair import Keypair

from runtime.logging import configure_logging, get_logger
from runtime.settings import Settings, get_settings
from sandbox.daraja import create_daraja_app
from sandbox.ipfs import create_ipfs_app
from sandbox.serve import RunningServer, serve
from sandbox.smtp import MailCatcher, start_smtp
from sandbox.solana_rpc import create_solana_app, fund
from sandbox.stripe import create_stripe_app

log = get_logger("sandbox")


def daraja_app(settings: Settings) -> FastAPI:
    return create_daraja_app(
        consumer_key=settings.daraja_consumer_key.get_secret_value(),
        consumer_secret=settings.daraja_consumer_secret.get_secret_value(),
        shortcode=settings.daraja_shortcode,
        passkey=settings.daraja_passkey.get_secret_value(),
        callback_delay_seconds=settings.sandbox_daraja_callback_delay_seconds,
    )


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    servers: list[RunningServer] = []
    host = settings.sandbox_host
    servers.append(await serve(daraja_app(settings), host, settings.sandbox_daraja_port))
    log.info("sandbox daraja listening", url=servers[-1].url)
    solana = create_solana_app()
    authority = Keypair.from_base58_string(settings.solana_authority_keypair.get_secret_value())
    fund(solana, authority.pubkey(), settings.sandbox_solana_airdrop_sol)
    servers.append(await serve(solana, host, settings.sandbox_solana_port))
    log.info("sandbox solana rpc listening", url=servers[-1].url, authority=str(authority.pubkey()))
    webhook_url = (
        settings.sandbox_stripe_webhook_url
        or f"{settings.api_public_url.rstrip('/')}/webhooks/stripe"
    )
    stripe = create_stripe_app(
        api_key=settings.stripe_api_key.get_secret_value(),
        webhook_secret=settings.stripe_webhook_secret.get_secret_value(),
        webhook_url=webhook_url,
    )
    servers.append(await serve(stripe, host, settings.sandbox_stripe_port))
    log.info("sandbox stripe listening", url=servers[-1].url, webhooks_to=webhook_url)
    ipfs_dir = Path(settings.sandbox_ipfs_dir)
    servers.append(await serve(create_ipfs_app(ipfs_dir), host, settings.sandbox_ipfs_port))
    log.info("sandbox ipfs gateway listening", url=servers[-1].url, serves_from=str(ipfs_dir))
    mail = MailCatcher(directory=Path(settings.sandbox_mail_dir))
    smtp = await start_smtp(mail, host, settings.sandbox_smtp_port)
    log.info(
        "sandbox smtp catcher listening",
        port=settings.sandbox_smtp_port,
        keeps_mail_in=settings.sandbox_mail_dir,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    smtp.close()
    for server in servers:
        with contextlib.suppress(Exception):
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())

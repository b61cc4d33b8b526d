"""Publish a file as its creator would: sign its hash, put the manifest on IPFS, register it.

``python -m sandbox.content publish FILE [--key 0x…]`` does it against the chain and gateway of
the settings (``make run``'s sandboxes by default) and prints what to send to
``POST /api/verification-jobs/verify``. Tests call :func:`publish` directly.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from domain.content import (
    Manifest,
    build_manifest,
    content_hash,
    ipfs_uri,
    manifest_bytes,
    register_calldata,
)
from providers.evm import EvmClient, LocalSigner
from providers.ipfs import IpfsGateway
from runtime.settings import get_settings
from sandbox.chain import _send

#: anvil's account #4: a creator no sandbox deployment or test wallet uses (public, local only)
SANDBOX_CREATOR_KEY = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"


@dataclass(frozen=True)
class Published:
    content_hash: str
    #: ipfs://<cid> of the manifest
    manifest_uri: str
    manifest: Manifest
    #: None when not registered (``register=False``)
    tx_hash: str | None
    block: int | None


async def publish(
    client: EvmClient,
    gateway: IpfsGateway,
    registry: str,
    creator_key: str,
    data: bytes,
    *,
    content_uri: str | None = None,
    created_at: datetime | None = None,
    register: bool = True,
) -> Published:
    """Hash and sign ``data``, add its manifest to IPFS and register it from the creator's key,
    waiting until mined. Without ``content_uri`` the file itself is added to IPFS and the
    manifest points at it. A hash registered before makes the registration revert
    (``EvmReverted``): the first creator keeps it."""
    digest = content_hash(data)
    if content_uri is None:
        content_uri = ipfs_uri(await gateway.add(data, name="content"))
    manifest = build_manifest(creator_key, digest, content_uri, created_at or datetime.now(UTC))
    manifest_uri = ipfs_uri(await gateway.add(manifest_bytes(manifest), name="manifest.json"))
    if not register:
        return Published(digest, manifest_uri, manifest, None, None)
    receipt = await _send(
        client,
        LocalSigner(creator_key),
        {"to": registry, "data": register_calldata(digest, manifest_uri)},
    )
    return Published(
        digest,
        manifest_uri,
        manifest,
        str(receipt["transactionHash"]),
        int(receipt["blockNumber"], 16),
    )


def verify_command(api_url: str, file: Path, registry: str, manifest_uri: str) -> str:
    """A curl for ``POST /api/verification-jobs/verify`` with this file and manifest."""
    return " \\\n     ".join(
        [
            f"curl -s -X POST {api_url.rstrip('/')}/api/verification-jobs/verify",
            '-H "Authorization: Bearer $TOKEN"',
            f"-F file=@{shlex.quote(str(file))}",
            f"-F registryAddress={registry}",
            f"-F manifestURI={manifest_uri}",
        ]
    )


async def _publish_file(args: argparse.Namespace, file: Path, data: bytes) -> int:
    settings = get_settings()
    client = EvmClient(settings.evm_rpc_url, chain_id=settings.evm_chain_id)
    gateway = IpfsGateway(
        settings.ipfs_gateway_url,
        timeout_seconds=settings.ipfs_timeout_seconds,
        max_bytes=settings.ipfs_max_manifest_bytes,
    )
    try:
        await client.ensure_chain()
        published = await publish(
            client,
            gateway,
            settings.content_registry_address,
            args.key,
            data,
            content_uri=args.content_uri,
            register=not args.no_register,
        )
    finally:
        await gateway.aclose()
        await client.aclose()
    print(f"content hash  {published.content_hash}")
    print(f"creator       {published.manifest.creator}")
    print(f"manifest URI  {published.manifest_uri}")
    print(f"content URI   {published.manifest.contentURI}")
    if published.tx_hash:
        print(f"registered    tx {published.tx_hash}, block {published.block}")
    print("\nverify it (TOKEN: a JWT for the API):\n")
    print(
        verify_command(
            settings.api_public_url,
            file,
            settings.content_registry_address,
            published.manifest_uri,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.content", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    publish_parser = commands.add_parser("publish", help="sign, add the manifest, register")
    publish_parser.add_argument("file", help="the file to publish")
    publish_parser.add_argument(
        "--key", default=SANDBOX_CREATOR_KEY, help="the creator's private key (anvil #4 default)"
    )
    publish_parser.add_argument(
        "--content-uri", default=None, help="where the content lives (default: add it to IPFS)"
    )
    publish_parser.add_argument(
        "--no-register", action="store_true", help="only sign and add the manifest"
    )
    args = parser.parse_args(argv)
    file = Path(args.file)
    return asyncio.run(_publish_file(args, file, file.read_bytes()))


if __name__ == "__main__":
    sys.exit(main())

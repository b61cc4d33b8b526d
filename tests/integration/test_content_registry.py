"""ContentRegistry on anvil and the IPFS gateway client against the sandbox gateway (and a
misbehaving one), on real sockets: publish, read back, prove, and every way a gateway fails."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import Response, StreamingResponse

from domain.content import (
    check_bundle,
    content_hash,
    ipfs_uri,
    parse_manifest,
    proof_bundle,
    raw_cid,
)
from domain.errors import (
    EvmReverted,
    IpfsContentMismatch,
    IpfsNotFound,
    IpfsTooLarge,
    IpfsUnavailable,
    RegistryNotFound,
)
from providers.evm.content_registry import ContentRegistryReader
from providers.ipfs import IpfsGateway
from runtime.settings.verification import SANDBOX_CONTENT_REGISTRY_ADDRESS
from sandbox.content import SANDBOX_CREATOR_KEY, publish
from sandbox.ipfs import IpfsState, create_ipfs_app
from sandbox.serve import RunningServer, serve
from tests.fixtures.chain import Chain

REGISTRY = SANDBOX_CONTENT_REGISTRY_ADDRESS
#: anvil's account #6: a second creator
OTHER_KEY = "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e"
IS_REGISTERED = "0x27258b22"  # isRegistered(bytes32)


def unique_file() -> bytes:
    """The session's chain keeps every registration: each test registers content of its own."""
    return f"certificate {uuid.uuid4()}\n".encode()


@dataclass
class Gateway:
    server: RunningServer
    state: IpfsState
    client: IpfsGateway

    @property
    def directory(self) -> Path:
        return self.state.directory


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    app = create_ipfs_app(tmp_path)
    server = await serve(app)
    client = IpfsGateway(server.url, timeout_seconds=5, max_bytes=64 * 1024)
    try:
        yield Gateway(server, app.state.sandbox, client)
    finally:
        await client.aclose()
        await server.stop()


async def test_publish_read_back_and_prove(chain: Chain, gateway: Gateway) -> None:
    data = unique_file()
    published = await publish(
        chain.client,
        gateway.client,
        REGISTRY,
        SANDBOX_CREATOR_KEY,
        data,
        created_at=datetime(2025, 5, 1, tzinfo=UTC),
    )
    assert published.content_hash == content_hash(data)
    assert published.tx_hash is not None and published.block is not None

    reader = ContentRegistryReader(chain.client, REGISTRY)
    entry = await reader.entry(published.content_hash)
    assert entry is not None
    assert entry.creator == published.manifest.creator
    assert entry.manifestURI == published.manifest_uri
    assert entry.blockNumber == published.block
    registered = await chain.client.call(REGISTRY, IS_REGISTERED + published.content_hash[2:])
    assert int(registered, 16) == 1

    manifest_raw = await gateway.client.fetch(published.manifest_uri)
    manifest = parse_manifest(manifest_raw)
    assert manifest == published.manifest
    assert await gateway.client.fetch(manifest.contentURI) == data

    registration = await reader.registration(entry)
    assert registration["transaction"]["hash"] == published.tx_hash
    bundle = proof_bundle(
        chain.chain_id, REGISTRY, entry, registration, manifest.signature, manifest, manifest_raw
    )
    assert check_bundle(bundle, data)["all"], check_bundle(bundle, data)
    assert check_bundle(bundle)["all"]

    altered_file = check_bundle(bundle, data + b" ")
    assert not altered_file["file_hash"] and not altered_file["all"]
    altered_manifest = bundle.model_copy(
        update={"manifestRaw": manifest_raw.decode().replace("2025-05-01", "2025-05-02")}
    )
    checked = check_bundle(altered_manifest, data)
    assert not checked["manifest_raw"] and not checked["manifest_cid"] and not checked["all"]


async def test_unknown_hash_and_missing_registry(chain: Chain) -> None:
    reader = ContentRegistryReader(chain.client, REGISTRY)
    assert await reader.entry(content_hash(unique_file())) is None
    nowhere = ContentRegistryReader(chain.client, "0x" + "42" * 20)
    with pytest.raises(RegistryNotFound):
        await nowhere.entry(content_hash(b"anything"))


async def test_first_registration_wins(chain: Chain, gateway: Gateway) -> None:
    data = unique_file()
    first = await publish(chain.client, gateway.client, REGISTRY, SANDBOX_CREATOR_KEY, data)
    with pytest.raises(EvmReverted) as reverted:
        await publish(chain.client, gateway.client, REGISTRY, OTHER_KEY, data)
    # the registry's custom error, decoded by its ABI (not "custom error 0x...")
    assert f"AlreadyRegistered(contentHash={first.content_hash}" in str(reverted.value)
    with pytest.raises(EvmReverted):
        await publish(chain.client, gateway.client, REGISTRY, SANDBOX_CREATOR_KEY, data)
    entry = await ContentRegistryReader(chain.client, REGISTRY).entry(first.content_hash)
    assert entry is not None and entry.creator == first.manifest.creator


async def test_publish_without_registering(chain: Chain, gateway: Gateway) -> None:
    data = unique_file()
    published = await publish(
        chain.client, gateway.client, REGISTRY, SANDBOX_CREATOR_KEY, data, register=False
    )
    assert published.tx_hash is None
    assert await ContentRegistryReader(chain.client, REGISTRY).entry(content_hash(data)) is None
    assert (gateway.directory / published.manifest_uri.removeprefix("ipfs://")).is_file()


# --- the sandbox gateway ----------------------------------------------------------------------


async def test_sandbox_gateway_serves_files_and_folders(gateway: Gateway) -> None:
    data = b'{"hello": "world"}'
    cid = await gateway.client.add(data, name="hello.json")
    assert cid == raw_cid(data)
    assert await gateway.client.fetch(ipfs_uri(cid)) == data

    folder_cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
    (gateway.directory / folder_cid / "docs").mkdir(parents=True)
    (gateway.directory / folder_cid / "docs" / "a.txt").write_bytes(b"inside a folder")
    assert await gateway.client.fetch(f"ipfs://{folder_cid}/docs/a.txt") == b"inside a folder"

    async with httpx.AsyncClient(base_url=gateway.server.url) as http:
        head = await http.head(f"/ipfs/{cid}")
        assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
        assert head.content == b""
        assert (await http.get("/ipfs/not-a-cid")).status_code == 400
        (gateway.directory.parent / "secret").write_bytes(b"outside")
        escape = await http.get(f"/ipfs/{folder_cid}/%2e%2e/%2e%2e/secret")
        assert escape.status_code == 404
    # the escape reached the handler, which refused it
    assert gateway.state.requests["not_found"] == 1
    assert gateway.state.requests["add"] == 1 and gateway.state.added == [cid]


async def test_gateway_404_is_not_found(gateway: Gateway) -> None:
    uri = ipfs_uri(raw_cid(b"never added"))
    with pytest.raises(IpfsNotFound, match="gateway 404"):
        await gateway.client.fetch(uri)


async def test_oversize_content_is_not_read(gateway: Gateway) -> None:
    big = b"x" * (200 * 1024)
    cid = await gateway.client.add(big)
    with pytest.raises(IpfsTooLarge):
        await gateway.client.fetch(ipfs_uri(cid))
    assert await gateway.client.fetch(ipfs_uri(cid), max_bytes=len(big)) == big


async def test_wrong_bytes_for_a_raw_cid_are_refused(gateway: Gateway) -> None:
    cid = raw_cid(b"the real manifest")
    (gateway.directory / cid).write_bytes(b"something else")
    with pytest.raises(IpfsContentMismatch):
        await gateway.client.fetch(ipfs_uri(cid))


# --- a misbehaving gateway --------------------------------------------------------------------


@dataclass
class Misbehaving:
    server: RunningServer
    #: what /ipfs/{cid} does next: "hang", "drip" (an endless body without a length) or a status
    mode: str | int = "hang"
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def misbehaving() -> AsyncIterator[Misbehaving]:
    app = FastAPI()
    state: dict[str, Misbehaving] = {}

    @app.get("/ipfs/{cid}")
    async def answer(cid: str) -> Response:
        bad = state["gateway"]
        if bad.mode == "hang":
            await bad.release.wait()
            return Response(b"too late")
        if bad.mode == "drip":

            async def endless() -> AsyncIterator[bytes]:
                while not bad.release.is_set():
                    yield b"y" * 4096
                    await asyncio.sleep(0)

            return StreamingResponse(endless())
        return Response(b"", status_code=int(bad.mode))

    server = await serve(app)
    gateway = state["gateway"] = Misbehaving(server)
    try:
        yield gateway
    finally:
        gateway.release.set()
        await server.stop()


async def test_a_hanging_gateway_is_unavailable_after_the_timeout(
    misbehaving: Misbehaving,
) -> None:
    client = IpfsGateway(misbehaving.server.url, timeout_seconds=0.3, max_bytes=1024)
    started = asyncio.get_running_loop().time()
    try:
        with pytest.raises(IpfsUnavailable, match="did not answer"):
            await client.fetch(ipfs_uri(raw_cid(b"slow")))
    finally:
        await client.aclose()
    assert asyncio.get_running_loop().time() - started < 2


async def test_an_endless_body_stops_at_the_limit(misbehaving: Misbehaving) -> None:
    misbehaving.mode = "drip"
    client = IpfsGateway(misbehaving.server.url, timeout_seconds=5, max_bytes=64 * 1024)
    try:
        with pytest.raises(IpfsTooLarge, match="not read further"):
            await client.fetch(ipfs_uri(raw_cid(b"endless")))
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, IpfsUnavailable),
        (502, IpfsUnavailable),
        (429, IpfsUnavailable),
        (400, IpfsNotFound),
        (403, IpfsNotFound),
        (410, IpfsNotFound),
    ],
)
async def test_gateway_statuses(
    misbehaving: Misbehaving, status: int, error: type[Exception]
) -> None:
    misbehaving.mode = status
    client = IpfsGateway(misbehaving.server.url, timeout_seconds=5, max_bytes=1024)
    try:
        with pytest.raises(error, match=str(status)):
            await client.fetch(ipfs_uri(raw_cid(b"x")))
    finally:
        await client.aclose()


async def test_an_unreachable_gateway_is_unavailable() -> None:
    client = IpfsGateway("http://127.0.0.1:9", timeout_seconds=1, max_bytes=1024)
    try:
        with pytest.raises(IpfsUnavailable):
            await client.fetch(ipfs_uri(raw_cid(b"x")))
    finally:
        await client.aclose()

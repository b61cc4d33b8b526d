"""Content verification: content hashes, signed manifests, ContentRegistry encoding, ipfs:// URIs
and the proof bundle a third party checks offline.

A file's content hash is ``keccak256`` of its bytes, as the registry's ``bytes32 contentHash``
takes it. Its creator signs those 32 raw bytes with EIP-191 (``personal_sign``), so any wallet can
produce the signature and anyone can recover the signer. The manifest (JSON, on IPFS) carries the
hash, where the content lives, the creator and the signature; the registry records the first
account to register the hash and the manifest's URI. Nothing here does I/O except
:func:`hash_file`, which reads a local file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from Crypto.Hash import keccak as _keccak
from eth_abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from domain.addresses import normalize_evm_address, same_address
from domain.credentials import cid_codec_digest, validate_cid
from domain.errors import InvalidManifest

MANIFEST_VERSION = 1
CONTENT_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
#: r (32 bytes) ‖ s (32 bytes) ‖ v (1 byte), as personal_sign returns it
SIGNATURE = re.compile(r"^0x[0-9a-fA-F]{130}$")
ZERO_ADDRESS = "0x" + "00" * 20
HASH_CHUNK_BYTES = 1024 * 1024

#: multicodec and multihash codes of a raw-leaves CIDv1 (what ``ipfs add --raw-leaves`` gives a
#: file that fits in one block)
RAW_CODEC, SHA2_256, DIGEST_BYTES = 0x55, 0x12, 32


def _keccak_hex(data: bytes) -> str:
    return "0x" + _keccak.new(digest_bits=256, data=data).hexdigest()


REGISTER_SELECTOR = bytes.fromhex(_keccak_hex(b"register(bytes32,string)")[2:10])
ENTRY_SELECTOR = bytes.fromhex(_keccak_hex(b"entry(bytes32)")[2:10])
CONTENT_REGISTERED_TOPIC = _keccak_hex(b"ContentRegistered(bytes32,address,string)")


# --- hashing and signing -------------------------------------------------------------------------


def content_hash(data: bytes) -> str:
    """``keccak256(data)``, 0x-hex in lower case: the registry's ``bytes32 contentHash``."""
    return _keccak_hex(data)


def hash_file(path: Path) -> str:
    """:func:`content_hash` of a file, read 1 MiB at a time so a large upload never sits in
    memory whole."""
    hasher = _keccak.new(digest_bits=256)
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK_BYTES):
            hasher.update(chunk)
    return "0x" + hasher.hexdigest()


def _hash_bytes(value: str) -> bytes:
    if not CONTENT_HASH.fullmatch(value):
        raise ValueError(f"not a content hash (0x + 64 hex): {value!r}")
    return bytes.fromhex(value[2:])


def sign_content_hash(private_key: str, content_hash: str) -> str:
    """EIP-191 ``personal_sign`` over the hash's 32 raw bytes (not its hex text), 0x-hex."""
    message = encode_defunct(primitive=_hash_bytes(content_hash))
    return "0x" + bytes(Account.sign_message(message, private_key).signature).hex()


def recover_signer(content_hash: str, signature: str) -> str | None:
    """The checksummed address that signed ``content_hash``; None when the signature is
    malformed or recovers no key (a forged or damaged signature)."""
    message = encode_defunct(primitive=_hash_bytes(content_hash))
    if not SIGNATURE.fullmatch(signature):
        return None
    try:
        return str(Account.recover_message(message, signature=bytes.fromhex(signature[2:])))
    except Exception:  # eth_keys' BadSignature, ValueError on an out-of-range v, r or s
        return None


# --- manifests -----------------------------------------------------------------------------------


class Manifest(BaseModel):
    """What a creator publishes on IPFS next to (or about) a file. Field names are the JSON's."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: int = MANIFEST_VERSION
    contentHash: str
    contentURI: str
    creator: str
    signature: str
    createdAt: datetime

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != MANIFEST_VERSION:
            raise ValueError(f"unsupported manifest version {value}, expected {MANIFEST_VERSION}")
        return value

    @field_validator("contentHash")
    @classmethod
    def _hash_shape(cls, value: str) -> str:
        if not CONTENT_HASH.fullmatch(value):
            raise ValueError("must be 0x + 64 hex (keccak256 of the file)")
        return value.lower()

    @field_validator("contentURI")
    @classmethod
    def _uri_present(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("creator")
    @classmethod
    def _creator_address(cls, value: str) -> str:
        return normalize_evm_address(value)

    @field_validator("signature")
    @classmethod
    def _signature_shape(cls, value: str) -> str:
        if not SIGNATURE.fullmatch(value):
            raise ValueError("must be 0x + 130 hex (a 65-byte EIP-191 signature)")
        return value.lower()

    @field_validator("createdAt")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        """A time without an offset is taken as UTC, the documented zone."""
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_serializer("createdAt")
    def _iso_utc(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _field_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "manifest"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest in ``raw`` (UTF-8 JSON); :class:`InvalidManifest` naming the first bad field
    otherwise, so the creator knows what to fix."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidManifest(f"manifest is not UTF-8 JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidManifest(f"manifest is JSON but not an object (a {type(document).__name__})")
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        raise InvalidManifest(f"invalid manifest: {_field_errors(exc)}") from exc


def manifest_bytes(manifest: Manifest) -> bytes:
    """Canonical JSON (sorted keys, 2-space indent, trailing newline): the same manifest always
    gives the same bytes, hence the same CID."""
    return (json.dumps(manifest.model_dump(mode="json"), sort_keys=True, indent=2) + "\n").encode()


def build_manifest(
    private_key: str, content_hash: str, content_uri: str, created_at: datetime
) -> Manifest:
    """A signed manifest: the creator is the key's address."""
    return Manifest(
        contentHash=content_hash,
        contentURI=content_uri,
        creator=Account.from_key(private_key).address,
        signature=sign_content_hash(private_key, content_hash),
        createdAt=created_at,
    )


# --- the ContentRegistry contract ----------------------------------------------------------------


class RegistryEntry(BaseModel):
    """What ``ContentRegistry.entry(contentHash)`` returns for a registered hash."""

    contentHash: str
    creator: str
    manifestURI: str
    registeredAt: int
    blockNumber: int


def register_calldata(content_hash: str, manifest_uri: str) -> str:
    """``register(bytes32 contentHash, string manifestURI)`` calldata, 0x-hex."""
    args = encode(["bytes32", "string"], [_hash_bytes(content_hash), manifest_uri])
    return "0x" + (REGISTER_SELECTOR + args).hex()


def entry_calldata(content_hash: str) -> str:
    """``entry(bytes32 contentHash)`` calldata, 0x-hex."""
    return "0x" + (ENTRY_SELECTOR + encode(["bytes32"], [_hash_bytes(content_hash)])).hex()


def decode_entry(content_hash: str, raw_hex: str) -> RegistryEntry | None:
    """The ``entry`` call's answer; None when the hash was never registered (zero creator)."""
    try:
        creator, manifest_uri, registered_at, block_number = decode(
            ["address", "string", "uint64", "uint64"], bytes.fromhex(raw_hex.removeprefix("0x"))
        )
    except Exception as exc:  # eth_abi's DecodingError and friends
        raise ValueError(f"not an entry(bytes32) answer: {raw_hex[:80]!r}") from exc
    if int(creator, 16) == 0:
        return None
    return RegistryEntry(
        contentHash=content_hash.lower(),
        creator=to_checksum_address(creator),
        manifestURI=manifest_uri,
        registeredAt=registered_at,
        blockNumber=block_number,
    )


def decode_register_input(data: str | bytes) -> tuple[str, str]:
    """``(contentHash, manifestURI)`` of ``register`` calldata; ValueError for anything else."""
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data
    if raw[:4] != REGISTER_SELECTOR:
        raise ValueError("not a register(bytes32,string) call")
    hash_bytes, manifest_uri = decode(["bytes32", "string"], raw[4:])
    return "0x" + bytes(hash_bytes).hex(), str(manifest_uri)


def _topic_address(address: str) -> str:
    return "0x" + address.lower().removeprefix("0x").rjust(64, "0")


# --- IPFS ----------------------------------------------------------------------------------------


def parse_ipfs_uri(uri: str) -> tuple[str, str]:
    """``(cid, path)`` of ``ipfs://<cid>[/path]``, the path without its leading slash."""
    if not isinstance(uri, str) or not uri.startswith("ipfs://"):
        raise ValueError(f"not an ipfs:// URI: {uri!r}")
    cid, _, path = uri.removeprefix("ipfs://").partition("/")
    if not cid:
        raise ValueError(f"no CID in {uri!r}")
    try:
        validate_cid(cid)
    except ValueError as exc:
        raise ValueError(f"bad CID in {uri!r}: {exc}") from exc
    if any(c in path for c in "?#\\") or any(c.isspace() for c in path):
        raise ValueError(f"the path of {uri!r} may not hold a query, a fragment or whitespace")
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError(f"the path of {uri!r} may not hold . or .. segments")
    return cid, path.strip("/")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def raw_cid(data: bytes) -> str:
    """CIDv1, raw codec, sha2-256, base32 lower case (``b…``): Kubo's ``add --cid-version=1
    --raw-leaves`` for a file of at most one block (256 KiB)."""
    digest = hashlib.sha256(data).digest()
    binary = _varint(1) + _varint(RAW_CODEC) + _varint(SHA2_256) + _varint(DIGEST_BYTES) + digest
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


def cid_matches(cid: str, data: bytes) -> bool | None:
    """Whether ``data`` is what a raw-codec CID names; None when the CID names a UnixFS DAG
    (dag-pb, every CIDv0) whose bytes only a full DAG walk could check."""
    codec, digest = cid_codec_digest(cid)
    if codec != RAW_CODEC:
        return None
    return hashlib.sha256(data).digest() == digest


def ipfs_uri(cid: str, path: str = "") -> str:
    return f"ipfs://{cid}/{path}" if path else f"ipfs://{cid}"


# --- proof bundle --------------------------------------------------------------------------------


class ProofTransaction(BaseModel):
    """The ``register`` transaction; ``raw`` is the signed bytes (eth_getRawTransactionByHash),
    from which hash, sender, target and input can all be re-derived."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    hash: str
    from_: str = Field(alias="from")
    to: str
    input: str
    blockNumber: int
    blockHash: str
    raw: str


class ProofLog(BaseModel):
    address: str
    topics: list[str]
    data: str
    logIndex: int


class ProofBlock(BaseModel):
    number: int
    hash: str
    parentHash: str
    timestamp: int
    stateRoot: str
    transactionsRoot: str
    receiptsRoot: str


class ProofBundle(BaseModel):
    """Everything needed to check, without any network, that a creator registered a file:
    the registry entry, the transaction that wrote it, its log and block, the manifest exactly as
    fetched, and the signature. See :func:`check_bundle`."""

    version: int = 1
    chainId: int
    registry: str
    entry: RegistryEntry
    transaction: ProofTransaction
    log: ProofLog
    block: ProofBlock
    signature: str
    manifestURI: str
    manifest: Manifest
    manifestRaw: str


def proof_bundle(
    chain_id: int,
    registry: str,
    entry: RegistryEntry,
    registration: dict[str, Any],
    signature: str,
    manifest: Manifest,
    manifest_raw: bytes | str,
) -> ProofBundle:
    """Assemble a bundle from ``ContentRegistryReader.registration``'s answer
    (``{"transaction", "log", "block"}``) and the manifest as fetched."""
    raw_text = manifest_raw.decode("utf-8") if isinstance(manifest_raw, bytes) else manifest_raw
    return ProofBundle(
        chainId=chain_id,
        registry=to_checksum_address(registry),
        entry=entry,
        transaction=ProofTransaction.model_validate(registration["transaction"]),
        log=ProofLog.model_validate(registration["log"]),
        block=ProofBlock.model_validate(registration["block"]),
        signature=signature,
        manifestURI=entry.manifestURI,
        manifest=manifest,
        manifestRaw=raw_text,
    )


def _decoded_raw_tx(raw: bytes) -> dict[str, Any]:
    """``to``, ``data`` and ``chainId`` of a signed transaction (typed or legacy)."""
    from eth_account._utils.legacy_transactions import Transaction
    from eth_account.typed_transactions import TypedTransaction
    from hexbytes import HexBytes

    if raw and raw[0] <= 0x7F:
        fields: dict[str, Any] = dict(TypedTransaction.from_bytes(HexBytes(raw)).as_dict())
        return {"to": fields.get("to"), "data": fields.get("data"), "chainId": fields["chainId"]}
    legacy = Transaction.from_bytes(raw)
    chain_id = (legacy.v - 35) // 2 if legacy.v >= 35 else None
    return {"to": legacy.to, "data": legacy.data, "chainId": chain_id}


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, bytes | bytearray) else str(value)


def check_bundle(bundle: ProofBundle, file_bytes: bytes | None = None) -> dict[str, bool]:
    """The checks a third party runs on a bundle, offline: each by name, and ``all``.

    What it proves: the signed transaction (whose hash is the one named, so it is the one the
    block refers to) was sent by the entry's creator to the registry and called
    ``register(contentHash, manifestURI)``; the log and block agree with it; the manifest is the
    one fetched (and, for a raw CID, the one the URI names); the creator signed the content hash;
    and, given the file, the file is the content. What only a node can add: that the block is on
    the canonical chain.
    """
    entry, tx = bundle.entry, bundle.transaction
    try:
        raw_tx = bytes.fromhex(tx.raw.removeprefix("0x"))
    except ValueError:
        raw_tx = b""
    decoded: dict[str, Any] = {}

    def run(check: Any) -> bool:
        try:
            return bool(check())
        except Exception:
            return False

    def decoded_tx() -> dict[str, Any]:
        if not decoded:
            decoded.update(_decoded_raw_tx(raw_tx))
        return decoded

    def transaction_input() -> bool:
        raw_input = _hex(decoded_tx()["data"])
        if raw_input.lower() != tx.input.lower():
            return False
        return decode_register_input(raw_input) == (entry.contentHash.lower(), entry.manifestURI)

    def log_matches() -> bool:
        (uri,) = decode(["string"], bytes.fromhex(bundle.log.data.removeprefix("0x")))
        expected = [
            CONTENT_REGISTERED_TOPIC,
            entry.contentHash.lower(),
            _topic_address(entry.creator),
        ]
        return (
            same_address(bundle.log.address, bundle.registry)
            and [t.lower() for t in bundle.log.topics] == expected
            and uri == entry.manifestURI
        )

    def block_matches() -> bool:
        block = bundle.block
        return (
            tx.blockNumber == block.number == entry.blockNumber
            and tx.blockHash.lower() == block.hash.lower()
            and entry.registeredAt == block.timestamp
        )

    def manifest_cid() -> bool:
        cid, path = parse_ipfs_uri(bundle.manifestURI)
        return path != "" or cid_matches(cid, bundle.manifestRaw.encode("utf-8")) is not False

    def signature() -> bool:
        signer = recover_signer(entry.contentHash, bundle.signature)
        return (
            bundle.signature.lower() == bundle.manifest.signature.lower()
            and same_address(signer, bundle.manifest.creator)
            and same_address(signer, entry.creator)
        )

    checks = {
        "transaction_hash": run(lambda: raw_tx and content_hash(raw_tx) == tx.hash.lower()),
        "transaction_sender": run(
            lambda: (
                same_address(Account.recover_transaction(raw_tx), entry.creator)
                and same_address(tx.from_, entry.creator)
            )
        ),
        "transaction_target": run(
            lambda: (
                same_address(_hex(decoded_tx()["to"]), bundle.registry)
                and same_address(tx.to, bundle.registry)
            )
        ),
        "transaction_chain": run(lambda: decoded_tx()["chainId"] == bundle.chainId),
        "transaction_input": run(transaction_input),
        "log": run(log_matches),
        "block": run(block_matches),
        "manifest_raw": run(lambda: parse_manifest(bundle.manifestRaw.encode()) == bundle.manifest),
        "manifest_uri": run(lambda: bundle.manifestURI == entry.manifestURI),
        "manifest_cid": run(manifest_cid),
        "manifest_hash": run(lambda: bundle.manifest.contentHash == entry.contentHash.lower()),
        "signature": run(signature),
    }
    if file_bytes is not None:
        checks["file_hash"] = content_hash(file_bytes) == entry.contentHash.lower()
    checks["all"] = all(checks.values())
    return checks

"""Credential anchoring: ids, hashes and IPFS CIDs as the registry takes them, and the workflow's
inputs and state.

A credential id is the caller's string, unique within their tenant; on chain it is
``keccak256(abi.encode(string tenant, string id))`` (the registry's ``bytes32 credentialId``):
each string is length-prefixed, so two tenants' ids never collide and an id reveals nothing of
another tenant's. Anchors made before that used ``keccak256(utf8("<tenant>:<id>"))``, which gave
tenant ``a:b`` + id ``c`` and tenant ``a`` + id ``b:c`` the same key; they are still found (the
lookup tries the new key, then the legacy one, and takes a legacy record only when its stored
tenant and id are the caller's).
"""

from __future__ import annotations

import base64
import re
from enum import StrEnum

from eth_abi import encode
from eth_utils import keccak
from pydantic import BaseModel, Field

from domain.queues import Routed

CREDENTIAL_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
DATA_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
ANCHOR_SELECTOR = keccak(text="anchor(bytes32,bytes32,string)")[:4]
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
#: multihash functions a CID may use here: sha2-256 (0x12) and blake2b-256 (0xb220)
_SHA2_256, _DIGEST = 0x12, 32
#: the content codec of every CIDv0 (a UnixFS node)
_DAG_PB = 0x70


class AnchorStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"


def credential_key(tenant: str, credential_id: str) -> str:
    """The registry's ``bytes32 credentialId`` for a tenant's credential id, 0x-hex: the hash of
    the ABI encoding of both strings (offsets and lengths make the pair unambiguous)."""
    return "0x" + keccak(encode(["string", "string"], [tenant, credential_id])).hex()


def legacy_credential_key(tenant: str, credential_id: str) -> str:
    """The key of anchors made before :func:`credential_key` (``keccak256("<tenant>:<id>")``):
    ambiguous when a tenant or an id holds a colon, so only ever a fallback for lookups."""
    return "0x" + keccak(text=f"{tenant}:{credential_id}").hex()


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58.find(char)
        if index < 0:
            raise ValueError(f"not base58: {char!r}")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def _check_multihash(data: bytes) -> bytes:
    """The sha2-256 digest a multihash carries."""
    code, at = _varint(data, 0)
    length, at = _varint(data, at)
    if code != _SHA2_256 or length != _DIGEST or len(data) - at != _DIGEST:
        raise ValueError("the multihash is not a 32-byte sha2-256 digest")
    return data[at:]


def cid_codec_digest(cid: str) -> tuple[int, bytes]:
    """A valid CID's content codec (0x55 raw, 0x70 dag-pb: a CIDv0 is always dag-pb) and its
    sha2-256 digest, so a raw block can be checked against its CID without a gateway's word."""
    if cid.startswith("Qm") and len(cid) == 46:
        return _DAG_PB, _check_multihash(_b58decode(cid))
    if cid.startswith("b") and re.fullmatch(r"b[a-z2-7]+", cid):
        raw = cid[1:].upper()
        data = base64.b32decode(raw + "=" * (-len(raw) % 8))
        version, at = _varint(data, 0)
        if version != 1:
            raise ValueError(f"CID version {version}, expected 1")
        codec, at = _varint(data, at)
        return codec, _check_multihash(data[at:])
    raise ValueError("not a CIDv0 (Qm…, 46 characters) or a base32 CIDv1 (b…)")


def validate_cid(cid: str) -> str:
    """A CIDv0 (``Qm…``, base58btc) or a CIDv1 in base32 (``b…``) over a sha2-256 multihash."""
    cid_codec_digest(cid)
    return cid


def anchor_calldata(key: str, data_hash: str, cid: str) -> str:
    """``anchor(bytes32 credentialId, bytes32 dataHash, string cid)`` calldata, 0x-hex."""
    args = encode(
        ["bytes32", "bytes32", "string"],
        [bytes.fromhex(key[2:]), bytes.fromhex(data_hash[2:]), cid],
    )
    return "0x" + (ANCHOR_SELECTOR + args).hex()


class AnchorConfig(BaseModel):
    confirmations: int = 2
    use_safe_tag: bool = False
    max_attempts: int = 3
    retry_initial_seconds: float = 5.0
    confirmation_timeout_seconds: float = 600.0


class AnchorInput(Routed):
    credential_id: str
    credential_key: str
    tenant: str
    data_hash: str
    ipfs_cid: str
    registry: str
    calldata: str
    config: AnchorConfig = Field(default_factory=AnchorConfig)
    #: >1: a new run for an anchor whose earlier run failed before failed anchors could be
    #: retried in place; the run first settles the transaction of attempt ``attempt - 1``
    attempt: int = Field(default=1, ge=1)
    #: the request's ``callback_url`` (a ``callback`` webhook endpoint) for its outcome
    callback_endpoint_ids: list[str] = Field(default_factory=list)


def anchor_tx_key(credential_key: str, attempt: int) -> str:
    """The wallet writer's idempotency key of an anchor's attempt: the first one keeps the key
    anchors always had; each retry sends a transaction of its own."""
    base = f"credential:{credential_key}"
    return base if attempt == 1 else f"{base}:attempt-{attempt}"


class AnchorOutcome(BaseModel):
    credential_key: str
    status: AnchorStatus
    tx_hash: str | None = None
    block_number: int | None = None
    error: str | None = None


class AnchorSubmitInput(BaseModel):
    idempotency_key: str
    registry: str
    calldata: str


class BatcherInput(Routed):
    registry: str
    max_size: int = 100
    max_wait_seconds: float = 10.0
    config: AnchorConfig = Field(default_factory=AnchorConfig)
    #: credential keys signalled but not yet batched when the previous run continued as new
    carried: list[str] = Field(default_factory=list)


class PreparedBatch(BaseModel):
    """A Merkle root over the batch's pending credentials, its calldata, and who is in it."""

    root: str
    calldata: str
    keys: list[str]


class BatchOutcome(BaseModel):
    root: str
    keys: list[str]
    status: AnchorStatus
    tx_hash: str | None = None
    block_number: int | None = None
    error: str | None = None


class BatchMember(BaseModel):
    """A credential of a recorded batch, as its events name it (the batcher knows only keys)."""

    credential_key: str
    credential_id: str
    tenant: str


def anchor_root_calldata(root: str, count: int) -> str:
    """``anchorRoot(bytes32 root, uint32 count)`` calldata, 0x-hex."""
    selector = keccak(text="anchorRoot(bytes32,uint32)")[:4]
    return "0x" + (selector + encode(["bytes32", "uint32"], [bytes.fromhex(root[2:]), count])).hex()

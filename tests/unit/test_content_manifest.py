"""Content hashes, signed manifests, ipfs:// URIs, raw CIDs and the offline proof-bundle check,
without a chain or a gateway (the bundle here is signed locally, as a node would have taken it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from domain.content import (
    CONTENT_REGISTERED_TOPIC,
    Manifest,
    ProofBundle,
    RegistryEntry,
    build_manifest,
    check_bundle,
    cid_matches,
    content_hash,
    decode_entry,
    decode_register_input,
    entry_calldata,
    hash_file,
    manifest_bytes,
    parse_ipfs_uri,
    parse_manifest,
    proof_bundle,
    raw_cid,
    recover_signer,
    register_calldata,
    sign_content_hash,
)
from domain.errors import InvalidManifest

CREATOR_KEY = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"
CREATOR = Account.from_key(CREATOR_KEY).address
OTHER_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"
REGISTRY = "0x057ef64E23666F000b34aE31332854aCBd1c8544"
CREATED = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
FILE = b"a diploma, as a PDF would be\n"
#: Kubo: `ipfs add --cid-version=1 --raw-leaves` of an empty file
EMPTY_FILE_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
#: a CIDv0 (dag-pb): the empty UnixFS directory
DAG_PB_CID = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


def manifest_for(data: bytes = FILE, key: str = CREATOR_KEY) -> Manifest:
    return build_manifest(key, content_hash(data), f"ipfs://{raw_cid(data)}", CREATED)


def manifest_json(**changes: Any) -> bytes:
    document = json.loads(manifest_bytes(manifest_for()))
    for name, value in changes.items():
        if value is None:
            document.pop(name)
        else:
            document[name] = value
    return json.dumps(document).encode()


# --- hashing ---------------------------------------------------------------------------------------


def test_content_hash_is_keccak256_in_lower_case_hex() -> None:
    assert content_hash(b"") == (
        "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert content_hash(b"hello") == (
        "0x1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8"
    )


def test_hash_file_streams_to_the_same_hash(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # 2.2 MiB: three chunks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert hash_file(path) == content_hash(data)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert hash_file(empty) == content_hash(b"")


# --- signatures ------------------------------------------------------------------------------------


def test_signature_recovers_the_creator() -> None:
    digest = content_hash(FILE)
    signature = sign_content_hash(CREATOR_KEY, digest)
    assert len(signature) == 132
    assert recover_signer(digest, signature) == CREATOR


def test_signature_is_personal_sign_over_the_raw_32_bytes() -> None:
    """What a wallet's personal_sign(bytes32) gives: not a signature over the hex text."""
    from eth_account.messages import encode_defunct

    digest = content_hash(FILE)
    text_signature = Account.sign_message(encode_defunct(text=digest), CREATOR_KEY).signature
    assert recover_signer(digest, "0x" + bytes(text_signature).hex()) != CREATOR
    assert recover_signer(digest, sign_content_hash(CREATOR_KEY, digest)) == CREATOR


def test_wrong_key_or_other_hash_recovers_someone_else() -> None:
    digest = content_hash(FILE)
    assert recover_signer(digest, sign_content_hash(OTHER_KEY, digest)) != CREATOR
    other = content_hash(b"another file")
    assert recover_signer(other, sign_content_hash(CREATOR_KEY, digest)) != CREATOR


@pytest.mark.parametrize(
    "signature",
    ["", "0x", "0x1234", "0x" + "zz" * 65, "0x" + "00" * 65, "0x" + "ff" * 65, "0x" + "11" * 64],
)
def test_malformed_signature_recovers_nobody(signature: str) -> None:
    assert recover_signer(content_hash(FILE), signature) is None


# --- manifests -------------------------------------------------------------------------------------


def test_manifest_round_trips_through_canonical_json() -> None:
    manifest = manifest_for()
    raw = manifest_bytes(manifest)
    assert raw.endswith(b"}\n")
    assert list(json.loads(raw)) == sorted(json.loads(raw))
    assert json.loads(raw)["createdAt"] == "2025-03-01T12:30:00Z"
    assert parse_manifest(raw) == manifest
    assert manifest_bytes(parse_manifest(raw)) == raw
    assert manifest.creator == CREATOR
    assert manifest.version == 1


def test_manifest_normalises_case_and_time_zone() -> None:
    east = timezone(timedelta(hours=3))
    raw = manifest_json(
        creator=CREATOR.lower(),
        contentHash=content_hash(FILE).upper().replace("0X", "0x"),
        createdAt=CREATED.astimezone(east).isoformat(),
    )
    manifest = parse_manifest(raw)
    assert manifest.creator == CREATOR
    assert manifest.contentHash == content_hash(FILE)
    assert manifest.createdAt == CREATED
    assert manifest.createdAt.tzinfo == UTC


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        (b"not json", "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[1, 2]", "not an object"),
        (b'"text"', "not an object"),
        (manifest_json(contentHash=None), "contentHash"),
        (manifest_json(contentHash="0x1234"), "contentHash"),
        (manifest_json(contentURI=None), "contentURI"),
        (manifest_json(creator="0x1234"), "creator"),
        (manifest_json(creator="0x15d34aaf54267db7d7c367839aaf71a00a2c6A65"), "creator"),
        (manifest_json(signature="0xabcd"), "signature"),
        (manifest_json(signature=None), "signature"),
        (manifest_json(createdAt="yesterday"), "createdAt"),
        (manifest_json(version=2), "version"),
    ],
)
def test_parse_manifest_names_the_bad_field(raw: bytes, names: str) -> None:
    with pytest.raises(InvalidManifest, match=names) as caught:
        parse_manifest(raw)
    assert caught.value.status_code == 422


# --- ipfs:// URIs and CIDs ------------------------------------------------------------------------


def test_parse_ipfs_uri() -> None:
    assert parse_ipfs_uri(f"ipfs://{EMPTY_FILE_CID}") == (EMPTY_FILE_CID, "")
    assert parse_ipfs_uri(f"ipfs://{DAG_PB_CID}/docs/manifest.json") == (
        DAG_PB_CID,
        "docs/manifest.json",
    )
    assert parse_ipfs_uri(f"ipfs://{EMPTY_FILE_CID}/") == (EMPTY_FILE_CID, "")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (f"https://ipfs.io/ipfs/{EMPTY_FILE_CID}", "not an ipfs:// URI"),
        (f"/ipfs/{EMPTY_FILE_CID}", "not an ipfs:// URI"),
        ("ipfs://", "no CID"),
        ("ipfs://not-a-cid", "bad CID"),
        ("ipfs://Qm123", "bad CID"),
        (f"ipfs://{EMPTY_FILE_CID}/../secret", r"\.\."),
        (f"ipfs://{EMPTY_FILE_CID}/a?b=c", "query"),
    ],
)
def test_parse_ipfs_uri_refuses(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ipfs_uri(uri)


def test_raw_cid_is_kubos_raw_leaves_cid() -> None:
    assert raw_cid(b"") == EMPTY_FILE_CID
    assert raw_cid(FILE).startswith("bafkrei")
    assert raw_cid(FILE) != raw_cid(FILE + b" ")


def test_cid_matches() -> None:
    assert cid_matches(raw_cid(FILE), FILE) is True
    assert cid_matches(raw_cid(FILE), FILE + b"!") is False
    assert cid_matches(DAG_PB_CID, b"") is None


# --- registry encoding ----------------------------------------------------------------------------


def test_registry_calldata_and_entry_decoding() -> None:
    digest = content_hash(FILE)
    register = register_calldata(digest, "ipfs://x")
    assert register.startswith("0x" + keccak(text="register(bytes32,string)")[:4].hex())
    assert decode_register_input(register) == (digest, "ipfs://x")
    assert entry_calldata(digest) == "0x" + keccak(text="entry(bytes32)")[:4].hex() + digest[2:]
    answer = (
        "0x"
        + encode(
            ["address", "string", "uint64", "uint64"], [CREATOR, "ipfs://m", 1700000000, 42]
        ).hex()
    )
    assert decode_entry(digest, answer) == RegistryEntry(
        contentHash=digest,
        creator=CREATOR,
        manifestURI="ipfs://m",
        registeredAt=1700000000,
        blockNumber=42,
    )
    unknown = (
        "0x" + encode(["address", "string", "uint64", "uint64"], ["0x" + "00" * 20, "", 0, 0]).hex()
    )
    assert decode_entry(digest, unknown) is None
    with pytest.raises(ValueError, match="not an entry"):
        decode_entry(digest, "0x")


# --- proof bundle ---------------------------------------------------------------------------------


def signed_bundle(
    key: str = CREATOR_KEY, chain_id: int = 31337, *, legacy: bool = False
) -> ProofBundle:
    """A bundle whose transaction is really signed: what a node would have mined."""
    manifest = manifest_for(key=key)
    raw_manifest = manifest_bytes(manifest)
    manifest_uri = f"ipfs://{raw_cid(raw_manifest)}"
    sender = Account.from_key(key).address
    fees: dict[str, Any] = (
        {"gasPrice": 10**9}
        if legacy
        else {"type": 2, "maxFeePerGas": 2 * 10**9, "maxPriorityFeePerGas": 10**9}
    )
    tx = Account.sign_transaction(
        {
            "chainId": chain_id,
            "nonce": 0,
            "to": REGISTRY,
            "value": 0,
            "gas": 200_000,
            "data": register_calldata(manifest.contentHash, manifest_uri),
            **fees,
        },
        key,
    )
    block_hash = "0x" + "ab" * 32
    entry = RegistryEntry(
        contentHash=manifest.contentHash,
        creator=sender,
        manifestURI=manifest_uri,
        registeredAt=1_740_000_000,
        blockNumber=7,
    )
    registration = {
        "transaction": {
            "hash": "0x" + bytes(tx.hash).hex(),
            "from": sender,
            "to": REGISTRY,
            "input": register_calldata(manifest.contentHash, manifest_uri),
            "blockNumber": 7,
            "blockHash": block_hash,
            "raw": "0x" + bytes(tx.raw_transaction).hex(),
        },
        "log": {
            "address": REGISTRY,
            "topics": [
                CONTENT_REGISTERED_TOPIC,
                manifest.contentHash,
                "0x" + sender.lower()[2:].rjust(64, "0"),
            ],
            "data": "0x" + encode(["string"], [manifest_uri]).hex(),
            "logIndex": 0,
        },
        "block": {
            "number": 7,
            "hash": block_hash,
            "parentHash": "0x" + "cd" * 32,
            "timestamp": 1_740_000_000,
            "stateRoot": "0x" + "01" * 32,
            "transactionsRoot": "0x" + "02" * 32,
            "receiptsRoot": "0x" + "03" * 32,
        },
    }
    return proof_bundle(
        chain_id, REGISTRY, entry, registration, manifest.signature, manifest, raw_manifest
    )


def test_a_consistent_bundle_passes_every_check() -> None:
    bundle = signed_bundle()
    result = check_bundle(bundle, FILE)
    assert result["all"], result
    assert set(result) >= {
        "transaction_hash",
        "transaction_sender",
        "transaction_target",
        "transaction_input",
        "log",
        "manifest_raw",
        "manifest_hash",
        "signature",
        "manifest_cid",
        "file_hash",
    }
    assert "file_hash" not in check_bundle(bundle)


def test_a_legacy_transaction_is_checked_the_same_way() -> None:
    assert check_bundle(signed_bundle(legacy=True), FILE)["all"]
    assert not check_bundle(
        signed_bundle(legacy=True, chain_id=5).model_copy(update={"chainId": 31337})
    )["transaction_chain"]


def test_bundle_survives_json() -> None:
    bundle = signed_bundle()
    text = bundle.model_dump_json()
    assert '"from":' in text
    assert check_bundle(ProofBundle.model_validate_json(text), FILE)["all"]


def _tampered(path: str, value: Any) -> ProofBundle:
    document = json.loads(signed_bundle().model_dump_json())
    *parents, last = path.split(".")
    node = document
    for name in parents:
        node = node[name]
    node[last] = value(node[last]) if callable(value) else value
    return ProofBundle.model_validate(document)


def _other_manifest_raw() -> str:
    return manifest_bytes(manifest_for(b"another file")).decode()


def _flip_last_hex(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


@pytest.mark.parametrize(
    ("path", "value", "failing"),
    [
        ("transaction.hash", "0x" + "11" * 32, "transaction_hash"),
        ("transaction.raw", _flip_last_hex, "transaction_hash"),
        ("transaction.raw", "0xnothex", "transaction_sender"),
        ("entry.creator", Account.from_key(OTHER_KEY).address, "transaction_sender"),
        ("registry", "0x" + "22" * 20, "transaction_target"),
        ("transaction.to", "0x" + "22" * 20, "transaction_target"),
        ("chainId", 1, "transaction_chain"),
        ("entry.manifestURI", f"ipfs://{EMPTY_FILE_CID}", "transaction_input"),
        ("entry.contentHash", content_hash(b"another file"), "transaction_input"),
        ("transaction.input", "0x", "transaction_input"),
        ("log.topics", lambda t: [t[0], t[1], "0x" + "00" * 32], "log"),
        ("log.address", "0x" + "22" * 20, "log"),
        ("block.number", 8, "block"),
        ("block.hash", "0x" + "ef" * 32, "block"),
        ("block.timestamp", 1, "block"),
        ("manifestRaw", _other_manifest_raw(), "manifest_raw"),
        ("manifestRaw", lambda raw: raw.replace("\n", " "), "manifest_cid"),
        ("manifest.contentHash", content_hash(b"another file"), "manifest_hash"),
        ("signature", sign_content_hash(OTHER_KEY, content_hash(FILE)), "signature"),
        ("manifestURI", f"ipfs://{EMPTY_FILE_CID}", "manifest_uri"),
    ],
)
def test_check_bundle_rejects_each_tampering(path: str, value: Any, failing: str) -> None:
    result = check_bundle(_tampered(path, value), FILE)
    assert result[failing] is False, result
    assert result["all"] is False


def test_check_bundle_rejects_another_file() -> None:
    result = check_bundle(signed_bundle(), FILE + b"!")
    assert result["file_hash"] is False
    assert result["all"] is False
    assert all(v for k, v in result.items() if k not in ("file_hash", "all"))


def test_a_copier_gets_a_bundle_for_their_own_address_only() -> None:
    """An attacker who registers someone's file from their own key and signs their own manifest
    gets a consistent bundle, but for their own address: the creator is who signed."""
    bundle = signed_bundle(key=OTHER_KEY)
    result = check_bundle(bundle, FILE)
    assert result["all"]
    assert bundle.entry.creator != CREATOR

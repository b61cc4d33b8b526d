"""CIDs are checked as CIDs, credential keys are per tenant, and the anchor calldata decodes."""

from __future__ import annotations

import pytest
from eth_abi import decode, encode
from eth_utils import keccak

from domain.credentials import (
    anchor_calldata,
    credential_key,
    legacy_credential_key,
    validate_cid,
)

GOOD = [
    "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0, dag-pb
    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # CIDv1, dag-pb
    "bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq",  # CIDv1, raw
]
BAD = [
    "Qm123",
    "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd0",  # 0 is not base58
    "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdGG",  # 47 characters
    "b" + "a" * 58,  # decodes, but is not CIDv1 + sha2-256
    "zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7",  # base58 CIDv1: not accepted here
    "",
]


@pytest.mark.parametrize("cid", GOOD)
def test_valid_cids(cid: str) -> None:
    assert validate_cid(cid) == cid


@pytest.mark.parametrize("cid", BAD)
def test_invalid_cids(cid: str) -> None:
    with pytest.raises(ValueError):
        validate_cid(cid)


def test_keys_are_per_tenant() -> None:
    assert credential_key("t1", "c-1") != credential_key("t2", "c-1")
    assert (
        credential_key("t1", "c-1")
        == "0x" + keccak(encode(["string", "string"], ["t1", "c-1"])).hex()
    )


def test_the_pair_is_unambiguous_and_the_legacy_key_was_not() -> None:
    assert legacy_credential_key("a:b", "c") == legacy_credential_key("a", "b:c")
    assert credential_key("a:b", "c") != credential_key("a", "b:c")
    assert credential_key("ab", "c") != credential_key("a", "bc")
    assert legacy_credential_key("t1", "c-1") == "0x" + keccak(text="t1:c-1").hex()


def test_anchor_calldata_decodes_to_its_arguments() -> None:
    key, digest = credential_key("t1", "c-1"), "0x" + "ab" * 32
    data = bytes.fromhex(anchor_calldata(key, digest, GOOD[1])[2:])
    assert data[:4] == keccak(text="anchor(bytes32,bytes32,string)")[:4]
    got_key, got_digest, cid = decode(["bytes32", "bytes32", "string"], data[4:])
    assert ("0x" + got_key.hex(), "0x" + got_digest.hex(), cid) == (key, digest, GOOD[1])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 100])
def test_every_proof_verifies_against_the_root(size: int) -> None:
    from domain.merkle import leaf, root_and_proofs, verify

    leaves = [
        leaf(credential_key("t", f"c-{i}"), "0x" + f"{i + 1:064x}", GOOD[0]) for i in range(size)
    ]
    root, proofs = root_and_proofs(leaves)
    assert all(verify(p, root, lf) for p, lf in zip(proofs, leaves, strict=True))
    other = leaf(credential_key("t", "stranger"), "0x" + "ee" * 32, GOOD[0])
    assert not any(verify(p, root, other) for p in proofs) or size == 1
    if size > 1:
        assert not verify(proofs[0], root, leaves[1])

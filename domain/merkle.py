"""Merkle roots and proofs for credential batches (keccak256, sorted pairs).

A leaf is ``keccak256(credentialKey ‖ dataHash ‖ keccak256(cid))``. A parent is the hash of its two
children in ascending byte order, so a proof is just the list of siblings (no left/right flags)
and verifies like OpenZeppelin's ``MerkleProof.verify``. A node without a sibling moves up as is.
"""

from __future__ import annotations

from eth_utils import keccak


def leaf(credential_key: str, data_hash: str, cid: str) -> bytes:
    return keccak(
        bytes.fromhex(credential_key[2:]) + bytes.fromhex(data_hash[2:]) + keccak(text=cid)
    )


def _parent(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a <= b else keccak(b + a)


def root_and_proofs(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root over ``leaves`` (in order) and each leaf's proof."""
    if not leaves:
        raise ValueError("a batch needs at least one leaf")
    proofs: list[list[bytes]] = [[] for _ in leaves]
    # positions[i]: where leaf i's ancestor sits in the current level
    positions = list(range(len(leaves)))
    level = list(leaves)
    while len(level) > 1:
        parents = [
            _parent(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        for leaf_index, position in enumerate(positions):
            sibling = position ^ 1
            if sibling < len(level):
                proofs[leaf_index].append(level[sibling])
            positions[leaf_index] = position // 2
        level = parents
    return level[0], proofs


def verify(proof: list[bytes], root: bytes, leaf_hash: bytes) -> bool:
    node = leaf_hash
    for sibling in proof:
        node = _parent(node, sibling)
    return node == root

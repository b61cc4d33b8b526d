"""Deposit addresses from an extended public key (BIP-32 ``xpub``), so the API holds no secret.

The API derives the address of intent ``i`` as the non-hardened child ``i`` of the node
``m/44'/60'/0'/0`` (Ethereum's account 0, external chain): the same addresses
:class:`providers.evm.hd.HdWallet` derives from the seed phrase, which can stay offline (the
running system never signs from a deposit address).

Print the ``xpub`` for ``DEPOSIT_XPUB`` on the machine that holds the phrase:

    DEPOSIT_HD_MNEMONIC="..." python -m providers.evm.xpub
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys

import base58
from Crypto.Hash import RIPEMD160
from eth_account.hdaccount import seed_from_mnemonic
from eth_utils import keccak, to_checksum_address
from py_ecc.secp256k1 import secp256k1

Point = tuple[int, int]

#: BIP-32 mainnet version bytes of a public extended key ("xpub")
XPUB_VERSION = bytes.fromhex("0488b21e")
HARDENED = 2**31
#: the node whose children are the deposit addresses
EXTERNAL_CHAIN_PATH = (44 + HARDENED, 60 + HARDENED, 0 + HARDENED, 0)
_P = secp256k1.P
_N = secp256k1.N


def _compress(point: Point) -> bytes:
    x, y = point
    return bytes([2 + (y & 1)]) + x.to_bytes(32, "big")


def _decompress(data: bytes) -> Point:
    if len(data) != 33 or data[0] not in (2, 3):
        raise ValueError("not a compressed secp256k1 public key")
    x = int.from_bytes(data[1:], "big")
    if x >= _P:
        raise ValueError("public key x is not on the field")
    y = pow((pow(x, 3, _P) + 7) % _P, (_P + 1) // 4, _P)
    if (y * y - (pow(x, 3, _P) + 7)) % _P:
        raise ValueError("public key is not on the curve")
    if (y & 1) != (data[0] & 1):
        y = _P - y
    return x, y


def _point(scalar: int) -> Point:
    result = secp256k1.multiply(secp256k1.G, scalar)
    return int(result[0]), int(result[1])


def _fingerprint(point: Point) -> bytes:
    sha = hashlib.sha256(_compress(point)).digest()
    return RIPEMD160.new(sha).digest()[:4]


class ExtendedPublicKey:
    def __init__(
        self,
        point: Point,
        chain_code: bytes,
        *,
        depth: int = 0,
        parent_fingerprint: bytes = b"\0\0\0\0",
        child_number: int = 0,
    ) -> None:
        self.point, self.chain_code = point, chain_code
        self.depth, self.parent_fingerprint, self.child_number = (
            depth,
            parent_fingerprint,
            child_number,
        )

    @classmethod
    def parse(cls, text: str) -> ExtendedPublicKey:
        try:
            raw = base58.b58decode_check(text.strip())
        except ValueError as exc:
            raise ValueError(f"not a base58check extended key: {exc}") from exc
        if len(raw) != 78 or raw[:4] != XPUB_VERSION:
            raise ValueError("not an xpub (an extended public key, version 0488B21E)")
        return cls(
            _decompress(raw[45:78]),
            raw[13:45],
            depth=raw[4],
            parent_fingerprint=raw[5:9],
            child_number=int.from_bytes(raw[9:13], "big"),
        )

    def serialize(self) -> str:
        raw = (
            XPUB_VERSION
            + bytes([self.depth])
            + self.parent_fingerprint
            + self.child_number.to_bytes(4, "big")
            + self.chain_code
            + _compress(self.point)
        )
        return base58.b58encode_check(raw).decode()

    def child(self, index: int) -> ExtendedPublicKey:
        """CKDpub: only non-hardened children can be derived from a public key."""
        if not 0 <= index < HARDENED:
            raise ValueError("public derivation needs an index in 0 .. 2^31 - 1")
        digest = hmac.new(
            self.chain_code, _compress(self.point) + index.to_bytes(4, "big"), hashlib.sha512
        ).digest()
        tweak = int.from_bytes(digest[:32], "big")
        if tweak >= _N:
            raise ValueError(f"index {index} gives an invalid key; use the next one")
        added = secp256k1.add(_point(tweak), self.point)
        point = (int(added[0]), int(added[1]))
        return ExtendedPublicKey(
            point,
            digest[32:],
            depth=self.depth + 1,
            parent_fingerprint=_fingerprint(self.point),
            child_number=index,
        )

    @property
    def address(self) -> str:
        x, y = self.point
        return str(to_checksum_address(keccak(x.to_bytes(32, "big") + y.to_bytes(32, "big"))[12:]))


class XpubWallet:
    """Deposit addresses by index, from the xpub of ``m/44'/60'/0'/0``."""

    def __init__(self, xpub: str) -> None:
        self._node = ExtendedPublicKey.parse(xpub)

    def address(self, index: int) -> str:
        return self._node.child(index).address


def xpub_from_mnemonic(mnemonic: str, passphrase: str = "") -> str:
    """The xpub of ``m/44'/60'/0'/0`` (private derivation from the seed, then neutered)."""
    seed = seed_from_mnemonic(mnemonic, passphrase)
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    key, chain_code = int.from_bytes(digest[:32], "big"), digest[32:]
    parent_point: Point | None = None
    for index in EXTERNAL_CHAIN_PATH:
        point = _point(key)
        data = (
            b"\0" + key.to_bytes(32, "big") if index >= HARDENED else _compress(point)
        ) + index.to_bytes(4, "big")
        digest = hmac.new(chain_code, data, hashlib.sha512).digest()
        parent_point = point
        key, chain_code = (int.from_bytes(digest[:32], "big") + key) % _N, digest[32:]
    assert parent_point is not None
    return ExtendedPublicKey(
        _point(key),
        chain_code,
        depth=len(EXTERNAL_CHAIN_PATH),
        parent_fingerprint=_fingerprint(parent_point),
        child_number=EXTERNAL_CHAIN_PATH[-1],
    ).serialize()


if __name__ == "__main__":
    phrase = os.environ.get("DEPOSIT_HD_MNEMONIC")
    if not phrase:
        sys.exit("set DEPOSIT_HD_MNEMONIC (the phrase stays on this machine)")
    print(xpub_from_mnemonic(phrase))

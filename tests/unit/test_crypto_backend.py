"""eth-keys signs every EVM transaction and recovers every manifest's signer: with coincurve
installed it does so in C (libsecp256k1); without it, silently, in pure Python at ~60 times the
CPU (issue 16, ``bench/README.md``). This keeps the dependency from going missing unnoticed."""

from __future__ import annotations

from eth_keys import KeyAPI
from eth_keys.backends import CoinCurveECCBackend

from domain.content import build_manifest, content_hash, recover_signer

KEY = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"


def test_eth_keys_uses_the_c_backend() -> None:
    assert isinstance(KeyAPI().backend, CoinCurveECCBackend)


def test_a_signer_recovered_with_it_is_the_one_that_signed() -> None:
    from datetime import UTC, datetime

    file_hash = content_hash(b"a diploma")
    manifest = build_manifest(KEY, file_hash, "ipfs://bafyfile", datetime(2026, 12, 2, tzinfo=UTC))
    assert recover_signer(manifest.contentHash, manifest.signature) == manifest.creator

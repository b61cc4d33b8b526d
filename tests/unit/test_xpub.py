"""Deposit addresses from an xpub (issue 13 §3: the API holds no private key): the same
addresses the seed phrase gives, derived from public data only."""

from __future__ import annotations

import pytest

from providers.evm.hd import HdWallet
from providers.evm.xpub import ExtendedPublicKey, XpubWallet, xpub_from_mnemonic
from runtime.settings.deposits import TEST_MNEMONIC

PHRASE = "legal winner thank year wave sausage worth useful legal winner thank yellow"


@pytest.mark.parametrize("mnemonic", [TEST_MNEMONIC, PHRASE])
def test_xpub_addresses_are_the_seed_phrase_addresses(mnemonic: str) -> None:
    xpub = xpub_from_mnemonic(mnemonic)
    assert xpub.startswith("xpub")
    from_xpub, from_seed = XpubWallet(xpub), HdWallet(mnemonic)
    for index in (0, 1, 2, 19, 1000, 2**31 - 1):
        assert from_xpub.address(index) == from_seed.address(index)


def test_the_well_known_first_address() -> None:
    # m/44'/60'/0'/0/0 of BIP-39's "abandon ... about", as every wallet shows it
    wallet = XpubWallet(xpub_from_mnemonic(TEST_MNEMONIC))
    assert wallet.address(0) == "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"


def test_serialization_round_trips_and_bad_keys_are_refused() -> None:
    xpub = xpub_from_mnemonic(PHRASE)
    node = ExtendedPublicKey.parse(xpub)
    assert node.serialize() == xpub and node.depth == 4
    with pytest.raises(ValueError, match="base58check"):
        ExtendedPublicKey.parse(xpub[:-1] + ("1" if xpub[-1] != "1" else "2"))
    with pytest.raises(ValueError, match=r"2\^31"):
        node.child(2**31)

"""EVM address validation: EIP-55 checksums are enforced for mixed case."""

from __future__ import annotations

import pytest

from domain.addresses import normalize_evm_address

CHECKSUMMED = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.mark.parametrize(
    "value", [CHECKSUMMED, CHECKSUMMED.lower(), "0x" + CHECKSUMMED[2:].upper()]
)
def test_valid_forms_normalise_to_the_checksum(value: str) -> None:
    assert normalize_evm_address(value) == CHECKSUMMED


@pytest.mark.parametrize(
    "value",
    [
        "0x70997970c51812dc3A010C7d01b50e0d17dc79C8",  # one letter's case flipped: bad checksum
        "0x1234",
        "70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79CZ",
    ],
)
def test_invalid_addresses_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        normalize_evm_address(value)

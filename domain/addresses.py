"""Address checks shared by API validation and activities."""

from __future__ import annotations

import re

from eth_utils import is_checksum_address, to_checksum_address

HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def normalize_evm_address(value: str) -> str:
    """An EVM address in EIP-55 checksum form. Lower- or upper-case hex is accepted as written;
    mixed case must carry a valid checksum, so a typo in a checksummed address is caught.

    (eth_utils' ``is_address`` accepts mixed case without checking the checksum: not enough.)
    """
    if not isinstance(value, str) or not HEX_ADDRESS.match(value):
        raise ValueError("must be a 0x-prefixed, 40-hex-digit EVM address")
    digits = value[2:]
    mixed = digits != digits.lower() and digits != digits.upper()
    if mixed and not is_checksum_address(value):
        raise ValueError("mixed-case EVM address with an invalid EIP-55 checksum")
    return str(to_checksum_address(value))


def same_address(a: str | None, b: str | None) -> bool:
    """Both present and the same account, whatever their case (checksummed or not)."""
    return a is not None and b is not None and a.lower() == b.lower()

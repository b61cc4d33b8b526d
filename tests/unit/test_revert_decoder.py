"""Custom errors of every project contract are decoded by their ABI (contracts/build/*.json)."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from domain.errors import EvmReverted
from providers.evm.client import map_rpc_error
from providers.evm.revert import DecodedRevert, decode_revert, describe_revert, error_table


def revert(signature: str, types: list[str], values: list) -> str:
    selector = keccak(text=signature)[:4]
    return "0x" + (selector + encode(types, values)).hex()


KEY = bytes.fromhex("ab" * 32)


@pytest.mark.parametrize(
    ("data", "readable"),
    [
        # MockUSDC
        (
            revert("InsufficientBalance(uint256,uint256)", ["uint256", "uint256"], [0, 1162790]),
            "InsufficientBalance(balance=0, needed=1162790)",
        ),
        (
            revert("InsufficientAllowance(uint256,uint256)", ["uint256", "uint256"], [5, 9]),
            "InsufficientAllowance(allowance=5, needed=9)",
        ),
        (revert("NotOwner()", [], []), "NotOwner()"),
        (revert("ZeroAddress()", [], []), "ZeroAddress()"),
        # ContentRegistry
        (
            revert("AlreadyRegistered(bytes32)", ["bytes32"], [KEY]),
            f"AlreadyRegistered(contentHash=0x{'ab' * 32})",
        ),
        (revert("EmptyHash()", [], []), "EmptyHash()"),
        # CredentialRegistry
        (revert("NotIssuer()", [], []), "NotIssuer()"),
        (
            revert("AlreadyAnchored(bytes32)", ["bytes32"], [KEY]),
            f"AlreadyAnchored(key=0x{'ab' * 32})",
        ),
        # Solidity's own
        (revert("Error(string)", ["string"], ["no"]), "Error(message='no')"),
        (revert("Panic(uint256)", ["uint256"], [0x11]), "Panic(code=17)"),
    ],
)
def test_each_custom_error_is_named_with_its_arguments(data: str, readable: str) -> None:
    decoded = decode_revert(data)
    assert decoded is not None
    assert str(decoded) == readable


def test_every_error_of_every_contract_is_in_the_table() -> None:
    names = {(spec.name, c) for spec in error_table().values() for c in spec.contracts}
    for contract, errors in {
        "MockUSDC": ["NotOwner", "InsufficientBalance", "InsufficientAllowance", "ZeroAddress"],
        "ContentRegistry": ["AlreadyRegistered", "EmptyHash"],
        "CredentialRegistry": ["NotIssuer", "NotOwner", "AlreadyAnchored", "EmptyHash"],
    }.items():
        for name in errors:
            assert (name, contract) in names


def test_the_selector_of_insufficient_balance_is_the_one_nodes_report() -> None:
    assert error_table()["0xcf479181"].name == "InsufficientBalance"


@pytest.mark.parametrize("data", [None, "", "0x", "0x1234", "0xdeadbeef" + "00" * 32, "nothex"])
def test_unknown_or_empty_data_is_not_decoded(data) -> None:
    assert decode_revert(data) is None


def test_malformed_arguments_are_not_decoded() -> None:
    assert decode_revert("0xcf479181" + "00" * 3) is None


def test_node_error_is_mapped_to_a_readable_evm_reverted() -> None:
    data = revert("InsufficientBalance(uint256,uint256)", ["uint256", "uint256"], [0, 1162790])
    # anvil's shape: the message names the selector, ``data`` carries the revert data
    error = {
        "code": 3,
        "message": f"execution reverted: custom error 0xcf479181: {data[10:]}",
        "data": data,
    }
    mapped = map_rpc_error("eth_estimateGas", error)
    assert isinstance(mapped, EvmReverted)
    assert mapped.message == (
        "eth_estimateGas: execution reverted: InsufficientBalance(balance=0, needed=1162790)"
    )
    assert "0xcf479181" not in mapped.message
    assert isinstance(mapped.revert, DecodedRevert) and mapped.revert.name == "InsufficientBalance"


def test_revert_data_only_in_the_message_is_decoded_too() -> None:
    data = revert("AlreadyRegistered(bytes32)", ["bytes32"], [KEY])
    readable, decoded = describe_revert({"message": f"execution reverted: {data}"})
    assert decoded is not None and readable.endswith(
        f"AlreadyRegistered(contentHash=0x{'ab' * 32})"
    )


def test_a_plain_revert_keeps_its_message() -> None:
    mapped = map_rpc_error("eth_call", {"code": 3, "message": "execution reverted"})
    assert isinstance(mapped, EvmReverted)
    assert mapped.message == "eth_call: execution reverted" and mapped.revert is None

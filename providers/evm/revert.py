"""Revert data made readable: the custom errors of every project contract, by their ABI.

A node answers a reverting call or gas estimate with the revert data (a 4-byte selector and
ABI-encoded arguments). :func:`decode_revert` turns it into ``Name(arg=value, ...)`` using the
``error`` entries of every compiled contract in ``contracts/build/``, plus Solidity's built-in
``Error(string)`` and ``Panic(uint256)``; unknown data stays hex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

from providers.evm.artifacts import BUILD, abi

_HEX = re.compile(r"0x[0-9a-fA-F]{8,}")


@dataclass(frozen=True)
class ErrorSpec:
    name: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]
    contracts: tuple[str, ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.arg_types)})"


@dataclass(frozen=True)
class DecodedRevert:
    """A decoded custom error: its name and arguments in ABI order."""

    name: str
    args: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={_show(v)}' for k, v in self.args.items())})"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and not value.startswith("0x"):
        return repr(value)
    return str(value)


def _type(entry: dict[str, Any]) -> str:
    """The canonical ABI type (tuples spelled out)."""
    kind = str(entry["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_type(c) for c in entry.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _selector(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()[:8]


@cache
def error_table() -> dict[str, ErrorSpec]:
    """Selector -> error, from every ABI in contracts/build (and Solidity's built-ins)."""
    table: dict[str, ErrorSpec] = {
        _selector("Error(string)"): ErrorSpec("Error", ("message",), ("string",), ("solidity",)),
        _selector("Panic(uint256)"): ErrorSpec("Panic", ("code",), ("uint256",), ("solidity",)),
    }
    for path in sorted(BUILD.glob("*.json")):
        contract = path.stem
        for entry in abi(contract):
            if entry.get("type") != "error":
                continue
            inputs = entry.get("inputs", [])
            spec = ErrorSpec(
                name=str(entry["name"]),
                arg_names=tuple(str(i.get("name") or f"arg{n}") for n, i in enumerate(inputs)),
                arg_types=tuple(_type(i) for i in inputs),
                contracts=(contract,),
            )
            selector = _selector(spec.signature)
            known = table.get(selector)
            if known is not None:  # the same error declared by several contracts
                spec = ErrorSpec(
                    spec.name, spec.arg_names, spec.arg_types, (*known.contracts, contract)
                )
            table[selector] = spec
    return table


def decode_revert(data: str | bytes | None) -> DecodedRevert | None:
    """The custom error in revert data, or None when it is empty or unknown."""
    if data is None:
        return None
    raw = bytes(data) if isinstance(data, bytes | bytearray) else _bytes(str(data))
    if raw is None or len(raw) < 4:
        return None
    spec = error_table().get("0x" + raw[:4].hex())
    if spec is None:
        return None
    try:
        values = abi_decode(list(spec.arg_types), raw[4:]) if spec.arg_types else ()
    except Exception:  # malformed arguments: not this error after all
        return None
    return DecodedRevert(spec.name, dict(zip(spec.arg_names, values, strict=True)))


def _bytes(text: str) -> bytes | None:
    text = text.strip()
    if not text.startswith("0x"):
        return None
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        return None


def revert_data(error: dict[str, Any]) -> str | None:
    """The revert data of a JSON-RPC error: ``data`` (a hex string, or an object holding one),
    else the first hex blob in the message (nodes differ)."""
    data = error.get("data")
    if isinstance(data, dict):
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and data.startswith("0x"):
        return data
    match = _HEX.search(str(error.get("message", "")))
    return match.group(0) if match else None


def describe_revert(error: dict[str, Any]) -> tuple[str, DecodedRevert | None]:
    """The error's message, with the revert data given as the decoded custom error when it is
    one of ours (``execution reverted: InsufficientBalance(balance=0, needed=1162790)``)."""
    message = str(error.get("message", error))
    decoded = decode_revert(revert_data(error))
    if decoded is None:
        return message, None
    return f"execution reverted: {decoded}", decoded


__all__ = [
    "DecodedRevert",
    "ErrorSpec",
    "decode_revert",
    "describe_revert",
    "error_table",
    "revert_data",
]

"""Compiled contracts from ``contracts/build/`` (ABI and bytecode), committed with the sources."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

BUILD = Path(__file__).resolve().parents[2] / "contracts" / "build"


@cache
def artifact(name: str) -> dict[str, Any]:
    path = BUILD / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no compiled contract {name}: run `make contracts`")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def abi(name: str) -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = artifact(name)["abi"]
    return value


def bytecode(name: str) -> str:
    value: str = artifact(name)["bytecode"]
    return value

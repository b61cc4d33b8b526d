"""The committed ABI and bytecode are what a fresh compile of contracts/*.sol gives (solc from npm,
pinned in tools/package.json), and MockUSDC behaves as an ERC-20 with 6 decimals on anvil."""

from __future__ import annotations

import json

import pytest

from contracts.compile import BUILD, artifact_text, compile_sources
from providers.evm.artifacts import abi
from tests.fixtures.chain import Chain


@pytest.fixture(scope="module")
def fresh() -> dict:
    return compile_sources()


def test_committed_build_matches_a_fresh_compile(fresh: dict) -> None:
    assert set(fresh["contracts"]) == {p.stem for p in BUILD.glob("*.json")}
    for name, artifact in fresh["contracts"].items():
        committed = (BUILD / f"{name}.json").read_text()
        assert committed == artifact_text(name, artifact, fresh["compiler"]), (
            f"contracts/build/{name}.json is stale: run `make contracts`"
        )
    assert fresh["compiler"].startswith("0.8.37")


async def test_mock_usdc_on_chain(chain: Chain) -> None:
    names = {entry.get("name") for entry in abi("MockUSDC")}
    assert {"transfer", "transferFrom", "approve", "mint", "balanceOf", "decimals"} <= names
    decimals = await chain.client.call(chain.usdc, "0x313ce567")
    assert int(decimals, 16) == 6
    assert await chain.usdc_balance(chain.treasury) > 0
    assert json.loads((BUILD / "MockUSDC.json").read_text())["bytecode"].startswith("0x6080")

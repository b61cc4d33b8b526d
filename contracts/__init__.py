"""Solidity sources, their compiled ABI/bytecode (``build/``), and the script recompiling them."""

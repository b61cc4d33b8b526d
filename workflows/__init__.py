"""Deterministic orchestration only: no I/O, clocks, randomness or threads. One module per
operation. Workflows import ``domain`` and activity references (passed through the sandbox)."""

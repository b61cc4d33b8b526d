"""``.env.example`` documents every setting the code reads, as generated from the settings."""

from __future__ import annotations

from pathlib import Path

from runtime.settings.example import render

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_env_example_is_current() -> None:
    assert EXAMPLE.read_text() == render(), (
        ".env.example is stale: python -m runtime.settings.example > .env.example"
    )

"""``python -m runtime.settings.example > .env.example``: every setting with its default.

Section titles are the first line of each section module's docstring; a field's explanation is the
``#:`` comment above it in the source. tests/unit/test_env_example.py checks the file is current.
"""

from __future__ import annotations

import inspect
import re
import sys
from types import ModuleType

from pydantic import BaseModel, SecretStr

from runtime.settings import Settings

HEADER = """\
# Settle settings. Copy to .env and change what you need; every name is also read from the
# environment. Defaults run the embedded local stack of `make run`. With SETTLE_ENV=production,
# secrets still at a dev-only- placeholder or at the local chain's well-known keys are refused,
# and so is the embedded database.
# Regenerate after adding a setting: python -m runtime.settings.example > .env.example
"""


def _sections() -> list[type[BaseModel]]:
    return [
        base
        for base in Settings.__mro__[1:]
        if isinstance(base, type)
        and issubclass(base, BaseModel)
        and base.__module__.startswith("runtime.settings.")
    ]


def _comments(module: ModuleType, field: str) -> list[str]:
    source = inspect.getsource(module)
    match = re.search(r"((?:    #:[^\n]*\n)*)    " + re.escape(field) + r":", source)
    if not match or not match.group(1):
        return []
    return [line.strip()[2:].strip() for line in match.group(1).splitlines()]


def _default(value: object) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[]" if not value else str(value)
    return str(value)


def render() -> str:
    lines = [HEADER]
    for section in _sections():
        module = sys.modules[section.__module__]
        title = (module.__doc__ or section.__name__).strip().splitlines()[0].rstrip(".")
        lines.append(f"# --- {title} " + "-" * max(3, 92 - len(title)))
        for name, field in section.model_fields.items():
            lines += [f"# {comment}" for comment in _comments(module, name)]
            lines.append(f"# {name.upper()}={_default(field.default)}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())

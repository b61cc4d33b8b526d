"""``python -m contracts.compile``: compile ``contracts/*.sol`` to ``contracts/build/<Name>.json``.

solc comes from npm (``tools/package.json``, installed under ``.tools/`` by ``make tools``); the
build is committed so the service never needs a compiler, and a test checks that a fresh compile
gives the same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = HERE / "build"
NODE_MODULES = ROOT / ".tools" / "node_modules"


def compile_sources(source_dir: Path = HERE) -> dict[str, Any]:
    """Run solc over every ``.sol`` in ``source_dir``; returns ``{"compiler", "contracts"}``."""
    if not (NODE_MODULES / "solc").exists():
        raise SystemExit("solc is not installed: run `make tools`")
    completed = subprocess.run(  # noqa: S603 - fixed argv, our own script
        ["node", str(HERE / "compile.js"), str(source_dir)],  # noqa: S607 - node from PATH
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"solc failed:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def artifact_text(name: str, artifact: dict[str, Any], compiler: str) -> str:
    return json.dumps({"contractName": name, "compiler": compiler, **artifact}, indent=2) + "\n"


def write_build(result: dict[str, Any], build_dir: Path = BUILD) -> list[Path]:
    build_dir.mkdir(exist_ok=True)
    written = []
    for name, artifact in sorted(result["contracts"].items()):
        path = build_dir / f"{name}.json"
        path.write_text(artifact_text(name, artifact, result["compiler"]))
        written.append(path)
    return written


def main() -> int:
    for path in write_build(compile_sources()):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

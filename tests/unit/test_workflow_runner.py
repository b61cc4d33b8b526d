"""The ``workflows/`` helpers passed through the sandbox (``runtime.workflow_runner.HELPERS``)
escape its restrictions, so they are checked here instead: no clock, randomness, I/O or
threads, and no module-level mutable state that workflow instances would share."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from runtime.workflow_runner import HELPERS

#: modules whose use in workflow code is non-deterministic or I/O
FORBIDDEN_IMPORTS = frozenset(
    {"time", "random", "uuid", "os", "socket", "threading", "subprocess", "secrets", "httpx"}
)
#: calls that read a clock or the environment
FORBIDDEN_CALLS = frozenset({"now", "utcnow", "today", "getenv", "urandom", "sleep"})
#: module-level containers that instances would share
MUTABLE = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def source(module: str) -> tuple[Path, ast.Module]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    path = Path(spec.origin)
    return path, ast.parse(path.read_text(), str(path))


def problems(tree: ast.Module) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_IMPORTS
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_IMPORTS:
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            # workflow.now(), workflow.sleep(): the workflow's own, deterministic time
            of_workflow = (
                isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "workflow"
            )
            if name in FORBIDDEN_CALLS and not of_workflow:
                found.append(f"call {name}() at line {node.lineno}")
        elif isinstance(node, ast.Global):
            found.append(f"global {', '.join(node.names)} at line {node.lineno}")
    for statement in tree.body:
        value = statement.value if isinstance(statement, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, MUTABLE):
            found.append(f"module-level mutable value at line {statement.lineno}")
    return found


@pytest.mark.parametrize("module", HELPERS)
def test_a_passed_through_helper_has_no_clock_io_or_shared_state(module: str) -> None:
    path, tree = source(module)
    assert problems(tree) == [], f"{path}: passed through the sandbox, it must stay deterministic"


def test_the_check_finds_what_it_looks_for() -> None:
    tree = ast.parse(
        "import time\nfrom datetime import datetime\nSEEN = []\n"
        "def f():\n    global SEEN\n    workflow.now()\n    return datetime.now()\n"
    )
    assert problems(tree) == [
        "import time",
        "global SEEN at line 5",
        "call now() at line 7",
        "module-level mutable value at line 3",
    ]

"""The application layer's shape (issue 15 §1): one module per operation under ``operations/``,
routers that only translate HTTP.

Read from the source, not imported: a router that imports another router, or starts a workflow
itself, is a layering mistake whatever it does at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROUTERS = ROOT / "api" / "routers"
#: the operations whose orchestration moved out of the routers
OPERATION_MODULES = (
    "mpesa_deposits",
    "deposit_intents",
    "unmatched_payments",
    "ticket_purchases",
    "ticket_refunds",
    "ticket_transfers",
    "credential_anchors",
    "verification_jobs",
    "jobs",
    "dead_letters",
)
#: the routers of those operations (and POST /api/v1/jobs): no Temporal calls of their own
OPERATION_ROUTERS = (
    "deposits.py",
    "intents.py",
    "unmatched_payments.py",
    "tickets.py",
    "credentials.py",
    "verification_jobs.py",
    "jobs.py",
    "dead_letter.py",
    "job_starts.py",
)
STARTS = {"start_workflow", "execute_workflow", "signal_with_start_workflow"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("router", sorted(p.name for p in ROUTERS.glob("*.py")))
def test_no_router_imports_another_router(router: str) -> None:
    imported = _imports(_tree(ROUTERS / router))
    assert not {n for n in imported if n.startswith("api.routers")}, router


@pytest.mark.parametrize("router", OPERATION_ROUTERS)
def test_operation_routers_start_no_workflow_themselves(router: str) -> None:
    calls = {
        node.func.attr
        for node in ast.walk(_tree(ROUTERS / router))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & STARTS, f"{router} starts a workflow itself: {calls & STARTS}"


@pytest.mark.parametrize("module", OPERATION_MODULES)
def test_each_operation_has_its_module(module: str) -> None:
    assert (ROOT / "operations" / f"{module}.py").is_file()


def test_the_operations_layer_knows_nothing_of_http_routing() -> None:
    for path in (ROOT / "operations").glob("*.py"):
        imported = _imports(_tree(path))
        assert not {n for n in imported if n.startswith("api.routers")}, path.name
        assert "fastapi.APIRouter" not in imported, path.name

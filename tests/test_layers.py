"""Folders are layers (DESIGN §2): core at the ground, sources and tasks above it, flows on top,
local beside. Walks every module's imports with ast, so a wrong import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("core", "sources", "tasks", "flows", "local")
# what each layer may import of the project
ALLOWED = {
    "core": {"core"},
    "sources": {"core", "sources"},
    "tasks": {"core", "sources", "tasks"},
    "flows": {"core", "sources", "tasks", "flows"},
    "local": {"core", "sources", "tasks", "flows", "local"},
}


def _imports(path: Path) -> set[str]:
    """Top-level project packages a module imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in LAYERS}
    return found


MODULES = [(layer, p) for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))]


@pytest.mark.parametrize("layer, path", MODULES, ids=[str(p.relative_to(ROOT)) for _, p in MODULES])
def test_a_module_imports_only_its_layer_and_those_below(layer, path):
    wrong = _imports(path) - ALLOWED[layer]
    assert not wrong, f"{path.relative_to(ROOT)} ({layer}/) imports {sorted(wrong)}"


def test_flow_modules_hold_flows_only():
    """No @task and no SQL in flows/: steps live in tasks/."""
    for path in (ROOT / "flows").rglob("*.py"):
        text = path.read_text()
        assert "@task" not in text and "psycopg" not in text and "polars" not in text, path.name


def test_the_layers_walk_finds_imports():
    assert _imports(ROOT / "flows" / "migrate.py") >= {"core", "tasks", "sources"}

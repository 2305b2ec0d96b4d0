"""The layout holds: packages by concern, imports only down the layers, no import circle, short modules.

Read from the source (every import, lazy ones inside functions included), so a move that breaks
the layering fails here, not in a reviewer's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "supervisor"
# Lower layers first; a package may import its own modules and any package of a lower layer.
LAYERS = [{"core"}, {"litestream"}, {"identity"}, {"replica"}, {"health", "admission"}, {"jobs"}, {"commands"}]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
MAX_LINES = 320  # ~300 (the largest, replica/lag.py, is 311): a module past this is doing two jobs


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        found[".".join(rel.parts).removesuffix(".__init__")] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("supervisor"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("supervisor"))
    return {n for n in names if n in known}


def package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else None


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, set(found)) - {name} for name, path in found.items()}


def test_every_module_lives_in_a_package_of_a_known_layer() -> None:
    loose = [m for m in modules() if package(m) is None and m not in ("supervisor", "supervisor.__main__")
             and m.split(".")[1] not in RANK]
    assert not loose, f"modules outside the packages: {loose}"
    assert set(RANK) == {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}


@pytest.mark.parametrize("pkg", sorted(RANK))
def test_each_package_says_its_job_and_what_it_may_import(pkg: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / pkg / "__init__.py").read_text()))
    assert doc and "import" in doc, f"supervisor/{pkg}/__init__.py: a docstring naming what it may import"


def test_imports_only_run_down_the_layers() -> None:
    upward = []
    for module, targets in graph().items():
        mine = package(module)
        for target in targets:
            theirs = package(target)
            if mine is None or theirs is None or mine == theirs:
                continue
            if RANK[theirs] >= RANK[mine]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports up or across the layers:\n" + "\n".join(sorted(upward))


def test_no_import_circle() -> None:
    g = graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(g):
        if start not in state:
            visit(start, [start])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_no_module_is_doing_two_jobs() -> None:
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"

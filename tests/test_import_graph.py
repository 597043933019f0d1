"""The import graph of ``symcost`` has no cycles.

The graph is read from the source with :mod:`ast`, not by importing: one node per module (a
package is its ``__init__``), one edge per import statement of another ``symcost`` module,
relative or absolute. Every import statement counts, wherever it stands:

- imports inside functions count. A function-local import only postpones a cycle to call time;
  the two modules still cannot be understood, tested or moved apart.
- imports under ``if TYPE_CHECKING:`` count. They do not run, but they are a dependency all the
  same (the type checker follows them), and a layered package must not need them upward.

``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
Importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` first; those implicit edges are not
drawn (``symcost/__init__`` imports nearly everything, so every module would be on a cycle
through it), only the statements the code writes.

:data:`KNOWN_CYCLES` lists the cycles still tolerated; it must be emptied, not grown.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "symcost"

# NB: hardware <-> _presets: the presets need the Hardware class and hardware.get needs the
# presets (an import at the bottom of hardware.py, behind noqa: E402). The hardware module is
# being rebuilt (presets as data files loaded by a registry); that rebuild must empty this set.
KNOWN_CYCLES: set[frozenset[str]] = set()  # the hardware <-> presets cycle is gone (symcost/hardware/)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(current: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``current``."""
    if level == 0:
        return target or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The symcost modules that ``name`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "symcost":
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.level, node.module)
            if base.split(".")[0] != "symcost":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` for the whole package."""
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def strongly_connected(g: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_graph_sees_every_kind_of_import():
    """The reader finds relative, absolute, function-local and TYPE_CHECKING imports."""
    g = graph()
    assert "symcost.layers.base" in g["symcost.layers.mlp"]           # from .base import ...
    assert "symcost.core.symbols" in g["symcost.layers.mlp"]          # from ..core import symbols
    assert "symcost.core.sweep" in g["symcost.core.metrics"]          # inside LayerMetrics.lambdify
    assert "symcost.models.model" in g["symcost.report.latex"]        # under TYPE_CHECKING and local
    assert "symcost" in g["symcost.cli.main"]                         # from .. import __version__


def test_reader_on_a_known_cycle():
    """A two-module cycle written only with function-local imports is found."""
    g = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert strongly_connected(g) == [{"a", "b"}]


def test_no_import_cycles():
    """No module reaches itself through imports, except the allow-listed cycles."""
    cycles = [c for c in strongly_connected(graph()) if frozenset(c) not in KNOWN_CYCLES]
    assert cycles == [], f"import cycles: {[sorted(c) for c in cycles]}"


@pytest.mark.parametrize("cycle", sorted(KNOWN_CYCLES, key=sorted))
def test_known_cycles_are_still_there(cycle):
    """An allow-listed cycle that has been removed must leave the list too."""
    assert set(cycle) in strongly_connected(graph()), f"{sorted(cycle)} is gone: remove it from KNOWN_CYCLES"

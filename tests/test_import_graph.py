"""The import graph of ``symcost`` has no cycles and no upward import between its stages.

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

The stages (:data:`STAGES`, lowest first) are the folders data flows through; a module imports
only its own stage and the ones below it. ``symcost/__init__`` may import everything (it is the
facade, and imports lazily); no other module stands outside the stages. From ``plan/`` up
nothing names a concrete layer type (only ``layers.base``, the contract, and
``layers.catalogue``), and nothing above ``layers/`` asks a layer its type.

A ``_name`` stays inside its file: no module imports a ``_private`` name of another symcost module
(``from .pipeline import _split``), and none reads a ``_private`` attribute it does not define
itself (``reader._get(...)``, ``plots._matplotlib()``, ``model._layer_rows()``). What modules share
is API, with a public name. Read from the source like the graph: an attribute counts as defined
by a module when that module defines, assigns or binds the name anywhere. Not counted: dunders,
a private *module*'s public names (``from ..core._expr import total``: ``_expr`` is symcost's own,
not its users'), and :data:`FOREIGN_PROTOCOLS`, another library's names for extending it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "symcost"

STAGES: tuple[tuple[str, ...], ...] = (
    ("symcost.errors", "symcost.testing", "symcost.data"),
    ("symcost.core",),
    ("symcost.layers",),
    ("symcost.hardware",),
    ("symcost.models",),
    ("symcost.analysis",),  # NB: below plan: the steps solve and the search sweeps
    ("symcost.plan",),
    ("symcost.report",),
    ("symcost.cli", "symcost.__main__"),
)
"""The stages, lowest first; a module belongs to the first stage one of whose prefixes it has."""

FOREIGN_PROTOCOLS = {"_print", "_module_format"}
"""SymPy's printer protocol: ``Printer._print`` (dispatch to ``_print_<Class>``) and
``PythonCodePrinter._module_format``, the methods a custom printer calls on itself and its kin."""

PRIVATE_EXEMPT = {
    ("symcost.hardware.fit.report", "_NCCL_FIELDS"), ("symcost.hardware.fit.report", "_NVLS_FIELDS"),
}
"""``(module, name)`` pairs not yet renamed: ``hardware/fit/`` is being reworked elsewhere; the next
change of it makes these public and empties this set."""

CONTRACT = {"symcost.layers.base", "symcost.layers.catalogue"}
"""What of ``layers/`` the stages from ``plan/`` up may import."""


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
    """No module reaches itself through imports."""
    cycles = strongly_connected(graph())
    assert cycles == [], f"import cycles: {[sorted(c) for c in cycles]}"


def stage(module: str) -> int | None:
    """The index of ``module``'s stage in :data:`STAGES`; ``None`` for the top package."""
    for i, prefixes in enumerate(STAGES):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined(tree: ast.AST) -> set[str]:
    """Every name ``tree`` defines, assigns or binds: functions, classes, targets, attributes it
    stores, arguments, imported names."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return out


def private_uses(name: str, source: str, is_package: bool = False) -> list[str]:
    """``"line: what"`` for each ``_private`` name of another module that ``name``'s source uses:
    imported from another symcost module, or read as an attribute it does not define."""
    tree = ast.parse(source)
    own = _defined(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.level, node.module)
            if base.split(".")[0] == "symcost" and base != name:
                found += [f"{node.lineno}: from {base} import {a.name}" for a in node.names if _private(a.name)]
        elif (isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own
              and node.attr not in FOREIGN_PROTOCOLS):
            found.append(f"{node.lineno}: {ast.unparse(node.value)}.{node.attr}")
    return found


def test_private_reader_finds_imports_and_attributes():
    """The rule sees a private import from a sibling, an attribute another module defines, and lets
    a module's own private names, dunders and a private module's public names through."""
    source = (
        "from .pipeline import _split, stages_from_parts\n"
        "from ..core._expr import total\n"
        "from . import _mine\n"
        "class _Own:\n"
        "    _cache = None\n"
        "    def _get(self): return self._cache, self.__dict__\n"
        "def f(reader, plots):\n"
        "    return reader._get(), plots._matplotlib(), _Own()._get(), reader.__class__\n"
    )
    assert private_uses("symcost.plan.inference", source) == [
        "1: from symcost.plan.pipeline import _split", "3: from symcost.plan import _mine",
        "8: plots._matplotlib"]


def test_no_private_names_across_modules():
    """No module uses another module's ``_private`` names: what modules share has a public name."""
    found, exempt = [], set()
    for m, path in modules().items():
        for use in private_uses(m, path.read_text(encoding="utf-8"), path.name == "__init__.py"):
            key = (m, use.rsplit(" ", 1)[-1].rsplit(".", 1)[-1])
            if key in PRIVATE_EXEMPT:
                exempt.add(key)
            else:
                found.append(f"{m}:{use}")
    assert found == [], f"private names used across modules: {found}"
    assert exempt == PRIVATE_EXEMPT, f"exemptions no longer needed: {sorted(PRIVATE_EXEMPT - exempt)}"


def test_every_module_has_a_stage():
    """Every module is in a stage, or is the top package."""
    loose = [m for m in modules() if stage(m) is None and m != "symcost"]
    assert loose == [], f"modules outside every stage: {loose}"


def test_no_upward_imports():
    """A module imports only its own stage and the stages below it."""
    g = graph()
    upward = sorted(
        f"{m} -> {t}" for m, targets in g.items() for t in targets
        if stage(m) is not None and stage(t) is not None and stage(t) > stage(m)  # type: ignore[operator]
    )
    assert upward == [], f"upward imports: {upward}"


def test_stage_reader_finds_an_upward_import():
    """The rule sees a core module that imports a hardware module."""
    assert stage("symcost.core.metrics") < stage("symcost.hardware.timing")  # type: ignore[operator]
    assert stage("symcost.analysis.solve") < stage("symcost.plan.step")  # type: ignore[operator]
    assert stage("symcost") is None


def _layer_names_imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules and names of ``layers/`` beyond the contract that ``name`` imports."""
    out = {m for m in imports_of(name, path, known) if m.startswith("symcost.layers.") and m not in CONTRACT}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _resolve(name, path.name == "__init__.py", node.level, node.module)
            if base == "symcost.layers":
                out |= {f"symcost.layers.{a.name}" for a in node.names
                        if f"symcost.layers.{a.name}" not in CONTRACT and a.name != "Layer"}
    return out


def test_no_concrete_layer_types_from_plan_up():
    """From ``plan/`` up, modules reach layers through the contract and the catalogue only."""
    mods = modules()
    known = set(mods)
    plan = stage("symcost.plan")
    found = sorted(f"{m} -> {t}" for m, p in mods.items()
                   if (stage(m) or -1) >= plan for t in _layer_names_imported(p, m, known))  # type: ignore[operator]
    assert found == [], f"concrete layer types used above the contract: {found}"


def test_no_type_tests_on_layers_above_layers():
    """Nothing above ``layers/`` calls ``isinstance`` on a concrete layer type or ``hasattr`` at all."""
    from symcost.layers import catalogue

    concrete = {getattr(t, "func", t).__name__ for t in catalogue.LAYER_TYPES.values()}
    layers = stage("symcost.layers")
    found = []
    for m, path in modules().items():
        if (stage(m) or -1) <= layers:  # type: ignore[operator]
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id == "hasattr":
                found.append(f"{m}:{node.lineno} hasattr")
            elif node.func.id in ("isinstance", "issubclass") and len(node.args) == 2:
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if names & concrete:
                    found.append(f"{m}:{node.lineno} {node.func.id} on {sorted(names & concrete)}")
    assert found == [], f"type tests on layers above layers/: {found}"

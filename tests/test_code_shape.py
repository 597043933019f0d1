"""The library's functions stay short: none is over :data:`MAX_LINES` lines (``def`` to its last
line, docstring included), read from the source with :mod:`ast`. Branch complexity is ruff's
``C901`` (``max-complexity = 12`` in pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "symcost"
MAX_LINES = 60


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """``(name, lines)`` of every function or method of ``source`` longer than ``limit`` lines."""
    return [(node.name, node.end_lineno - node.lineno + 1)  # type: ignore[operator]
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]  # type: ignore[operator]


def test_reader_counts_a_long_function():
    """A 61-line function is found, a 60-line one is not, nested or not."""
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    assert long_functions(f"def f():\n{body}\n") == []
    assert long_functions(f"def f():\n{body}\n    return 1\n") == [("f", 61)]
    nested = "class C:\n    def g(self):\n" + "\n".join(f"        y{i} = {i}" for i in range(60)) + "\n"
    assert long_functions(nested) == [("g", 61)]


def test_no_function_over_60_lines():
    """Every function of the package fits in 60 lines."""
    found = [f"{path.relative_to(PACKAGE.parent)}: {name} ({n} lines)"
             for path in sorted(PACKAGE.rglob("*.py"))
             for name, n in long_functions(path.read_text(encoding="utf-8"))]
    assert found == [], f"functions over {MAX_LINES} lines: {found}"


def aliases(source: str) -> list[str]:
    """Second names in ``source``: a module imported under two names (``import sympy`` beside
    ``import sympy as sp``), or a name imported from symcost re-bound at module level
    (``_exact_value = exact``)."""
    tree = ast.parse(source)
    found = []
    names: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.setdefault(alias.name, set()).add(alias.asname or alias.name)
    found += [f"{module} as {', '.join(sorted(bound))}" for module, bound in names.items() if len(bound) > 1]
    imported = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                and (node.level or (node.module or "").startswith("symcost")) for alias in node.names}
    found += [f"{node.lineno}: {ast.unparse(node)}" for node in tree.body if isinstance(node, ast.Assign)
              and isinstance(node.value, ast.Name) and node.value.id in imported]
    return found


def test_reader_finds_a_second_name():
    source = "import sympy\nimport sympy as sp\nfrom ..core._expr import exact\n_exact_value = exact\nN = 3\n"
    assert aliases(source) == ["sympy as sp, sympy", "4: _exact_value = exact"]


def test_no_names_kept_twice():
    """Rename instead of aliasing: a name that a parameter or property shadows gets a new name,
    not a second one beside it."""
    found = [f"{path.relative_to(PACKAGE.parent)}: {a}" for path in sorted(PACKAGE.rglob("*.py"))
             for a in aliases(path.read_text(encoding="utf-8"))]
    assert found == [], f"second names: {found}"

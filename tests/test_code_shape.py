"""The library's functions stay short: none is over :data:`MAX_LINES` lines (``def`` to its last
line, docstring included), and none takes more than :data:`MAX_PARAMETERS` named parameters
(:data:`MANY_PARAMETERS` lists the exceptions, each with its reason), read from the source with
:mod:`ast`. Branch complexity is ruff's ``C901`` (``max-complexity = 12`` in pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "symcost"
MAX_LINES = 60
MAX_PARAMETERS = 8
"""Named parameters (positional and keyword, ``self``/``cls`` not counted, ``*args``/``**kwargs``
not counted) of a library function: more travel together as one value (``TrainingRun``,
``TrainingOptions``, ``SearchOptions``, ``Parallelism``)."""

_CONFIG = "a public model builder: its keywords are the architecture's published config fields"
_PUBLIC = "a public step function: its keywords are its documented options (a value behind them)"
MANY_PARAMETERS = {
    "models/builders.py": {"mixtral": _CONFIG, "deepseek_v3": _CONFIG, "qwen3_moe": _CONFIG, "gpt_oss": _CONFIG},
    "models/model.py": {"gpt": _CONFIG, "llama": _CONFIG, "training_step": _PUBLIC, "inference_step": _PUBLIC},
    "models/ssm.py": {"mamba2_layer": _CONFIG, "mamba2": _CONFIG, "hybrid": _CONFIG},
    "models/llama4.py": {"llama4": _CONFIG},
    "plan/training.py": {"training_step": _PUBLIC},
    "plan/inference.py": {"inference_step": _PUBLIC},
    "plan/speculative.py": {"speculative_step": _PUBLIC},
    "plan/disaggregated.py": {"pd_ratio": _PUBLIC},
    "plan/serving/deploy.py": {"plan_deployment": _PUBLIC},
    "plan/serving/batching.py": {"serving_curve": _PUBLIC},
    "report/html.py": {"html_report": _PUBLIC},
    "report/plots.py": {"memory_vs_seq_len": _PUBLIC},
    "core/metrics.py": {"from_ops": "LayerMetrics' constructor: its keywords are the value's fields"},
    "layers/mlp.py": {"ffn_ops": "the feed-forward op list's shape keywords, one per layer field it reads"},
    "hardware/chip.py": {"symbolic": "the symbolic chip's structure keywords, one per key of Hardware.structure"},
}
"""Functions over :data:`MAX_PARAMETERS`, by file (relative to ``symcost/``), with the reason."""


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


def many_parameters(source: str, limit: int = MAX_PARAMETERS) -> list[tuple[str, int]]:
    """``(name, parameters)`` of every function or method of ``source`` with more than ``limit``
    named parameters (``self`` and ``cls`` first, ``*args`` and ``**kwargs`` not counted)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
            n = len(names) - (1 if names and names[0] in ("self", "cls") else 0)
            if n > limit:
                found.append((node.name, n))
    return found


def test_reader_counts_parameters():
    """Nine named parameters are found, eight are not; ``self``, ``*args`` and ``**kwargs`` do not count."""
    eight = ", ".join(f"a{i}" for i in range(8))
    assert many_parameters(f"def f({eight}, *rest, **more):\n    pass\n") == []
    assert many_parameters(f"def f({eight}, *, k=1):\n    pass\n") == [("f", 9)]
    assert many_parameters(f"class C:\n    def g(self, {eight}):\n        pass\n") == []
    assert many_parameters(f"class C:\n    def g(self, {eight}, x):\n        pass\n") == [("g", 9)]


def test_no_function_over_8_parameters():
    """Every function of the package takes at most 8 named parameters, but for the listed ones; and
    every listed one still needs its place (the list does not outlive its reasons)."""
    found, listed = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        for func, n in many_parameters(path.read_text(encoding="utf-8")):
            if func in MANY_PARAMETERS.get(name, {}):
                listed.add((name, func))
            else:
                found.append(f"symcost/{name}: {func} ({n} parameters)")
    assert found == [], f"functions over {MAX_PARAMETERS} parameters: {found}"
    stale = {(f, g) for f, names in MANY_PARAMETERS.items() for g in names} - listed
    assert stale == set(), f"listed but within the cap: {sorted(stale)}"


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

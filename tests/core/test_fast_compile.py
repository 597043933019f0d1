"""The fast sweep compile (``Sweeper(fast_compile=True)``: NumPy source from the expression DAG)
and the unevaluated ``Max``/``Min`` of ``core._expr.extreme`` give the values SymPy gives."""

import numpy as np
import pytest
import sympy as sp

from symcost import symbols as S
from symcost.core._expr import Ceil, extreme, substitute
from symcost.core.sweep import Sweeper, tree_cse
from symcost.hardware import Hardware
from symcost.layers import GroupedQueryAttentionLayer

x, y = sp.symbols("x y", positive=True)
EXPRS = {
    "shared": sp.Max(x + y, 1) + (x + y) ** 2,           # a node used twice
    "piecewise": sp.Piecewise((x, x < 2), (y, True)),
    "quotient": x / (3 * y ** 2) + sp.Rational(1, 3) * x,
    "rounding": Ceil(x / 7) + sp.floor(y / 3) + sp.Min(x, y, 4),
    "functions": sp.sqrt(x) * sp.log(y) + sp.Abs(x - y),
    "constant": sp.Integer(5),
}
POINTS = [(0.5, 2.0), (1.5, 0.25), (3.0, 7.0), (10.0, 1.0), (2.0, 2.0)]


def exact_value(expr, px, py):
    """SymPy's own evaluation at exact rationals, then to float (independent of both compilers)."""
    return float(expr.xreplace({x: sp.Rational(px), y: sp.Rational(py)}).evalf(30))


def test_fast_compile_equals_sympy_at_exact_points():
    fast = Sweeper(EXPRS, fast_compile=True)
    px, py = (np.array(v) for v in zip(*POINTS))
    out = fast({x: px, y: py})
    for name, expr in EXPRS.items():
        want = [exact_value(expr, a, b) for a, b in POINTS]
        np.testing.assert_allclose(out[name], want, rtol=1e-14, err_msg=name)


def test_fast_compile_equals_lambdify_on_a_realistic_layer():
    """A GQA layer's latency and memory on the symbolic realistic chip (tiles, waves, Min over
    NCCL algorithms, Piecewise placements): both compilers, 2000 random points, to 1e-13."""
    chip = Hardware.symbolic(realistic=True)
    layer = GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8,
                                       parallelism={"tensor_parallel": S.tp})
    m = layer.compute_metrics(phase="decode", dtype="bf16", hardware=chip)
    fields = {"latency": m.latency, "memory": m.memory_per_chip}
    slow, fast = Sweeper(fields), Sweeper(fields, fast_compile=True)
    assert slow.args == fast.args
    rng = np.random.default_rng(3)
    inputs = {a: (rng.choice([1.0, 2, 4, 8], 2000) if a == S.tp else rng.uniform(1, 4096, 2000).round())
              for a in slow.args}
    for name, expr in fields.items():
        got, other = fast(inputs)[name], slow(inputs)[name]
        apart = np.flatnonzero(~np.isclose(got, other, rtol=1e-13, atol=0))
        # NB: where the two disagree (lambdify's float Ceil of a tile count one off at an exact
        # quotient: 1 point in 2000 since the chip has the custom all-reduce's two more symbols,
        # which shift the draws), SymPy's exact value decides, and it must be the fast compiler's
        assert apart.size <= 2, (name, apart)
        for i in apart:
            point = {a: sp.Integer(int(inputs[a][i])) for a in slow.args}
            np.testing.assert_allclose(got[i], float(expr.xreplace(point).evalf(30)), rtol=1e-13, err_msg=name)


def test_tree_cse_names_each_repeated_node_once():
    replacements, reduced = tree_cse([sp.Max(x + y, 1) + (x + y) ** 2, x + y])
    assert [value for _, value in replacements] == [x + y]
    (c, _), = replacements
    assert reduced[1] == c and reduced[0].xreplace({c: x + y}) == sp.Max(x + y, 1) + (x + y) ** 2


@pytest.mark.parametrize("kind", [sp.Max, sp.Min])
def test_extreme_has_sympys_value(kind):
    """Unevaluated over symbols, the value SymPy's evaluated form has once numbers go in."""
    args = [2 * x, x + y, sp.Integer(3), kind(y, 5), x]
    built, evaluated = extreme(kind, *args), kind(*args)
    assert isinstance(built, kind)
    for px, py in POINTS:
        at = {x: sp.Rational(px), y: sp.Rational(py)}
        assert built.xreplace(at) == evaluated.xreplace(at)
    assert extreme(kind, 4, 7) == kind(4, 7) and extreme(kind, x, x) == x
    assert extreme(sp.Max, x, -sp.oo) == x and extreme(sp.Max, x, sp.oo) == sp.oo


def test_substitute_matches_xreplace_in_value():
    expr = sp.Max(x, y) * 2 + sp.Min(x, 3)
    assert substitute(expr, {y: 2 * x}) == sp.Max(x, 2 * x, evaluate=False) * 2 + sp.Min(x, 3)
    assert substitute(expr, {x: 1, y: 4}) == expr.xreplace({x: 1, y: 4}) == 9


def test_exact_compile_keeps_a_piecewise_term_inside_its_sum():
    """``compile_exact`` prints a Piecewise as a Python conditional expression, which binds looser
    than ``+``: unparenthesised, ``10 + Piecewise((1, y < 0), (2, True))`` ran as ``(10 + 1) if y < 0
    else 2`` and returned 2 (a vLLM all-reduce's size switch inside a step's sum of op times
    returned the all-reduce alone). By hand: 10 + 2 = 12 at y = 1, 10 + 1 = 11 at y = -1."""
    from symcost.core.compile import compile_exact

    a, b = sp.symbols("a b")
    f = compile_exact([a, b], [a + sp.Piecewise((1, b < 0), (2, True))])
    assert f(10, 1) == (12,)
    assert f(10, -1) == (11,)

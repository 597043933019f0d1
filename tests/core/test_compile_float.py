"""Float programs (symcost.core.compile_float; the sweeps' ceilings): tighter extremes, exact ceilings.

References are SymPy's own evaluation of the untouched expressions at the same integers (exact),
and hand derivations written next to each case.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symcost.core._expr import Ceil, extreme
from symcost.core.compile_float import compile_float, dominates, tighten
from symcost.core.compiled import Program
from symcost.core.sweep import Sweeper
from symcost.core.symbols import batch_size as b
from symcost.core.symbols import seq_len as s

X = sp.Symbol("x", positive=True, integer=True)
FREE = sp.Symbol("y")  # no assumptions: its sign is unknown
# SymPy 1.14 takes Min(8, 2*b)/66 for an integer (so "Min(8, 2*b)/66 - 1 >= 0" and "ceiling(it) = it")
TRAP = sp.Min(8, 2 * b, evaluate=False) / 66


def test_dominated_arguments_are_dropped():
    # b, s are positive: 3bs - 2bs = bs >= 0, so Max(2bs, 3bs) = 3bs and Min(2bs, 3bs) = 2bs
    assert tighten([sp.Max(2 * b * s, 3 * b * s, evaluate=False)]) == [3 * b * s]
    assert tighten([sp.Min(2 * b * s, 3 * b * s, evaluate=False)]) == [2 * b * s]
    # Max(0, bs/7) = bs/7: the difference bs/7 - 0 is a positive rational times bs
    assert tighten([sp.Max(0, b * s / 7, evaluate=False)]) == [b * s / 7]
    # the surviving terms merge: Max(2bs, 3bs) + bs = 4bs
    assert tighten([sp.Max(2 * b * s, 3 * b * s, evaluate=False) + b * s]) == [4 * b * s]


def test_crossing_or_unknown_arguments_are_kept():
    # bs + 1 - 2bs = 1 - bs changes sign at bs = 1: neither argument dominates
    crossing = sp.Max(b * s + 1, 2 * b * s, evaluate=False)
    assert tighten([crossing]) == [crossing]
    # y has no sign: 2y - y = y is not provably >= 0
    unknown = sp.Max(FREE, 2 * FREE, evaluate=False)
    assert tighten([unknown]) == [unknown]
    assert not dominates(2 * FREE, FREE) and dominates(2 * b, b)


def test_nested_extremes_flatten_before_dropping():
    # Max(Max(b, 2b), s, 3b) = Max(3b, s): b and 2b are dominated by 3b; s and 3b cross
    got = tighten([sp.Max(sp.Max(b, 2 * b, evaluate=False), s, 3 * b, evaluate=False)])[0]
    assert isinstance(got, sp.Max) and set(got.args) == {s, 3 * b}


def test_ceiling_is_exact_where_a_float_ceiling_is_not():
    # 525 / 75 = 7 exactly, but 525 * (1/75) rounds to 7.000000000000001 in float64 and math.ceil
    # gives 8; the integer floor division -(-525 // 75) gives 7
    assert math.ceil(525 * (1 / 75)) == 8
    assert sp.lambdify([X], sp.ceiling(X / 75), modules="math")(525) == 8  # SymPy's float printer
    f = compile_float([X], [sp.ceiling(X / 75), sp.floor(X / 75), sp.ceiling(X / 3 + X / 7 + 1)])
    # 525/3 + 525/7 + 1 = 175 + 75 + 1 = 251; ceil(21/3 + 21/7 + 1) = 11; ceil(22/3 + 22/7 + 1) =
    # ceil(7.33 + 3.14 + 1) = 12
    assert f(525) == (7.0, 7.0, 251.0)
    assert f(21)[2] == 11.0 and f(22)[2] == 12.0
    assert all(type(v) is float for v in f(525))


def test_ceiling_of_a_product_with_a_sum_is_exact():
    # ceil(4 s (b/44 + 1) / 5) at b = 1, s = 671: 4 * 671 * 45 / (44 * 5) = 120,780 / 220 = 549
    # exactly (220 * 549 = 120,780), but the float product 4/5 * 671 * (1/44 + 1) rounds above 549
    # and math.ceil gave 550 (found by the property test below). Expanded, the argument is
    # (b s + 44 s) / 55, an integer floor division.
    expr = sp.ceiling(4 * s * (b / 44 + 1) / 5)
    assert expr.xreplace({b: 1, s: 671}) == 549
    assert math.ceil(0.8 * 671 * (1 / 44 + 1)) == 550
    f = compile_float([b, s], [expr, sp.floor(4 * s * (b / 44 + 1) / 5), sp.ceiling(s * (b + 1) * (b / 3 + 1) / 7)])
    # floor: 549; ceil(s (b + 1)(b/3 + 1)/7) at b = 2, s = 7: 7 * 3 * (5/3) / 7 = 5; at s = 8: 40/7 -> 6
    assert f(1, 671)[:2] == (549.0, 549.0)
    assert f(2, 7)[2] == 5.0 and f(2, 8)[2] == 6.0
    assert "_ceil(" not in f.source and "_floor(" not in f.source  # type: ignore[attr-defined]


def test_extremes_compute_each_argument_once_and_pick_right():
    # Max(b, s/2): b = 2, s = 5 -> 2.5; b = 3, s = 5 -> 3; Min of the same -> 2 and 2.5
    f = compile_float([b, s], [sp.Max(b, s / 2, evaluate=False), sp.Min(b, s / 2, evaluate=False)])
    assert f(2, 5) == (2.5, 2.0) and f(3, 5) == (3.0, 2.5)
    assert "max(" not in f.source and "min(" not in f.source  # type: ignore[attr-defined]


def test_a_node_it_cannot_print_falls_back_to_sympy():
    # a Piecewise is not printed here (the exact compiler prints it): b = 4 > 2 -> 4, b = 1 -> 2
    piecewise = sp.Piecewise((b, b > 2), (2 * b, True))
    with pytest.raises(NotImplementedError):
        compile_float([b], [piecewise])
    program = Program.build("test-float", (b,), {"piece": piecewise, "sum": b + 1})
    assert program.floats(4) == (4.0, 5.0) and program.floats(1) == (2.0, 2.0)
    assert program.exact(4) == (4, 5)


# multiples of the denominators' usual factors land ceilings on whole numbers, where a float ceiling errs
SIZES = st.one_of(st.integers(1, 10**6), st.builds(lambda k, q: k * q, st.integers(1, 10**4), st.sampled_from([
    3, 7, 11, 21, 75, 97, 132])))


@st.composite
def expressions(draw, depth=3):
    """A random non-negative expression in b and s: sums, products with rationals, extremes and
    ceilings, the nodes a step's programs are made of."""
    if depth == 0:
        coeff = sp.Rational(draw(st.integers(0, 50)), draw(st.integers(1, 97)))
        return coeff * draw(st.sampled_from([sp.Integer(1), b, s, b * s, s * (s + 1), s / (b + 2), TRAP * s,
                                             b * s / sp.Min(75, 3 * b, evaluate=False)]))
    kind = draw(st.sampled_from(["add", "mul", "max", "min", "ceil"]))
    parts = [draw(expressions(depth - 1)) for _ in range(draw(st.integers(2, 3)))]
    if kind == "add":
        return sp.Add(*parts)
    if kind == "mul":
        return parts[0] * (parts[1] + 1)
    if kind == "ceil":
        return draw(st.sampled_from([sp.ceiling, Ceil]))(parts[0] / draw(st.integers(1, 97)))
    # as the library builds them: unevaluated over symbols, evaluated over numbers (SymPy's own
    # rebuild of an unevaluated all-number extreme inside another goes wrong: with b = 1,
    # Min(2*b, Max(1, Min(0, 1))) built unevaluated xreplaces to 2, not 1)
    return extreme(sp.Max if kind == "max" else sp.Min, *parts)


@settings(max_examples=80, deadline=None)
@given(expr=expressions(), bv=SIZES, sv=SIZES)
def test_tighten_and_float_programs_equal_sympy(expr, bv, sv):
    point = {b: sp.Integer(bv), s: sp.Integer(sv)}
    want = expr.xreplace(point).doit()  # SymPy evaluates the untouched expression exactly
    assert tighten([expr])[0].xreplace(point).doit() == want
    got = compile_float([b, s], tighten([expr]))(bv, sv)[0]
    assert type(got) is float and abs(got - float(want)) <= 1e-12 * abs(float(want)) + 1e-300


def test_sweeps_divide_inside_ceilings():
    # the same 525 / 75 in a float64 sweep, both compilers: 525/75 = 7 (ceil 7, floor 7), 526/75 =
    # 7.01 (ceil 8, floor 7); 525/3 + 525/7 + 1/2 = 250.5 -> 251, 21/3 + 21/7 + 1/2 = 10.5 -> 11
    sizes = np.array([525.0, 526.0, 21.0])
    exprs = {"c": sp.ceiling(b / 75), "f": sp.floor(b / 75), "g": sp.ceiling(b / 3 + b / 7 + sp.Rational(1, 2))}
    for fast in (False, True):
        got = Sweeper(exprs, fast_compile=fast)(batch_size=sizes)
        assert got.c.tolist() == [7.0, 8.0, 1.0] and got.f.tolist() == [7.0, 7.0, 0.0], fast
        assert got.g.tolist() == [251.0, 251.0, 11.0], fast



def test_signs_are_not_taken_from_sympys_assumptions():
    # Max(s (c - 1) + s, s) = Max(s c, s) = s when c = Min(8, 2b)/66 < 1: at b = 1, s = 5 it is 5
    expr = sp.Max(s * (TRAP - 1) + s, s, evaluate=False)
    assert tighten([expr])[0].xreplace({b: 1, s: 5}).doit() == 5
    assert compile_float([b, s], tighten([expr]))(1, 5) == (5.0,)


def test_ceilings_stay_ceilings():
    # ceil(Max(c, c/2)) = ceil(2/66) = 1 at b = 1; ceil(Max(c, b/100 - 1)) = 1 too
    for expr in (sp.ceiling(sp.Max(TRAP, TRAP / 2, evaluate=False)), sp.ceiling(sp.Max(TRAP, b / 100 - 1,
                                                                                         evaluate=False))):
        assert tighten([expr])[0].xreplace({b: 1}).doit() == 1
        assert compile_float([b, s], tighten([expr]))(1, 1) == (1.0,)
    got = Sweeper({"c": Ceil(TRAP * s)})(batch_size=np.array([1.0]), seq_len=np.array([33.0]))
    assert got.c.tolist() == [1.0]  # ceil(2/66 * 33) = 1


def test_ceilings_inside_a_ceilings_argument_stay():
    # c = s Min(8, 2b)/66; ceil(c + ceil(c)) at (b, s) = (1, 1): c = 1/33, ceil(1/33 + 1) = 2;
    # (1, 40): c = 40/33, ceil(40/33 + 2) = 4; (3, 70): c = 70*6/66 = 70/11, ceil(70/11 + 7) = 14
    c = TRAP * s
    expr = sp.ceiling(sp.ceiling(c, evaluate=False) + c, evaluate=False)
    f = compile_float([b, s], tighten([expr]))
    assert [f(1, 1)[0], f(1, 40)[0], f(3, 70)[0]] == [2.0, 4.0, 14.0]


def test_ceilings_of_divisions_and_scaled_extremes_are_exact():
    # 4800 tokens over Min(75, 14 b) experts' worth at b = 14: ceil(4800 / 75) = 64 exactly
    f = compile_float([b, s], [Ceil(s / sp.Min(75, 14 * b, evaluate=False)),
                               Ceil(sp.Max(s / 3, b * s**2, evaluate=False) / 75)])
    # Max(128/3, 525 * 128^2) / 75 = 8,601,600 / 75 = 114,688 exactly (a float product rounds above)
    assert f(14, 4800)[0] == 64.0 and f(525, 128)[1] == 114688.0


def test_tighten_evaluates_a_ceiling_whose_argument_becomes_a_number():
    """Min(0, b) over positive b tightens to 0: the ceiling around it must become 0 too, not an
    unevaluated Ceil(0) that an outer Max cannot compare (found by the property test above)."""
    expr = extreme(sp.Max, b, Ceil(extreme(sp.Min, 0, b)))
    tight = tighten([expr])[0]
    assert tight == b and tight.xreplace({b: 1}) == 1

"""``compile_exact`` (the numeric path of ``compute_metrics``) gives exactly what SymPy's own
evaluation gives, for products whose factors are sums (each printed in parentheses)."""

from fractions import Fraction

import pytest
import sympy as sp

from symcost.core.compile import compile_exact

x, y, z = sp.symbols("x y z", positive=True, integer=True)

CASES = [
    # (expression, point, the value by hand)
    (x / ((y + 1) * (z + 1)), (6, 1, 2), Fraction(1)),  # 6 / (2 * 3)
    (sp.Rational(1, 3) * x / (y + 1), (6, 1, 2), Fraction(1)),  # 6 / (3 * 2)
    (x / (y + z) ** 2, (18, 1, 2), Fraction(2)),  # 18 / 3**2
    (2 * x * (y + 1) ** -3, (6, 1, 2), Fraction(3, 2)),  # 12 / 2**3
    ((x + y) ** 2 / (z + 1), (1, 2, 2), Fraction(3)),  # 3**2 / 3
    (x * sp.Piecewise((y + 1, x < 3), (z + 1, True)) / (y + z), (4, 1, 2), Fraction(4)),  # 4 * 3 / 3
    (x / (sp.Piecewise((y, x < 3), (z, True)) * (z + 1)), (4, 1, 2), Fraction(4, 6)),  # 4 / (2 * 3)
    (sp.Rational(5, 7) / ((x - y) * (z + 1)), (4, 1, 2), Fraction(5, 63)),  # 5 / (7 * 3 * 3)
]


@pytest.mark.parametrize("expr, point, want", CASES, ids=[str(c[0]) for c in CASES])
def test_compile_exact_parenthesises_every_factor(expr, point, want):
    exact = expr.xreplace(dict(zip((x, y, z), map(sp.Integer, point))))
    assert exact == sp.Rational(want.numerator, want.denominator)  # the hand value is SymPy's
    (got,) = compile_exact([x, y, z], [expr])(*point)
    assert got == want

"""Helpers for tests of symbolic results, shipped for users' own tests too.

>>> import sympy as sp
>>> from symcost.testing import assert_expr_equal
>>> x = sp.Symbol("x", positive=True)
>>> assert_expr_equal((x**2 - 1) / (x - 1), x + 1)
"""

from __future__ import annotations

from typing import Any

import sympy as sp

__all__ = ["assert_expr_equal", "expr_equal"]


def expr_equal(got: Any, want: Any) -> bool:
    """True when ``got - want`` cancels to zero (rational functions; no ``simplify``)."""
    return sp.cancel(sp.sympify(got) - sp.sympify(want)) == 0


def assert_expr_equal(got: Any, want: Any) -> None:
    """Raise ``AssertionError`` showing both sides and their difference unless they are equal."""
    diff = sp.cancel(sp.sympify(got) - sp.sympify(want))
    if diff != 0:
        raise AssertionError(f"expressions differ:\n  got:  {got}\n  want: {want}\n  diff: {diff}")

"""Compile SymPy expressions into fast Python functions that stay exact.

The numeric path of ``compute_metrics`` evaluates the very expressions the symbolic path builds,
compiled once per layer and workload shape: integers stay Python ints and rationals become
``fractions.Fraction`` (never floats), so the compiled function and ``xreplace`` agree exactly.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Sequence

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

__all__ = ["compile_exact"]


def _div(a, q):
    """``a / q`` exactly: an int when it divides, else a Fraction."""
    if isinstance(a, int):
        return a // q if a % q == 0 else Fraction(a, q)
    return a / q


class _ExactPrinter(PythonCodePrinter):
    """Python source with exact arithmetic: ``_div`` for rational coefficients and inverses."""

    printmethod = "_symcost_exact"  # not the objects' own _pythoncode (floats, math.*)

    def _print_Integer(self, expr):
        return str(expr.p)

    def _print_Rational(self, expr):
        return f"_Fraction({expr.p}, {expr.q})"

    def _print_Mul(self, expr):
        coeff, rest = expr.as_coeff_Mul()
        numer, denom = [], []
        for factor in sp.Mul.make_args(rest):
            base, exp = factor.as_base_exp()
            if exp.is_Integer and exp < 0:
                # NB: every factor in parentheses: ``y + 1`` in ``q*y + 1`` would divide by ``q*y`` only
                denom.append(f"({self._print(base)})" if exp == -1 else f"({self._print(base)})**{-exp}")
            else:
                numer.append(f"({self._print(factor)})")
        if coeff.is_Rational:
            p, q = int(coeff.p), int(coeff.q)
        else:  # a float coefficient cannot occur: formulas are exact
            raise TypeError(f"non-rational coefficient {coeff} in {expr}")
        top = "*".join(([str(p)] if p != 1 or not numer else []) + numer) or "1"
        if denom:
            top = f"_div({top}, {'*'.join(denom)})" if q == 1 else f"_div({top}, {q}*{'*'.join(denom)})"
            return top
        return top if q == 1 else f"_div({top}, {q})"

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.as_base_exp()
        if exp.is_Integer and exp < 0:
            return f"_div(1, ({self._print(base)})**{-exp})"
        if exp.is_Integer:
            return f"({self._print(base)})**{exp}"
        raise TypeError(f"cannot compile {expr} exactly")

    def _print_Max(self, expr):
        return "max(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_Min(self, expr):
        return "min(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_ceiling(self, expr):
        return f"_ceil({self._print(expr.args[0])})"

    def _print_Ceil(self, expr):
        return f"_ceil({self._print(expr.args[0])})"

    def _print_floor(self, expr):
        return f"_floor({self._print(expr.args[0])})"

    def _print_Piecewise(self, expr):
        # NB: the whole conditional in parentheses: Python's ``x if c else y`` binds looser than
        # ``+``, so a Piecewise term of a sum would otherwise take the sum into its first branch
        out = ""
        for value, cond in expr.args[:-1]:
            out += f"({self._print(value)}) if ({self._print(cond)}) else "
        return "(" + out + f"({self._print(expr.args[-1][0])}))"


_counter = itertools.count()


def compile_exact(args: Sequence[sp.Symbol], exprs: Sequence[sp.Expr]):
    """A Python function of ``args`` returning the tuple of ``exprs``, evaluated exactly."""
    printer = _ExactPrinter()
    replacements, reduced = sp.cse(list(exprs), optimizations=None)
    names = [f"_a{i}" for i in range(len(args))]
    rename = dict(zip(args, (sp.Symbol(n) for n in names)))
    lines = [f"def _f({', '.join(names)}):"]
    for sym, value in replacements:
        lines.append(f"    {sym} = {printer.doprint(sp.sympify(value).xreplace(rename))}")
    outs = [printer.doprint(sp.sympify(e).xreplace(rename)) for e in reduced]
    lines.append(f"    return ({', '.join(outs)},)")
    source = "\n".join(lines)
    namespace = {"_div": _div, "_Fraction": Fraction, "_ceil": math.ceil, "_floor": math.floor}
    exec(compile(source, f"<symcost-compiled-{next(_counter)}>", "exec"), namespace)
    return namespace["_f"]

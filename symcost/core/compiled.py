"""Named expressions compiled once into an exact and a float function of a few free symbols.

A whole training or inference step is a few dozen expressions in the batch and sequence sizes
once the model, chip, parallelism and options are fixed. :class:`Program` drops the extremes'
provably dominated arguments (:func:`~symcost.core.compile_float.tighten`, values unchanged) and
compiles them twice: exactly (scaled integers, or :func:`~symcost.core.compile.compile_exact`'s
ints and ``fractions.Fraction``; equal to evaluating the expressions in SymPy) and in float64
(:func:`~symcost.core.compile_float.compile_float`, the fast path). The divisibility rules the
expressions rely on (:mod:`symcost.core.assumptions`) compile with them, so a call can tell
whether its inputs break one without SymPy.

:data:`BUILDS` counts the programs built per kind (the tests count cache misses with it).
"""

from __future__ import annotations

import collections
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Mapping, Optional, Sequence, cast

import sympy as sp

from ..errors import AssumptionError
from ._expr import Ceil
from .assumptions import Assumption
from .compile import compile_exact
from .compile_float import SourceWriter, compile_float, tighten
from .cse import tree_cse

__all__ = ["BUILDS", "Program", "normal"]

BUILDS: collections.Counter = collections.Counter()
"""Programs built so far, by kind (e.g. ``"inference"``, ``"training"``)."""


def normal(value: Any) -> Any:
    """An exact result as :func:`symcost.core._expr.exact_value` gives it: an integral Fraction as int."""
    if type(value) is Fraction and value.denominator == 1:
        return value.numerator
    return value


@dataclass(frozen=True)
class Program:
    """``names`` evaluated at the values of ``args``: :meth:`exact` or :meth:`floats` (tuples in
    the order of ``names``); :meth:`holds` whether every rule holds there."""

    args: tuple[sp.Symbol, ...]
    names: tuple[str, ...]
    exact: Callable[..., tuple]
    floats: Callable[..., tuple]
    rule_values: Callable[..., tuple]
    rule_sizes: tuple[int, ...]
    rules: tuple[Assumption, ...] = ()
    """The rules whose pairs :attr:`rule_values` computes, in order (their sentences name a break)."""

    @classmethod
    def build(cls, kind: str, args: Sequence[sp.Symbol], exprs: Mapping[str, Any],
              rules: Sequence[Assumption] = ()) -> "Program":
        """Compile ``exprs`` (name -> expression in ``args``) and the pairs of ``rules``."""
        BUILDS[kind] += 1
        values = tighten(list(exprs.values()))
        free = set(args)
        kept = [r for r in rules if r.free_symbols and r.free_symbols <= free]
        pairs = [x for r in kept for m, d in r.pairs for x in (m, d)]
        try:
            floats = compile_float(list(args), values)
        except NotImplementedError:  # a node it does not print: SymPy's printer, floats after
            lambdified = sp.lambdify(list(args), values, modules="math", cse=True)
            floats = lambda *a: tuple(map(float, lambdified(*a)))  # noqa: E731
        try:
            exact = compile_scaled(list(args), values)
        except NotImplementedError:  # a node without a fixed denominator: Fractions throughout
            exact = compile_exact(list(args), values)
        return cls(tuple(args), tuple(exprs), exact, floats, _rule_function(list(args), pairs),
                   tuple(len(r.pairs) for r in kept), tuple(kept))

    def holds(self, *values: Any) -> bool:
        """Whether every rule holds at ``values`` (some pair of each rule divides)."""
        flat = self.rule_values(*values)
        i = 0
        for size in self.rule_sizes:
            end = i + 2 * size
            for j in range(i, end, 2):
                m, d = flat[j], flat[j + 1]
                if (m % d == 0) if type(m) is int and type(d) is int else (Fraction(m) % d == 0):
                    break
            else:
                return False
            i = end
        return True

    def broken(self, *values: Any) -> Optional[AssumptionError]:
        """The error of the first rule broken at ``values`` (its first pair's values, as
        :meth:`Assumption.error` gives it), or ``None`` when all hold.

        >>> x = sp.Symbol("x", positive=True, integer=True)
        >>> prog = Program.build("doc", [x], {"half": x / 2}, [Assumption.divisible(((x, 2),), "x", "2")])
        >>> prog.broken(4), str(prog.broken(3))
        (None, 'x must be divisible by 2 (got 3 and 2)')
        """
        flat = self.rule_values(*values)
        i = 0
        for rule, size in zip(self.rules, self.rule_sizes):
            pairs = [(flat[j], flat[j + 1]) for j in range(i, i + 2 * size, 2)]
            if not any(Fraction(m) % d == 0 for m, d in pairs):
                return rule.error(pairs[0])
            i += 2 * size
        return None


def _rule_function(args: list[sp.Symbol], pairs: list[Any]) -> Callable[..., tuple]:
    """The rules' (multiple, divisor) pairs as one exact function (scaled integers where it can)."""
    if not pairs:
        return lambda *a: ()
    try:
        return compile_scaled(args, pairs)
    except NotImplementedError:
        return compile_exact(args, pairs)


# -- exact evaluation on scaled integers ---------------------------------------------------------
#
# Fractions are slow (a gcd per operation). A step's expressions are mostly sums, products, max,
# min and ceilings of rational constants and the sizes, so each sub-expression ``x`` is computed
# as the integer ``x * D`` for a denominator ``D`` fixed at compile time (the least common
# multiple of its terms', the product of its factors'); one Fraction is made per output. A node
# dividing by an expression (``b / tpot``) is evaluated in Fractions from its scaled parts.


class _Scaled(SourceWriter):
    """Python source for expressions over scaled integers: ``tr(expr) -> (code, D)``, the code's
    value ``expr * D`` (an int) or, with ``D`` None, ``expr`` itself (int or Fraction)."""

    def exact(self, code: str, d: Optional[int]) -> str:
        return code if d in (None, 1) else f"_Fraction({code}, {d})"

    def number(self, expr: Any) -> tuple[str, Optional[int]]:
        return f"({int(expr.p)})", int(expr.q)

    def _common(self, parts: list[tuple[str, Optional[int]]]) -> Optional[tuple[list[str], int]]:
        """The parts scaled to one denominator, or None when one is a Fraction."""
        if any(d is None for _, d in parts):
            return None
        scale = math.lcm(*(cast(int, d) for _, d in parts))
        return [c if scale == d else f"{c}*{scale // cast(int, d)}" for c, d in parts], scale

    def add(self, expr: sp.Expr) -> tuple[str, Optional[int]]:
        parts = [self.tr(a) for a in expr.args]
        common = self._common(parts)
        if common is None:
            return "(" + " + ".join(self.exact(c, d) for c, d in parts) + ")", None
        return "(" + " + ".join(common[0]) + ")", common[1]

    def mul(self, expr: sp.Expr) -> tuple[str, Optional[int]]:
        parts = [self.tr(a) for a in expr.args]
        if any(d is None for _, d in parts):
            return "(" + "*".join(self.exact(c, d) for c, d in parts) + ")", None
        return "(" + "*".join(c for c, _ in parts) + ")", math.prod(cast(int, d) for _, d in parts)

    def pow(self, expr: sp.Expr) -> tuple[str, Optional[int]]:
        base, power = expr.as_base_exp()
        if not power.is_Integer:
            raise NotImplementedError(f"power {power}")
        code, d = self.tr(base)
        if power > 0:
            return f"({code})**{int(power)}", None if d is None else d ** int(power)
        return f"(1 / _Fraction({self.exact(code, d)})**{-int(power)})", None

    def extreme(self, expr: sp.Expr) -> tuple[str, Optional[int]]:
        name = "max" if isinstance(expr, sp.Max) else "min"
        parts = [self.tr(a) for a in expr.args]
        common = self._common(parts)
        if common is None:
            return f"{name}(" + ", ".join(self.exact(c, d) for c, d in parts) + ")", None
        return f"{name}(" + ", ".join(common[0]) + ")", common[1]

    def rounding(self, expr: sp.Expr) -> tuple[str, Optional[int]]:
        code, d = self.tr(expr.args[0])
        up = isinstance(expr, (sp.ceiling, Ceil))
        if d is None:
            return f"{'_ceil' if up else '_floor'}({code})", 1
        if d == 1:
            return code, 1
        return (f"(-((-{code}) // {d}))" if up else f"({code} // {d})"), 1


def _out(value: int, d: int) -> Any:
    return value if d == 1 else (value // d if value % d == 0 else Fraction(value, d))


def compile_scaled(args: Sequence[sp.Symbol], exprs: Sequence[sp.Expr]) -> Callable[..., tuple]:
    """Like :func:`~symcost.core.compile.compile_exact` (ints and Fractions, the same values),
    computed on scaled integers; raises ``NotImplementedError`` for a node it does not scale."""
    replacements, reduced = tree_cse([sp.sympify(e) for e in exprs])
    names = [f"_a{i}" for i in range(len(args))]
    env: dict = {a: (n, 1) for a, n in zip(args, names)}
    scaled = _Scaled(env)
    lines = [f"def _f({', '.join(names)}):"]
    for i, (symbol, value) in enumerate(replacements):
        code, d = scaled.tr(sp.sympify(value))
        lines.append(f"    _x{i} = {code}")
        env[symbol] = (f"_x{i}", d)
    outs = []
    for e in reduced:
        code, d = scaled.tr(sp.sympify(e))
        outs.append(f"_normal({code})" if d is None else f"_out({code}, {d})")
    lines.append(f"    return ({', '.join(outs)},)")
    namespace = {"_Fraction": Fraction, "_ceil": math.ceil, "_floor": math.floor, "_out": _out,
                 "_normal": normal}
    exec(compile("\n".join(lines), f"<symcost-scaled-{next(_COUNTER)}>", "exec"), namespace)
    return cast(Callable[..., tuple], namespace["_f"])


_COUNTER = itertools.count()

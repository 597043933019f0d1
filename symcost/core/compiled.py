"""Named expressions compiled once into an exact and a float function of a few free symbols.

A whole training or inference step is a few dozen expressions in the batch and sequence sizes
once the model, chip, parallelism and options are fixed. :class:`Program` compiles them twice:
:func:`~symcost.core.compile.compile_exact` (ints and ``fractions.Fraction``, equal to evaluating
the expressions in SymPy) and ``sympy.lambdify(..., cse=True)`` over ``math`` (float64, the fast
path). The divisibility rules the expressions rely on (:mod:`symcost.core.assumptions`) compile
with them, so a call can tell whether its inputs break one without SymPy.

:data:`BUILDS` counts the programs built per kind (the tests count cache misses with it).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Mapping, Sequence

import sympy as sp

from .assumptions import Assumption
from .compile import compile_exact

__all__ = ["BUILDS", "Program", "normal"]

BUILDS: collections.Counter = collections.Counter()
"""Programs built so far, by kind (e.g. ``"inference"``, ``"training"``)."""


def normal(value: Any) -> Any:
    """An exact result as :func:`symcost.core._expr.exact` gives it: an integral Fraction as int."""
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

    @classmethod
    def build(cls, kind: str, args: Sequence[sp.Symbol], exprs: Mapping[str, Any],
              rules: Sequence[Assumption] = ()) -> "Program":
        """Compile ``exprs`` (name -> expression in ``args``) and the pairs of ``rules``."""
        BUILDS[kind] += 1
        values = [sp.sympify(e) for e in exprs.values()]
        free = set(args)
        kept = [r for r in rules if r.free_symbols and r.free_symbols <= free]
        pairs = [x for r in kept for m, d in r.pairs for x in (m, d)]
        floats = sp.lambdify(list(args), values, modules="math", cse=True)
        return cls(tuple(args), tuple(exprs), compile_exact(list(args), values), floats,
                   compile_exact(list(args), pairs) if pairs else (lambda *a: ()),
                   tuple(len(r.pairs) for r in kept))

    def holds(self, *values: Any) -> bool:
        """Whether every rule holds at ``values`` (some pair of each rule divides)."""
        flat = self.rule_values(*values)
        i = 0
        for size in self.rule_sizes:
            pairs = flat[i:i + 2 * size]
            i += 2 * size
            if not any(Fraction(pairs[j]) % pairs[j + 1] == 0 for j in range(0, 2 * size, 2)):
                return False
        return True

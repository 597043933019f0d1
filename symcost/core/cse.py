"""Common sub-expressions in linear time, for every compiler of expressions in symcost.

``sympy.cse`` searches common subsets of sums and products and rebuilds every node it touches
with evaluation: a ``Max`` rebuilt that way compares its arguments pairwise again, seconds for a
whole model's step. :func:`tree_cse` matches whole nodes only and rebuilds them unevaluated: the
same values, a build linear in the size of the expression DAG. The sweeps
(:mod:`symcost.core.sweep`) and the compiled programs of steps and layer templates
(:mod:`symcost.core.compiled`, :mod:`symcost.core.compile_float`) use it; the Fraction
fallback (:mod:`symcost.core.compile`) keeps ``sympy.cse``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import sympy as sp

__all__ = ["node_counts", "rewrite", "tree_cse", "unevaluated"]


def unevaluated(node: sp.Basic, args: list[sp.Basic]) -> sp.Basic:
    """``node`` with ``args``, not evaluated again (the printers take unevaluated nodes alike)."""
    try:
        return node.func(*args, evaluate=False)
    except TypeError:  # a node that takes no evaluate flag (Piecewise pairs, And, ...)
        return node.func(*args)


def node_counts(exprs: Sequence[sp.Expr]) -> dict[sp.Basic, int]:
    """How many times each non-atomic node is reached from ``exprs`` (a shared node's children
    are walked once), the input of :func:`tree_cse` and of the sweeps' DAG compiler."""
    counts: dict[sp.Basic, int] = {}
    stack = list(exprs)
    while stack:
        node = stack.pop()
        if node.is_Atom:
            continue
        seen = counts.get(node, 0)
        counts[node] = seen + 1
        if not seen:
            stack.extend(node.args)
    return counts


def tree_cse(exprs: Sequence[sp.Expr]) -> tuple[list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
    """Common sub-expressions of ``exprs`` as ``(replacements, reduced)`` (the signature of
    ``sympy.cse``): every compound node that occurs more than once becomes one variable.

    Linear in the size of the expression DAG: nodes are matched whole (no search for common
    subsets of sums and products, as ``sympy.cse`` does) and rebuilt with ``evaluate=False``, so
    no ``Max`` or ``Min`` compares its arguments again. The values are those of the expressions.

    >>> x, y = sp.symbols("x y", positive=True)
    >>> tree_cse([sp.Max(x + y, 1) + (x + y) ** 2])
    ([(_c, x + y)], [_c**2 + Max(1, _c)])
    """
    counts = node_counts(exprs)
    replacements: list[tuple[sp.Symbol, sp.Expr]] = []
    built: dict[sp.Basic, sp.Basic] = {}

    def rebuild(node: sp.Basic) -> sp.Basic:
        if node.is_Atom:
            return node
        done = built.get(node)
        if done is not None:
            return done
        args = [rebuild(a) for a in node.args]
        new = node if all(a is b for a, b in zip(args, node.args)) else unevaluated(node, args)
        if counts[node] > 1:
            symbol = sp.Dummy("c")
            replacements.append((symbol, new))
            new = symbol
        built[node] = new
        return new

    return replacements, [rebuild(sp.sympify(e)) for e in exprs]


def rewrite(exprs: Sequence[Any], rule: Callable[[sp.Basic, list], Any],
            atoms: Optional[Mapping[Any, Any]] = None) -> list[Any]:
    """``exprs`` rebuilt bottom up, each shared node once: an atom replaced by ``atoms`` (when
    given), and ``rule(node, args)`` gives every compound node over its rewritten ``args``
    (``node`` itself when it keeps it).

    >>> x = sp.Symbol("x")
    >>> rewrite([sp.sin(x) + 1], lambda n, a: sp.cos(*a) if type(n) is sp.sin else n.func(*a))
    [cos(x) + 1]
    """
    memo: dict = {}

    def walk(node: Any) -> Any:
        done = memo.get(node)
        if done is None:
            if node.is_Atom or not node.args:
                done = node if atoms is None else atoms.get(node, node)
            else:
                done = rule(node, [walk(a) for a in node.args])
            memo[node] = done
        return done

    return [walk(sp.sympify(e)) for e in exprs]

"""Solving for integers: the largest value that fits a limit, the smallest degree that fits.

Results are exact integers verified by evaluation: ``max_integer`` checks that its answer ``n``
fits (``expr(n) <= limit``) and ``n + multiple_of`` does not. Where SymPy can solve
``expr = limit`` (polynomials up to degree 4 in the symbol, e.g. the quadratic of eager attention)
the result also carries the closed form of the real root, in whatever symbols remain.

Metrics built from peaks (``Max``) and caps (``Min``) are solved branch by branch: for
increasing terms, ``Max(f1, f2) <= C`` holds iff ``f1 <= C`` and ``f2 <= C``, and
``Min(f1, f2) <= C`` iff either does; sums and nonnegative products distribute over both, so
``A + Max(f1, f2) <= C`` gives ``x <= Min(r1, r2)`` with ``r_i`` the root of ``A + f_i = C``.

NB: ``solve`` drops roots of ``integer=True`` symbols, so we solve for a positive real stand-in,
take the floor, and verify (STYLE rule 8). The metric is assumed non-decreasing in the symbol
(every size in symcost is); the verification at ``n`` and ``n + 1`` is exact either way.

>>> from symcost import GroupedQueryAttentionLayer, symbols as S
>>> from symcost.analysis.solve import max_integer
>>> m = GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8).compute_metrics(
...     batch_size=1, phase="decode", dtype="bf16")
>>> r = max_integer(m.kv_cache_memory_per_chip, S.seq_len, 80 * 10**9)   # 4096 bytes per token
>>> r.value, r.closed_form
(19531250, 19531250)
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterable, Literal, Optional

import sympy as sp

from ..core import display
from ..core import symbols as sym
from ..core._expr import as_expr, exact_value
from ..errors import ConfigError, SolveError, UnboundSymbolError

__all__ = ["IntegerSolution", "DegreeSolution", "max_integer", "min_degree", "common_divisors"]

Status = Literal["found", "nothing_fits", "unbounded"]

_SEARCH_CAP = 2**128  # beyond this a metric that still fits is reported as unbounded


@dataclass(frozen=True)
class IntegerSolution:
    """The largest integer ``symbol`` with ``expr <= limit``.

    ``status`` is ``"found"`` (``value`` is the answer), ``"nothing_fits"`` (not even ``lower``
    fits; ``value`` is ``None``) or ``"unbounded"`` (the metric never exceeds the limit; ``value``
    is ``None``). ``closed_form`` is the real root of ``expr = limit`` when SymPy finds one
    (``floor`` of it is the answer when ``multiple_of`` is 1), else ``None``; for a metric
    with ``Max`` or ``Min`` in the symbol it is a ``Min``/``Max`` of the branches' roots, and
    :attr:`branches` lists each root with the condition under which it is the answer.
    """

    symbol: sp.Symbol
    value: Optional[int]
    status: Status
    closed_form: Optional[sp.Expr]
    expr: sp.Expr
    limit: sp.Expr

    @property
    def branches(self) -> tuple[tuple[sp.Expr, Any], ...]:
        """``(root, condition)`` pairs: ``closed_form`` as a piecewise function (one pair with
        condition ``True`` when it has a single branch; empty without a closed form)."""
        if self.closed_form is None:
            return ()
        if not self.closed_form.has(sp.Min, sp.Max):
            return ((self.closed_form, sp.true),)
        piecewise = sp.piecewise_fold(self.closed_form.rewrite(sp.Piecewise))
        if not isinstance(piecewise, sp.Piecewise):
            return ((piecewise, sp.true),)
        return tuple((value, condition) for value, condition in piecewise.args)

    kind: str = "plain"
    """What the limit measures, for display (a kind of :data:`symcost.core.display.KINDS`: ``"bytes"``
    for a memory limit)."""

    def __str__(self) -> str:
        closed = None if self.closed_form is None or self.closed_form.is_number else f"floor({self.closed_form})"
        value = {"nothing_fits": "nothing fits", "unbounded": "unbounded"}.get(self.status) or (
            ", ".join(x for x in (None if self.value is None else _count(self.value), closed) if x))
        return f"largest {self.symbol} = {value} with {_condition_text(self)}"

    def __repr__(self) -> str:
        return display.short_repr("IntegerSolution", [
            (str(self.symbol), str(self.value)), ("status", self.status),
            ("limit", display.text(self.limit, self.kind))])

    def _repr_latex_(self) -> str:
        r"""The largest value, its closed form (``\lfloor root \rfloor``, one case per branch) and
        the condition it holds under; a numeric integer root is the value itself."""
        return _integer_latex(self)

    def _repr_html_(self) -> str:
        return _integer_html(self)


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _condition_text(r: "IntegerSolution") -> str:
    """``expr <= limit`` in words (the metric written out when it is short)."""
    metric = str(display.readable(r.expr, r.kind))
    metric = metric if len(metric) <= 80 else "the metric"
    return f"{metric} <= {display.text(r.limit, r.kind)}"


def _floor(root: sp.Expr) -> str:
    return f"\\left\\lfloor {display.formula(root)} \\right\\rfloor"


def _integer_latex(r: "IntegerSolution") -> str:
    name = sp.latex(r.symbol, symbol_names=sym.latex_names()) + "_{\\max}"
    value = {"nothing_fits": "\\text{nothing fits}", "unbounded": "\\infty"}.get(
        r.status, "" if r.value is None else latex_count(r.value))
    branches = r.branches
    if r.closed_form is None or (r.closed_form.is_Integer and r.value is not None):
        body = value
    elif r.closed_form.is_number:
        body = f"{value} \\quad (\\text{{root }} {display.formula(r.closed_form)})"
    elif len(branches) == 1:
        body = _floor(r.closed_form) + (f" = {value}" if value else "")
    else:
        cases = " \\\\ ".join(f"{_floor(root)} & {sp.latex(cond, symbol_names=sym.latex_names())}"
                              for root, cond in branches)
        body = f"\\begin{{cases}} {cases} \\end{{cases}}"
    metric = display.formula(r.expr, r.kind)
    metric = metric if len(metric) <= 300 else "\\text{metric}"
    limit = display.latex(r.limit, r.kind)
    return f"${name} = {body} \\quad \\text{{where }} {metric} \\le {limit}$"


def latex_count(value: int) -> str:
    """An integer with thousands separators, for LaTeX math (``19{,}531{,}250``)."""
    return f"{value:,}".replace(",", "{,}")


def _integer_html(r: "IntegerSolution") -> str:
    rows = [["value", _count(r.value) if r.value is not None else r.status.replace("_", " ")],
            ["status", r.status]]
    if r.closed_form is not None:
        rows.append(["closed form", f"<code>{html.escape(str(r.closed_form))}</code>"])
    rows.append(["holds under", html.escape(_condition_text(r))])
    parts = [display.html_table(["", str(r.symbol)], rows)]
    if len(r.branches) > 1:
        parts.append(display.html_table(["root", "when"], [
            [f"<code>floor({html.escape(str(root))})</code>", f"<code>{html.escape(str(cond))}</code>"]
            for root, cond in r.branches]))
    return display.html_section(f"largest {r.symbol}", parts)


@dataclass(frozen=True)
class DegreeSolution:
    """The smallest candidate degree whose metric fits; ``checked`` lists
    ``(degree, metric value, fits)`` for every candidate tried, in order."""

    value: Optional[int]
    status: Literal["found", "nothing_fits"]
    checked: tuple[tuple[int, Any, bool], ...]
    limit: Any = None
    kind: str = "plain"
    """What the metric measures, for display (see :attr:`IntegerSolution.kind`)."""

    def __str__(self) -> str:
        tried = ", ".join(f"{n}: {display.text(v, self.kind)} {'fits' if ok else 'no'}" for n, v, ok in self.checked)
        head = "nothing fits" if self.value is None else f"smallest degree {self.value}"
        return f"{head} (limit {display.text(self.limit, self.kind)}; tried {tried})"

    def __repr__(self) -> str:
        return display.short_repr("DegreeSolution", [("value", str(self.value)), ("status", self.status),
                                                     ("checked", str(len(self.checked)))])

    def _repr_latex_(self) -> str:
        limit = display.latex(self.limit, self.kind)
        if self.value is None:
            return f"$n_{{\\min}}: \\text{{nothing fits }} {limit}$"
        metric = next(v for n, v, _ in self.checked if n == self.value)
        return (f"$n_{{\\min}} = {self.value} \\quad \\text{{where }} \\text{{metric}}(n_{{\\min}}) = "
                f"{display.latex(metric, self.kind)} \\le {limit}$")

    def _repr_html_(self) -> str:
        chosen = next((i for i, (n, _, _) in enumerate(self.checked) if n == self.value), None)
        rows = [[str(n), display.html(v, self.kind), "yes" if ok else "no"] for n, v, ok in self.checked]
        head = "nothing fits" if self.value is None else f"smallest degree: {self.value}"
        return display.html_section(f"{head} (limit {display.text(self.limit, self.kind)})",
                                    [display.html_table(["degree", "metric", "fits"], rows, highlight=chosen)])


def _limit(limit: Any) -> sp.Expr:
    if isinstance(limit, float):
        if limit != limit or limit in (float("inf"), float("-inf")):
            raise ConfigError(f"limit must be a finite number, got {limit}")
        limit = Fraction(repr(limit))  # decimal digits, exactly
    if isinstance(limit, bool) or not isinstance(limit, (int, Fraction, sp.Expr)):
        raise ConfigError(f"limit must be a number or a SymPy expression, got {type(limit).__name__} "
                         f"{limit!r}")
    return as_expr(limit, "limit")


def _symbol(symbol: Any) -> sp.Symbol:
    if isinstance(symbol, str):
        return sym.lookup(symbol)
    if not isinstance(symbol, sp.Symbol):
        raise ConfigError(f"symbol must be a SymPy symbol or a canonical name, got {symbol!r}")
    return symbol


def _real_root(expr: sp.Expr, x: sp.Symbol, limit: sp.Expr) -> Optional[sp.Expr]:
    """The positive real root of ``expr = limit`` in ``x`` for polynomials of degree <= 4."""
    stand_in = sp.Symbol("x_real", positive=True)
    equation = sp.expand((expr - limit).xreplace({x: stand_in}))
    try:
        poly = sp.Poly(equation, stand_in)
    except sp.PolynomialError:
        return None
    if not 1 <= poly.degree() <= 4:
        return None
    if poly.degree() == 1:
        a, c = poly.all_coeffs()
        return sp.cancel(-c / a)
    if poly.degree() == 2:
        a, b_, c = poly.all_coeffs()
        # the root where the (increasing) metric crosses the limit: a > 0 or b > 0 gives '+'
        return (-b_ + sp.sqrt(b_**2 - 4 * a * c)) / (2 * a)
    roots = [r for r in sp.roots(poly, multiple=True) if r.is_positive is not False]
    if len(roots) == 1:
        return roots[0]
    return None


_MAX_BRANCHES = 64  # beyond this many branches the closed form is not worth building
Lattice = list[list[sp.Expr]]  # Max over the outer list of Min over each inner list


def _lattice(expr: sp.Expr, x: sp.Symbol) -> Optional[Lattice]:
    """``expr`` as ``Max_i Min_j F_ij`` with every ``F_ij`` free of ``Max``/``Min`` in ``x``
    (sums and products of nonnegative terms distribute over both), or ``None``."""
    if not expr.has(x) or not expr.has(sp.Max, sp.Min):
        return [[expr]]
    if isinstance(expr, (sp.Max, sp.Min)):
        parts = [_lattice(a, x) for a in expr.args]
        known = [p for p in parts if p is not None]
        if len(known) != len(parts):
            return None
        if isinstance(expr, sp.Max):  # Max of Maxes: the outer lists join
            out = [row for p in known for row in p]
        else:  # Min(Max_i A_i, Max_k B_k) = Max_{i,k} Min(A_i, B_k)
            out = [[e for row in rows for e in row] for rows in itertools.product(*known)]
    elif isinstance(expr, (sp.Add, sp.Mul)):
        parts = [_lattice(a, x) for a in expr.args]
        factors = [p for p in parts if p is not None]
        if len(factors) != len(parts):
            return None
        if isinstance(expr, sp.Mul) and not all(
                e.is_nonnegative for p in factors for row in p for e in row):
            return None  # Max distributes over a product only when every factor is nonnegative
        out = []
        for rows in itertools.product(*factors):  # one term from each factor's outer list
            out.append([expr.func(*terms) for terms in itertools.product(*rows)])
    elif isinstance(expr, sp.Pow) and expr.exp.is_Integer and expr.exp > 0:
        base = _lattice(expr.base, x)
        if base is None or not all(e.is_nonnegative for row in base for e in row):
            return None
        out = [[e**expr.exp for e in row] for row in base]
    else:
        return None
    if sum(len(row) for row in out) > _MAX_BRANCHES:
        return None
    return out


def _closed_form(expr: sp.Expr, x: sp.Symbol, limit: sp.Expr) -> Optional[sp.Expr]:
    """The largest real ``x`` with ``expr <= limit`` in closed form, for metrics increasing in
    ``x``: the root of a polynomial, or for ``Max_i Min_j F_ij`` the ``Min_i Max_j`` of roots."""
    if not expr.has(sp.Max, sp.Min):
        return _real_root(expr, x, limit)
    lattice = _lattice(expr, x)
    if lattice is None:
        return None
    outer = []
    for row in lattice:
        inner = []
        for branch in row:
            if branch.has(x):
                root = _real_root(branch, x, limit)
            else:  # a branch free of x: every x, or none, fits it
                verdict = sp.Le(branch, limit)
                root = {sp.true: sp.oo, sp.false: -sp.oo}.get(verdict)
            if root is None:
                return None
            inner.append(root)
        outer.append(sp.Max(*inner))
    return sp.Min(*outer)


def _fits(expr: sp.Expr, x: sp.Symbol, n: int, limit: sp.Expr) -> bool:
    value = expr.xreplace({x: sp.Integer(n)})
    verdict = sp.Le(value, limit)
    if verdict not in (sp.true, sp.false):
        raise UnboundSymbolError(f"cannot compare {value} with the limit {limit}: "
                         "bind every other symbol first")
    return verdict is sp.true


def max_integer(expr: Any, symbol: Any, limit: Any, *, lower: int = 1, upper: Optional[int] = None,
                multiple_of: int = 1, kind: str = "plain") -> IntegerSolution:
    """The largest integer ``n`` (a multiple of ``multiple_of``, ``lower <= n <= upper``) with
    ``expr(n) <= limit``, verified at ``n`` and ``n + multiple_of``.

    ``expr`` must depend on no symbol but ``symbol`` for a numeric ``value``; otherwise only the
    ``closed_form`` is returned (``value`` ``None``, status ``"found"``) if SymPy finds one.
    ``limit`` is an exact number (floats are read by their decimal digits) or an expression;
    ``kind`` says what it measures for display (``"bytes"``, ``"time"``, ...: :data:`symcost.core.display.KINDS`).

    >>> from symcost import symbols as S
    >>> r = max_integer(3 * S.seq_len**2 + 10 * S.seq_len, S.seq_len, 1000)
    >>> r.value, r.status                                   # 3*17^2 + 170 = 1037 > 1000
    (16, 'found')
    >>> max_integer(S.seq_len + 5, S.seq_len, 3).status
    'nothing_fits'
    """
    x = _symbol(symbol)
    expr = as_expr(expr, "expr")
    lim = _limit(limit)
    _check_kind(kind)
    if lower < 1 or multiple_of < 1 or (upper is not None and upper < lower):
        raise ConfigError("need 1 <= lower <= upper and multiple_of >= 1")
    root = _closed_form(expr, x, lim) if x in expr.free_symbols else None
    other = (expr.free_symbols | lim.free_symbols) - {x}
    if other:
        if root is None:
            raise SolveError(f"no closed form for {x} and other symbols remain "
                             f"({', '.join(sorted(map(str, other)))}): bind them to get a value")
        return IntegerSolution(x, None, "found", root, expr, lim, kind)

    step = multiple_of
    start = -(-lower // step) * step  # the first multiple of step >= lower
    if upper is not None and start > upper:
        raise ConfigError(f"no multiple of {step} lies in [{lower}, {upper}]")
    if not _fits(expr, x, start, lim):
        return IntegerSolution(x, None, "nothing_fits", root, expr, lim, kind)
    cap = upper if upper is not None else _SEARCH_CAP

    # a guess from the closed form, verified exactly; else doubling then bisection
    if root is not None and root.is_real:
        guess = int(sp.floor(root)) // step * step
        if start <= guess <= cap and _fits(expr, x, guess, lim) and (
                guess + step > cap or not _fits(expr, x, guess + step, lim)):
            return IntegerSolution(x, guess, "found", root, expr, lim, kind)
    value = _search(lambda n: _fits(expr, x, n, lim), start, step, cap, bounded=upper is not None)
    return IntegerSolution(x, value, "unbounded" if value is None else "found", root, expr, lim, kind)


def _check_kind(kind: str) -> None:
    if kind not in display.KINDS:
        raise ConfigError(f"kind must be one of {', '.join(display.KINDS)}, got {kind!r}")


def _search(fits: Callable[[int], bool], start: int, step: int, cap: int, bounded: bool) -> Optional[int]:
    """The largest multiple of ``step`` in ``[start, cap]`` that ``fits`` (``start`` does), by
    doubling then bisection; ``None`` when ``cap`` itself fits and no upper bound was given."""
    lo = start // step  # in units of step: lo fits
    hi = lo * 2
    while hi * step <= cap and fits(hi * step):
        lo, hi = hi, hi * 2
    if hi * step > cap:
        top = cap // step
        if fits(top * step):
            return top * step if bounded else None
        hi = top + 1 if top >= lo else lo + 1
    while hi - lo > 1:  # lo fits, hi does not
        mid = (lo + hi) // 2
        if fits(mid * step):
            lo = mid
        else:
            hi = mid
    return lo * step


def min_degree(expr: Any, symbol: Any, limit: Any, candidates: Iterable[int], *,
               kind: str = "plain") -> DegreeSolution:
    """The smallest candidate degree ``n`` with ``expr(n) <= limit``.

    ``expr`` is an expression in ``symbol`` or a callable ``n -> value`` (for metrics whose
    shape depends on ``n`` beyond a formula, e.g. replicated KV heads). Candidates are tried in
    increasing order; pass valid degrees only (see :func:`common_divisors`).

    >>> from symcost import symbols as S
    >>> min_degree(640 / S.tp, S.tp, 100, [1, 2, 4, 8, 16]).value   # 640/8 = 80 fits, 640/4 doesn't
    8
    """
    lim = _limit(limit)
    _check_kind(kind)
    evaluate: Callable[[int], Any]
    if callable(expr) and not isinstance(expr, sp.Basic):
        evaluate = expr
    else:
        x, e = _symbol(symbol), as_expr(expr, "expr")

        def evaluate(n: int) -> Any:
            return e.xreplace({x: sp.Integer(n)})
    checked = []
    for n in sorted(set(candidates)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"candidates must be positive integers, got {n!r}")
        value = as_expr(evaluate(n), "metric")
        verdict = sp.Le(value, lim)
        if verdict not in (sp.true, sp.false):
            raise UnboundSymbolError(f"cannot compare {value} with the limit {lim}: bind every symbol")
        checked.append((n, exact_value(value), verdict is sp.true))
        if verdict is sp.true:
            return DegreeSolution(n, "found", tuple(checked), lim, kind)
    return DegreeSolution(None, "nothing_fits", tuple(checked), lim, kind)


def common_divisors(*sizes: int, limit: Optional[int] = None) -> list[int]:
    """Every positive integer dividing all ``sizes`` (up to ``limit``): the valid degrees.

    >>> common_divisors(32, 8, 14336)
    [1, 2, 4, 8]
    """
    if not sizes or any(not isinstance(s, int) or s < 1 for s in sizes):
        raise ConfigError("sizes must be positive integers")
    g = sizes[0]
    for s in sizes[1:]:
        g = sp.igcd(g, s)
    return [d for d in sp.divisors(g) if limit is None or d <= limit]

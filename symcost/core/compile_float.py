"""Float64 programs of exact expressions: fewer extremes, no calls in the hot path.

A compiled step's float path (:class:`symcost.core.compiled.Program`) evaluates a few dozen
expressions in the batch and sequence sizes: sums of rational multiples of the sizes, extremes
(``Max``/``Min``) of roofline terms and ceilings of wave and tile counts. Two steps make that fast:

* :func:`tighten` drops an argument of an extreme that another argument provably dominates for
  every value the symbols allow: the difference ``a - b`` is a sum of terms, each a non-negative
  rational times a product shown non-negative node by node from the symbols' declared signs (the
  sizes are positive symbols; SymPy's assumption system is not asked, see :func:`dominates`). The extreme
  is unchanged, exactly: ``max(a, b) = a`` when ``a - b >= 0``. ``Max(2 c x, 3 c x)`` becomes
  ``3 c x`` and the terms it leaves merge with their neighbours. SymPy's own ``Max`` compares
  every pair on construction, which is why the library builds extremes unevaluated
  (:func:`symcost.core._expr.extreme`); this pass runs once per program, not per expression built.
* :func:`compile_float` prints Python source without ``max``/``min``/``ceil`` calls: an extreme
  is a conditional expression over its arguments (each computed once), and a ceiling of a sum of
  rational multiples of integers is an integer floor division ``-(-N // L)`` (``L`` the
  denominators' least common multiple), exact where ``math.ceil`` of a rounded float could be one
  too high. Sizes stay Python ints until a rational coefficient (a float literal) or a division
  meets them; every output is a float.

A node it does not know (a non-integer power, a function) raises ``NotImplementedError``; the
caller then falls back to ``sympy.lambdify``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Optional, Sequence, cast

import sympy as sp

from ._expr import Ceil
from .cse import rewrite, tree_cse, unevaluated

__all__ = ["SourceWriter", "compile_float", "dominates", "tighten"]

_COUNTER = itertools.count()


def _signed(expr: Any, strict: bool) -> bool:
    """Whether ``expr >= 0`` (``strict``: ``> 0``) follows from its symbols' declared signs, by
    the sign of each node (SymPy's assumption system is not asked: SymPy 1.14 believes
    ``Min(8, 2*b)/66`` an integer, hence ``Min(8, 2*b)/66 - 1 >= 0``). ``False`` means not shown."""
    if expr.is_Number:
        return bool(expr > 0) if strict else bool(expr >= 0)
    if expr.is_Symbol:
        return (expr.is_positive if strict else expr.is_nonnegative) is True
    kind, args = type(expr), expr.args
    if kind is sp.Add:
        return all(_signed(a, False) for a in args) and (not strict or any(_signed(a, True) for a in args))
    if kind is sp.Mul:
        return all(_signed(a, strict) for a in args)
    if kind is sp.Pow:
        base, power = expr.as_base_exp()
        return power.is_Integer and _signed(base, bool(strict or power < 0))
    if kind is sp.Max:
        return any(_signed(a, strict) for a in args)
    if kind is sp.Min:
        return all(_signed(a, strict) for a in args)
    if kind in (sp.ceiling, Ceil):  # ceil(x) >= x, and ceil(x) >= 1 when x > 0
        return _signed(args[0], strict)
    if kind is sp.floor:  # floor(x) >= 0 when x >= 0
        return not strict and _signed(args[0], False)
    return False


def dominates(a: sp.Expr, b: sp.Expr) -> bool:
    """Whether ``a >= b`` for every value the symbols' assumptions allow, shown term by term:
    ``a - b`` is a non-negative number or a sum of non-negative rationals times products shown
    non-negative node by node (``False`` means *not shown*, not ``a < b``).

    >>> from symcost.core.symbols import batch_size as b, seq_len as s
    >>> dominates(3 * b * s + 2, 2 * b * s), dominates(3 * b * s, 2 * b * s + 1)
    (True, False)
    """
    diff = sp.Add(a, -b)
    if diff.is_Number:
        return bool(diff >= 0)
    for term in sp.Add.make_args(diff):
        coeff, rest = term.as_coeff_Mul()
        if not coeff.is_Rational or coeff < 0 or not _signed(rest, False):
            return False
    return True


def _extreme(kind: Any, args: Sequence[sp.Expr]) -> sp.Expr:
    """``kind(*args)`` (Max or Min) without the arguments another one provably dominates."""
    flat: list[sp.Expr] = []
    for a in args:
        flat.extend(a.args if type(a) is kind else (a,))
    big = kind is sp.Max
    kept: list[sp.Expr] = []
    for a in flat:
        if any(dominates(o, a) if big else dominates(a, o) for o in kept):
            continue
        kept = [o for o in kept if not (dominates(a, o) if big else dominates(o, a))]
        kept.append(a)
    if len(kept) == 1:
        return kept[0]
    return cast(sp.Expr, kind(*kept, evaluate=all(a.is_number for a in kept)))


def tighten(exprs: Sequence[Any]) -> list[sp.Expr]:
    """``exprs`` with every extreme's provably dominated arguments dropped (:func:`dominates`),
    bottom up, each shared sub-expression once; the values are unchanged.

    >>> import sympy as sp
    >>> from symcost.core.symbols import batch_size as b, seq_len as s
    >>> tighten([sp.Max(2 * b * s, 3 * b * s, evaluate=False) + b * s])
    [4*b*s]
    """

    def rule(node: Any, args: list) -> Any:
        if type(node) in (sp.Max, sp.Min):
            return _extreme(type(node), args)
        if all(x is y for x, y in zip(args, node.args)):
            return node
        if type(node) in (sp.Add, sp.Mul) or all(a.is_number for a in args):
            # evaluated: the terms left merge; a ceiling of a number is that number's
            return node.func(*args)
        # NB: unevaluated: SymPy's ceiling drops itself over an argument it wrongly takes for an integer
        return unevaluated(node, args)

    return rewrite(exprs, rule)


_HANDLERS = {sp.Add: "add", sp.Mul: "mul", sp.Pow: "pow", sp.Max: "extreme", sp.Min: "extreme",
             sp.ceiling: "rounding", sp.floor: "rounding", Ceil: "rounding"}


class SourceWriter:
    """Python source of an expression node by node: ``tr(expr) -> (code, tag)``, a node already
    written taken from ``env``; a subclass writes numbers (``number``) and each kind of node
    (``add``, ``mul``, ``pow``, ``extreme``, ``rounding``); another node raises
    ``NotImplementedError``."""

    def __init__(self, env: dict) -> None:
        self.env = env

    def number(self, expr: Any) -> tuple[str, Any]:
        raise NotImplementedError

    def tr(self, expr: Any) -> tuple[str, Any]:
        if expr in self.env:
            return self.env[expr]
        if expr.is_Rational:
            return self.number(expr)
        name = _HANDLERS.get(type(expr))
        if name is None:
            raise NotImplementedError(type(expr).__name__)
        return cast(tuple[str, Any], getattr(self, name)(expr))


class _Printer(SourceWriter):
    """Python float source for one function: ``tr(expr) -> (code, kind)``, ``kind`` "i" when the
    code's value is always a Python int, "f" always a float, "m" either (an extreme of both)."""

    def __init__(self, env: dict) -> None:
        super().__init__(env)
        self.temps = itertools.count()
        self.defs: dict = {}
        """A common sub-expression's symbol -> its value (a ceiling's argument is unfolded)."""

    def number(self, expr: Any) -> tuple[str, str]:
        return (f"({int(expr)})", "i") if expr.is_Integer else (f"({float(expr)!r})", "f")

    @staticmethod
    def _kind(kinds: list[str]) -> str:
        return "f" if "f" in kinds else "m" if "m" in kinds else "i"

    def add(self, expr: sp.Expr) -> tuple[str, str]:
        parts = [self.tr(a) for a in expr.args]
        return "(" + " + ".join(c for c, _ in parts) + ")", self._kind([k for _, k in parts])

    def mul(self, expr: sp.Expr) -> tuple[str, str]:
        parts = [self.tr(a) for a in expr.args]
        return "(" + "*".join(c for c, _ in parts) + ")", self._kind([k for _, k in parts])

    def pow(self, expr: sp.Expr) -> tuple[str, str]:
        base, power = expr.as_base_exp()
        if not power.is_Integer:
            raise NotImplementedError(f"power {power}")
        code, kind = self.tr(base)
        if power > 0:
            return f"({code})**{int(power)}", kind
        return f"(1 / ({code})**{-int(power)})", "f"

    def extreme(self, expr: sp.Expr) -> tuple[str, str]:
        """``max(a, b)`` as ``(t if (t := a) >= (u := b) else u)``, folded left over the
        arguments: no call, each argument computed once."""
        op = ">=" if isinstance(expr, sp.Max) else "<="
        parts = [self.tr(a) for a in expr.args]
        code, kind = parts[0]
        for other, other_kind in parts[1:]:
            t, u = f"_t{next(self.temps)}", f"_t{next(self.temps)}"
            code = f"({t} if ({t} := {code}) {op} ({u} := {other}) else {u})"
            kind = kind if kind == other_kind else "m"
        return code, kind

    def _unfold(self, expr: Any) -> Any:
        """``expr`` with every common sub-expression that is not an integer written out, at any
        depth (tree CSE hoists ``x/75`` out of ``ceiling(x/75)`` and ``floor(x/75)``); sums and
        products re-evaluated (their terms merge), every other node rebuilt unevaluated."""
        hidden = {x for x in expr.free_symbols if x in self.defs and self.env[x][1] != "i"}
        if not hidden:
            return expr

        def rule(node: Any, args: list) -> Any:
            if all(x is y for x, y in zip(args, node.args)):
                return node
            return node.func(*args) if type(node) in (sp.Add, sp.Mul) else unevaluated(node, args)

        return rewrite([expr], rule, {x: self._unfold(self.defs[x]) for x in hidden})[0]

    def _fraction(self, expr: Any) -> Optional[tuple[str, str]]:
        """``(N, D)``, Python source of integers with ``expr = N / D``, when ``expr`` is a sum of
        rational multiples of integer products over one integer denominator; else ``None``."""
        terms, below = [], None
        for term in sp.Add.make_args(expr):
            coeff, rest = term.as_coeff_Mul()
            if not coeff.is_Rational:
                return None
            top: list[tuple[Any, str]] = []
            bottom: list[tuple[Any, str]] = []
            for factor in sp.Mul.make_args(rest):
                base, power = factor.as_base_exp()
                negative = power.is_Integer and power < 0
                code, kind = self.tr(base ** -power if negative else factor) if factor != 1 else ("1", "i")
                if kind != "i":
                    return None
                (bottom if negative else top).append((base ** -power if negative else factor, code))
            shared = sp.Mul(*(f for f, _ in bottom))
            if below is not None and shared != below[0]:
                return None
            below = below or (shared, "*".join(c for _, c in bottom) or "1")
            terms.append((coeff, "*".join(c for _, c in top) or "1"))
        scale = math.lcm(*(int(c.q) for c, _ in terms))
        numerator = " + ".join(f"{int(c * scale)}*{code}" for c, code in terms)
        denominator = below[1] if below is not None else "1"
        return numerator, denominator if scale == 1 else f"{scale}*{denominator}"

    def rounding(self, expr: sp.Expr) -> tuple[str, str]:
        """``ceil(x)`` of ``x = sum(c_i t_i) / d`` (rational ``c_i``, integer ``t_i`` and ``d``)
        as ``-(-N // D)`` with ``N = L sum(c_i t_i)`` and ``D = L d`` integers (``L`` the lcm of
        the denominators): exact, products of sums expanded first (``ceil(4 s (b/44 + 1)/5)`` is
        ``-(-(b s + 44 s) // 55)``; the float product of the factors can round past a whole
        number). Of ``c`` times an extreme (``c > 0``), the extreme of the ceilings (a ceiling is
        monotone). Otherwise ``math.ceil`` of the float (``floor`` alike)."""
        up = isinstance(expr, (sp.ceiling, Ceil))
        arg = self._unfold(expr.args[0])
        coeff, rest = arg.as_coeff_Mul()
        if type(rest) in (sp.Max, sp.Min) and coeff > 0:  # ceil(c max(x, y)) = max(ceil(c x), ceil(c y))
            return self.tr(type(rest)(*(expr.func(coeff * a, evaluate=False) for a in rest.args), evaluate=False))
        fraction = self._fraction(arg)
        if fraction is None and _has_sum_factor(arg):  # c s (b/44 + 1): (c b s/44 + c s), exact once expanded
            fraction = self._fraction(sp.expand_mul(arg))
        if fraction is not None:
            top, bottom = fraction
            if bottom == "1":
                return f"({top})", "i"
            return (f"(-(-({top}) // ({bottom})))" if up else f"(({top}) // ({bottom}))"), "i"
        code, _ = self.tr(expr.args[0])
        return f"{'_ceil' if up else '_floor'}({code})", "i"


def _has_sum_factor(expr: Any) -> bool:
    """Whether a term of ``expr`` has a sum as a factor (not a denominator): the sums of rational
    multiples of products :meth:`_Printer._fraction` reads appear once it is expanded.

    >>> from symcost.core.symbols import batch_size as b, seq_len as s
    >>> _has_sum_factor(s * (b / 44 + 1)), _has_sum_factor(s / (b + 2) + b)
    (True, False)
    """
    return any(isinstance(factor, sp.Add) for term in sp.Add.make_args(expr) for factor in sp.Mul.make_args(term))


def compile_float(args: Sequence[sp.Symbol], exprs: Sequence[Any]) -> Callable[..., tuple]:
    """One Python function of ``args`` (ints) returning the floats of ``exprs`` (pass them
    through :func:`tighten` first); ``NotImplementedError`` for a node it cannot print.

    >>> from symcost.core.symbols import batch_size as b, seq_len as s
    >>> import sympy as sp
    >>> f = compile_float([b, s], [sp.ceiling(b * s / 3), sp.Max(b, s / 2, evaluate=False), 7])
    >>> f(2, 3), f(2, 5)
    ((2.0, 2.0, 7.0), (4.0, 2.5, 7.0))
    """
    replacements, reduced = tree_cse([sp.sympify(e) for e in exprs])
    names = [f"_a{i}" for i in range(len(args))]
    env: dict = {a: (n, "i") for a, n in zip(args, names)}
    printer = _Printer(env)
    lines = [f"def _f({', '.join(names)}):"]
    for i, (symbol, value) in enumerate(replacements):
        code, kind = printer.tr(value)
        lines.append(f"    _x{i} = {code}")
        env[symbol] = (f"_x{i}", kind)
        printer.defs[symbol] = value
    outs = []
    for e in reduced:
        e = sp.sympify(e)
        if e.is_Number:
            outs.append(repr(float(e)))
            continue
        code, kind = printer.tr(e)
        outs.append(code if kind == "f" else f"float({code})")
    lines.append(f"    return ({', '.join(outs)},)")
    namespace: dict[str, Any] = {"_ceil": math.ceil, "_floor": math.floor}
    exec(compile("\n".join(lines), f"<symcost-float-{next(_COUNTER)}>", "exec"), namespace)
    function = cast(Callable[..., tuple], namespace["_f"])
    function.source = "\n".join(lines)  # type: ignore[attr-defined]
    return function

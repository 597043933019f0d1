"""Small helpers shared by every module: exact conversion, validation, totals.

Validation is three-valued, as in ``sympy.stats``: raise only when a rule is *provably* broken;
a symbolic value whose sign or integrality SymPy cannot decide passes, and the rule becomes a
documented assumption.
"""

from __future__ import annotations

import copyreg
import numbers
from fractions import Fraction
from typing import Any, Iterable, Optional, Union

import sympy as sp

from ..errors import ConfigError
from .assumptions import Assumption, record

Value = Union[int, Fraction, sp.Expr]
"""What a metric field holds: an exact Python number or a SymPy expression."""


def as_expr(value: Any, field: str) -> sp.Expr:
    """``value`` as an exact SymPy expression; ``field`` names it in errors.

    Accepts ``int`` (also NumPy integers), ``fractions.Fraction`` and SymPy expressions. Floats,
    booleans and strings are refused: floats are inexact, and strings are never parsed.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{field} must be a number or a SymPy expression, got a bool ({value})")
    if isinstance(value, sp.Basic):
        if not isinstance(value, sp.Expr):
            raise ConfigError(f"{field} must be a SymPy expression, got {type(value).__name__}")
        if value.has(sp.Float):
            raise ConfigError(
                f"{field} contains a float ({value}); use integers or sympy.Rational for exact results"
            )
        return value
    if isinstance(value, numbers.Integral):
        return sp.Integer(int(value))
    if isinstance(value, Fraction):
        return sp.Rational(value.numerator, value.denominator)
    if isinstance(value, numbers.Real):
        raise ConfigError(
            f"{field} must be exact (int, fractions.Fraction or SymPy), got the float {value!r}"
        )
    raise ConfigError(
        f"{field} must be an int or a SymPy expression, got {type(value).__name__} {value!r}"
        " (strings are never parsed: use the symbols in symcost.symbols)"
    )


def dim(value: Any, field: str) -> sp.Expr:
    """A size or a degree: a positive integer, or an expression not provably otherwise."""
    if type(value) is int:  # the common case, decided without SymPy's assumption system
        if value <= 0:
            raise ConfigError(f"{field} must be positive, got {value}")
        return sp.Integer(value)
    expr = as_expr(value, field)
    if expr.is_positive is False or (expr.is_number and expr.is_zero):
        raise ConfigError(f"{field} must be positive, got {expr}")
    if expr.is_integer is False:
        raise ConfigError(f"{field} must be an integer, got {expr}")
    return expr


def check_divides(numerator: sp.Expr, divisor: sp.Expr, field: str, by: Optional[str] = None, note: str = "") -> None:
    """Raise :class:`~symcost.errors.DivisibilityError` when ``divisor`` provably does not divide
    ``numerator``; when undecided, record the rule (:func:`symcost.core.assumptions.record`).

    The rule: ``field`` must be divisible by ``by`` (names, the error's fields; ``note`` qualifies
    it), e.g. ``check_divides(a, t, "num_heads", by="tensor_parallel")``. Without ``by``, ``field``
    is the rule's whole sentence, and the error names no fields.

    >>> check_divides(sp.Integer(32), sp.Integer(3), "num_heads", by="tensor_parallel")
    Traceback (most recent call last):
    ...
    symcost.errors.AssumptionError: num_heads must be divisible by tensor_parallel (got 32 and 3)
    """
    if divisor == 1:
        return
    # provably broken: raise; undecided (symbols): recorded as an assumption of the metrics
    pairs = ((numerator, divisor),)
    record(Assumption(pairs, field) if by is None else Assumption.divisible(pairs, field, by, note))


def exact_value(value: Value) -> Value:
    """A SymPy number as a plain exact Python number (``int`` or ``Fraction``); other values as is.

    >>> exact_value(sp.Integer(6)), exact_value(sp.Rational(1, 2)), exact_value(sp.Symbol("x") + 1)
    (6, Fraction(1, 2), x + 1)
    """
    if isinstance(value, sp.Integer):
        return int(value)
    if isinstance(value, sp.Rational):
        return Fraction(int(value.p), int(value.q))
    return value


def extreme(kind: Any, *args: Any) -> sp.Expr:
    """``kind(*args)`` for ``kind`` ``sympy.Max`` or ``sympy.Min``, its arguments compared only
    when every one is a number.

    SymPy's ``Max`` drops an argument it can prove dominated, comparing every pair of symbolic
    arguments (milliseconds each for the rational functions of a step, and it rarely succeeds).
    Dropping a dominated argument never changes the value, so the extreme is built unevaluated
    over the distinct arguments, nested extremes of the same kind flattened; it evaluates once
    numbers are substituted.

    >>> from symcost.core.symbols import batch_size as b
    >>> extreme(sp.Max, 2 * b, sp.Max(b, 3), b)
    Max(3, b, 2*b)
    >>> extreme(sp.Max, 2, 3), extreme(sp.Max, 2 * b, 2 * b)
    (3, 2*b)
    """
    flat: dict[Any, None] = {}
    for arg in args:
        a: Any = sp.sympify(arg)
        flat.update(dict.fromkeys(a.args if type(a) is kind else (a,)))
    flat.pop(kind.identity, None)  # Max(x, -oo) = x
    if len(flat) <= 1 or kind.zero in flat or all(a.is_number for a in flat):
        return kind(*flat)
    return kind(*flat, evaluate=False)


def _rebuilt(kind: Any, args: tuple) -> Any:
    return kind(*args, evaluate=False)


def _pickled_unevaluated(node: Any) -> tuple:
    return _rebuilt, (type(node), node.args)


# NB: SymPy unpickles (and deep-copies) a node by calling its class on its arguments, evaluated:
# an unevaluated Max or Min compares its arguments again and a ceiling or floor drops itself over
# an argument SymPy takes for an integer, and SymPy 1.14 wrongly takes Min(8, 2*b)/66 for one (a
# pickled MoE layer's compute time came back 3.2x its value at b = 1). These four are rebuilt as
# they were stored: an evaluated one's arguments are already its evaluated form, so it is equal.
for _kind in (sp.Max, sp.Min, sp.ceiling, sp.floor):
    copyreg.pickle(_kind, _pickled_unevaluated)


def substitute(expr: Any, mapping: dict) -> Any:
    """``expr.xreplace(mapping)`` with every ``Max`` and ``Min`` it rebuilds built by
    :func:`extreme` (not compared while symbolic): the same value, without SymPy's order search.

    >>> from symcost.core.symbols import batch_size as b, seq_len as s
    >>> substitute(sp.Max(b, s) + 1, {s: 2 * b})
    Max(b, 2*b) + 1
    >>> substitute(sp.Max(b, s) + 1, {s: 2, b: 3})
    4
    """
    memo: dict = {}

    def go(node: Any) -> Any:
        if node in mapping:
            return mapping[node]
        if node.is_Atom or not node.args:
            return node
        done = memo.get(node)
        if done is None:
            args = [go(a) for a in node.args]
            if all(a is b for a, b in zip(args, node.args)):
                done = node
            elif type(node) in (sp.Max, sp.Min):
                done = extreme(type(node), *args)
            else:
                done = node.func(*args)
            memo[node] = done
        return done

    return go(sp.sympify(expr))


def total(terms: Iterable[Any]) -> sp.Expr:
    """The sum of ``terms`` in one ``sympy.Add`` (``sum()`` is quadratic in SymPy)."""
    return sp.Add(*terms)



class Ceil(sp.Function):
    """``ceil(x)`` that evaluates only on numbers.

    NB: SymPy's own ``ceiling`` returns its argument unchanged when SymPy believes the argument is
    an integer, and SymPy 1.14 wrongly believes it of expressions such as ``Min(8, 2*y)/66``;
    the tile and wave counts of the time model (symcost.hardware.timing) need a ceiling that stays
    unevaluated until its argument is a number.

    >>> from symcost.core.symbols import batch_size as b
    >>> Ceil(sp.Min(8, 2 * b) / 66).xreplace({b: 1})
    1
    >>> Ceil(sp.Rational(7, 2)), Ceil(3)
    (4, 3)
    """

    is_integer = True

    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        if x.is_Number:
            return sp.ceiling(x)
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.S.Zero  # piecewise constant: zero almost everywhere

    def _eval_is_nonnegative(self) -> bool | None:
        return True if self.args[0].is_nonnegative else None

    def _eval_is_positive(self) -> bool | None:
        return True if self.args[0].is_positive else None

    def _latex(self, printer: Any) -> str:
        return r"\left\lceil{%s}\right\rceil" % printer._print(self.args[0])

    def _numpycode(self, printer: Any) -> str:
        return f"{printer._module_format('numpy.ceil')}({printer._print(self.args[0])})"

    def _pythoncode(self, printer: Any) -> str:
        return f"{printer._module_format('math.ceil')}({printer._print(self.args[0])})"

    _mpmathcode = _pythoncode

r"""Numbers with units, for people: times, bytes, FLOPs, rates, counts and percentages.

Every result object of symcost keeps its exact value (an ``int``, a ``fractions.Fraction`` or a
SymPy number); these functions only *display* it: the value is scaled to the largest unit prefix
that keeps it at or above 1, rounded to ``digits`` significant digits (4 by default; trailing
zeros dropped) and followed by its unit. The input is never changed.

- time: s, ms, µs, ns (:func:`format_time`);
- bytes: decimal GB = 10⁹ bytes (``docs/conventions.md`` rule 14) or binary GiB = 2³⁰ bytes
  with ``binary=True``; the unit always says which (:func:`format_bytes`);
- FLOPs: kFLOP … PFLOP, EFLOP (:func:`format_flops`); rates per second (:func:`format_rate`).

Pure Python: SymPy numbers are recognised by their attributes (``is_Rational``, ``is_number``), so
importing this module loads no SymPy.

>>> from fractions import Fraction
>>> format_time(Fraction(22948, 654296875))
'35.07 µs'
>>> format_bytes(80 * 10**9), format_bytes(80 * 10**9, binary=True)
('80 GB', '74.51 GiB')
>>> format_flops(989 * 10**12), format_rate(3_350_000_000_000, "B")
('989 TFLOP', '3.35 TB/s')
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any, Sequence, Union

from ..errors import ConfigError

__all__ = [
    "Number", "to_number", "format_time", "format_bytes", "format_flops", "format_rate",
    "format_count", "format_percent", "format_scaled",
]

Number = Union[int, Fraction, float]
"""What :func:`to_number` returns: exact when the input was exact."""

DIGITS = 4
"""Significant digits shown by default (3–4: ``35.07 µs``, ``1.5 GB``, ``989 TFLOP``)."""

# (factor, prefix), smallest first. NB: SI prefixes; "µ" is U+00B5 MICRO SIGN as in most tools.
_SI_UP: tuple[tuple[int, str], ...] = (
    (1, ""), (10**3, "k"), (10**6, "M"), (10**9, "G"), (10**12, "T"), (10**15, "P"), (10**18, "E"),
)
_IEC_UP: tuple[tuple[int, str], ...] = (
    (1, ""), (2**10, "Ki"), (2**20, "Mi"), (2**30, "Gi"), (2**40, "Ti"), (2**50, "Pi"), (2**60, "Ei"),
)
_TIME: tuple[tuple[Fraction, str], ...] = (
    (Fraction(1, 10**9), "ns"), (Fraction(1, 10**6), "µs"), (Fraction(1, 10**3), "ms"), (Fraction(1), "s"),
)
_COUNT: tuple[tuple[int, str], ...] = (
    (1, ""), (10**6, " million"), (10**9, " billion"), (10**12, " trillion"),
)
_PREFIXED_UNITS = {"FLOP", "B"}
"""Units :func:`format_rate` gives an SI (or IEC) prefix; other units get thousands separators."""


def to_number(value: Any) -> Number:
    """``value`` as an ``int``, a ``Fraction`` (both exact) or a ``float``, for display only.

    Accepts ``int`` (also NumPy integers), ``Fraction``, ``float`` (also NumPy floats) and SymPy
    numbers (``Integer``, ``Rational``, ``Float`` and constant expressions such as ``sqrt(2)``).
    A symbolic SymPy expression, a bool or a string is a :class:`~symcost.errors.ConfigError`.

    >>> import sympy as sp
    >>> to_number(sp.Rational(3, 4)), to_number(sp.Integer(7)), to_number(2.5)
    (Fraction(3, 4), 7, 2.5)
    """
    if isinstance(value, bool) or isinstance(value, str):
        raise ConfigError(f"a displayed quantity must be a number, got {type(value).__name__} {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Real) and not hasattr(value, "is_number"):
        return float(value)
    if getattr(value, "is_Integer", False):
        return int(value)
    if getattr(value, "is_Rational", False):
        return Fraction(int(value.p), int(value.q))
    if getattr(value, "is_number", False) and not getattr(value, "free_symbols", True):
        try:
            return float(value)
        except TypeError as exc:  # a complex constant
            raise ConfigError(f"a displayed quantity must be real, got {value}") from exc
    raise ConfigError(
        f"a displayed quantity must be a number (int, Fraction, float or a SymPy number), "
        f"got {type(value).__name__} {value!r}; bind every symbol first"
    )


def _round(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant digits (in float: display only)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def _digits(x: float, digits: int) -> str:
    """``x`` (already scaled) with ``digits`` significant digits, no exponent, no trailing zeros.

    Values of 10^digits and more are written whole; 1000 and more get thousands separators (``12,345``).
    """
    if not math.isfinite(x):
        return str(x)
    r = _round(x, digits)
    if abs(r) >= 10**digits:
        return f"{round(x):,}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(r)))) if r else 0
    text = f"{r:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_scaled(value: Any, units: Sequence[tuple[Any, str]], digits: int = DIGITS) -> str:
    """``value`` in the largest unit of ``units`` (``(factor, name)``, smallest first) it reaches.

    The unit is chosen on the rounded value, so 999.96 µs reads ``1 ms``, not ``1000 µs``;
    values below the smallest unit stay in it; zero is written in the unit of factor 1 (``0 s``).

    >>> format_scaled(1500, [(1, " m"), (1000, " km")])
    '1.5 km'
    """
    number = to_number(value)
    chosen = units[0] if number else next((u for u in units if u[0] == 1), units[0])  # 0 s, not 0 ns
    for factor, name in units:
        if number and abs(_round(_ratio(number, factor), digits)) >= 1:
            chosen = (factor, name)
    factor, name = chosen
    return f"{_digits(_ratio(number, factor), digits)}{name}"


def _ratio(number: Number, factor: Any) -> float:
    """``number / factor`` as a float, divided exactly when both are exact."""
    if isinstance(number, float):
        return number / float(factor)
    return float(Fraction(number) / Fraction(factor))


def format_time(seconds: Any, digits: int = DIGITS) -> str:
    """A duration in s, ms, µs or ns.

    >>> format_time(2), format_time(0.0125), format_time(Fraction(1, 4_000_000)), format_time(0)
    ('2 s', '12.5 ms', '250 ns', '0 s')
    >>> format_time(12345.6)
    '12,346 s'
    """
    return format_scaled(seconds, [(factor, f" {name}") for factor, name in _TIME], digits)


def format_bytes(n: Any, binary: bool = False, digits: int = DIGITS) -> str:
    """A byte count in decimal (kB, MB, GB = 10⁹ B, ...) or, with ``binary=True``, IEC units (GiB = 2³⁰ B).

    >>> format_bytes(512), format_bytes(16 * 2**30), format_bytes(16 * 2**30, binary=True)
    ('512 B', '17.18 GB', '16 GiB')
    """
    return format_scaled(n, [(f, f" {p}B") for f, p in (_IEC_UP if binary else _SI_UP)], digits)


def format_flops(n: Any, digits: int = DIGITS) -> str:
    """A FLOP count in FLOP, kFLOP, MFLOP, GFLOP, TFLOP, PFLOP or EFLOP.

    >>> format_flops(549_755_813_888), format_flops(3 * 10**18)
    ('549.8 GFLOP', '3 EFLOP')
    """
    return format_scaled(n, [(f, f" {p}FLOP") for f, p in _SI_UP], digits)


def format_rate(x: Any, unit: str, binary: bool = False, digits: int = DIGITS) -> str:
    """``x`` units per second: ``FLOP`` and ``B`` get a prefix (IEC for bytes with ``binary=True``),
    other units (``token``, ``sample``, ...) thousands separators.

    >>> format_rate(989_400_000_000_000, "FLOP"), format_rate(900 * 10**9, "B", binary=True)
    ('989.4 TFLOP/s', '838.2 GiB/s')
    >>> format_rate(Fraction(123456789, 1000), "token"), format_rate(2.5, "sample")
    ('123,457 token/s', '2.5 sample/s')
    """
    if unit in _PREFIXED_UNITS:
        table = _IEC_UP if binary and unit == "B" else _SI_UP
        return format_scaled(x, [(f, f" {p}{unit}/s") for f, p in table], digits)
    return format_scaled(x, [(1, f" {unit}/s")], digits)


def format_count(n: Any, digits: int = DIGITS) -> str:
    """A plain count (parameters, tokens): whole below a million (``262,144``), else in millions,
    billions or trillions.

    >>> format_count(6_738_415_616), format_count(512), format_count(262_144)
    ('6.738 billion', '512', '262,144')
    """
    return format_scaled(n, _COUNT, digits)


def format_percent(x: Any, digits: int = 3) -> str:
    """A fraction (0.5 is 50 %) as a percentage with ``digits`` significant digits.

    >>> format_percent(Fraction(2, 5)), format_percent(0.41234)
    ('40 %', '41.2 %')
    """
    number = to_number(x)
    return f"{_digits(float(number * 100), digits)} %"

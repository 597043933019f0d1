"""Field validators shared by the chip and the runtime profiles: exact numbers from ints,
fractions, decimal strings or floats (read by their digits), with their sign rules."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any

import sympy as sp
from pydantic import BeforeValidator, ValidationInfo

from ..core._expr import as_expr
from ..errors import ConfigError


def exact_number(value: Any, field: str) -> sp.Expr:
    """An exact number from an int, Fraction, SymPy value, decimal string or float.

    Floats and strings are read by their decimal digits (``Fraction("989.4e12")``), so
    ``989.4e12`` is exactly 989,400,000,000,000; nothing is evaluated.
    """
    if isinstance(value, str):
        try:
            value = Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{field} must be a number, got the string {value!r}") from None
    elif isinstance(value, float) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{field} must be finite, got {value}")
        value = Fraction(repr(value))
    return as_expr(value, field)


def _positive(value: Any, info: ValidationInfo) -> sp.Expr:
    expr = exact_number(value, str(info.field_name))
    if expr.is_positive is False:
        raise ConfigError(f"{info.field_name} must be positive, got {expr}")
    return expr


def _non_negative(value: Any, info: ValidationInfo) -> sp.Expr:
    expr = exact_number(value, str(info.field_name))
    if expr.is_negative:
        raise ConfigError(f"{info.field_name} must be non-negative, got {expr}")
    return expr


def _efficiency(value: Any, info: ValidationInfo) -> sp.Expr:
    expr = _positive(value, info)
    if (expr - 1).is_positive:
        raise ConfigError(f"{info.field_name} must be a fraction in (0, 1], got {expr}")
    return expr


def _share(value: Any, info: ValidationInfo) -> sp.Expr:
    expr = _non_negative(value, info)
    if (expr - 1).is_positive:
        raise ConfigError(f"{info.field_name} must be a fraction in [0, 1], got {expr}")
    return expr


def _domain(value: Any, info: ValidationInfo) -> sp.Expr:
    expr = _positive(value, info)
    if expr.is_integer is False:
        raise ConfigError(f"{info.field_name} must be a whole number of chips, got {expr}")
    return expr


Rate = Annotated[Any, BeforeValidator(_positive)]
Efficiency = Annotated[Any, BeforeValidator(_efficiency)]
Seconds = Annotated[Any, BeforeValidator(_non_negative)]
Share = Annotated[Any, BeforeValidator(_share)]
Chips = Annotated[Any, BeforeValidator(_domain)]



"""symcost's errors: one hierarchy under :class:`SymcostError`, itself a ``ValueError``.

Every error symcost raises for bad input is one line that names the field and the rule it
breaks. The classes say which kind of rule, so a caller can catch exactly what it handles::

    SymcostError (ValueError)
    ├── ConfigError            a field's value breaks its rule (a size, a degree, a name, a type)
    │   ├── DivisibilityError  a degree does not divide what it splits (heads, width, tokens, layers)
    │   │   └── AssumptionError  a value breaks a rule a symbolic expression was derived under
    │   └── HardwareError      a chip description or a chip name is not usable
    ├── UnboundSymbolError     a number or a comparison was asked for while symbols are still free
    └── SolveError             a solver cannot answer (no closed form in the symbol solved for)

Because the base is a ``ValueError``, ``except ValueError`` keeps working. NB: a rule checked
inside a pydantic validator (a layer's or :class:`~symcost.core.parallelism.Parallelism`'s fields)
reaches the caller as pydantic's ``ValidationError`` (also a ``ValueError``) whose message is
ours; pydantic wraps every ``ValueError`` a validator raises.

>>> from symcost.errors import DivisibilityError, SymcostError
>>> issubclass(DivisibilityError, SymcostError) and issubclass(SymcostError, ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "AssumptionError",
    "ConfigError",
    "DivisibilityError",
    "HardwareError",
    "SolveError",
    "SymcostError",
    "UnboundSymbolError",
    "one_line",
]


def one_line(err: BaseException) -> str:
    r"""``err``'s message as one line; for pydantic's ``ValidationError`` (a layer's rule checked
    in its validator) the first error's own message, without pydantic's ``Value error,`` prefix.

    >>> one_line(ValueError("tp must divide heads\nmore detail"))
    'tp must divide heads'
    """
    errors = getattr(err, "errors", None)
    if callable(errors):
        message = str(errors()[0].get("msg", err)).removeprefix("Value error, ")
    else:
        message = str(err)
    return (message.splitlines() or [type(err).__name__])[0]


class SymcostError(ValueError):
    """Base of every error symcost raises for input it cannot use."""


class ConfigError(SymcostError):
    """A field's value breaks its rule: not positive, not an integer, inexact, unknown name, wrong type.

    >>> from symcost.core.dtypes import DataType
    >>> try:
    ...     DataType.parse("fp7")
    ... except ConfigError as err:
    ...     print(str(err)[:30])
    dtype: unknown data type 'fp7'
    """


class DivisibilityError(ConfigError):
    """A parallel degree provably does not divide what it splits (heads, widths, tokens, layers)."""


class AssumptionError(DivisibilityError):
    """A value breaks a divisibility rule an expression was derived under (see
    :mod:`symcost.core.assumptions`)."""


class HardwareError(ConfigError):
    """A chip description (a field, a file) or a chip name that cannot be used."""


class UnboundSymbolError(SymcostError):
    """A number or a comparison was asked for, but the expression still has free symbols."""


class SolveError(SymcostError):
    """A solver cannot answer: no closed form in the symbol solved for, and other symbols remain."""

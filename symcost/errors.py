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

Each error carries what it is about, as pint's errors do (``DimensionalityError(units1, units2,
dim1, dim2)``): the ``field`` it names (a field, a config key, an option; ``None`` where no single
one does), the ``rule`` the field breaks, in words, the ``values`` that break it, and the
``context`` it was met in (enclosing names, outermost first); its one line is formatted from them,
so a caller reads fields and never parses a message. An error raised with a sentence alone keeps
the sentence as its line (its fields then empty).

Because the base is a ``ValueError``, ``except ValueError`` keeps working. NB: a rule checked
inside a pydantic validator (a layer's or :class:`~symcost.core.parallelism.Parallelism`'s fields)
reaches the caller as pydantic's ``ValidationError`` (also a ``ValueError``) whose message is
ours; pydantic wraps every ``ValueError`` a validator raises.

>>> from symcost.errors import DivisibilityError, SymcostError
>>> issubclass(DivisibilityError, SymcostError) and issubclass(SymcostError, ValueError)
True
>>> err = DivisibilityError(field="num_heads", divisor="num_kv_heads", values=(32, 5))
>>> str(err)
'num_heads must be divisible by num_kv_heads (got 32 and 5)'
>>> err.field, err.rule, err.values
('num_heads', 'must be divisible by num_kv_heads', (32, 5))
>>> str(err.renamed({"num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads"}).inside("config.json"))
'config.json: num_attention_heads must be divisible by num_key_value_heads (got 32 and 5)'
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional, Sequence, TypeVar

__all__ = [
    "AssumptionError",
    "ConfigError",
    "DivisibilityError",
    "HardwareError",
    "SolveError",
    "SymcostError",
    "UnboundSymbolError",
    "one_line",
    "symcost_error",
]

E = TypeVar("E", bound="SymcostError")


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


def symcost_error(err: BaseException) -> Optional["SymcostError"]:
    """The :class:`SymcostError` ``err`` is, or the one a pydantic ``ValidationError`` wraps (a
    rule a layer checks in its validator: the first error's); ``None`` for any other error."""
    if isinstance(err, SymcostError):
        return err
    errors = getattr(err, "errors", None)
    if callable(errors):
        cause = (errors()[0].get("ctx") or {}).get("error")
        return cause if isinstance(cause, SymcostError) else None
    return None


def _value(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


class SymcostError(ValueError):
    """Base of every error symcost raises for input it cannot use: ``field``, ``rule``, ``values``
    and ``context`` (see the module's docstring); ``str()`` is :meth:`line`."""

    def __init__(self, message: str = "", *, field: Optional[str] = None, rule: str = "",
                 values: Sequence[Any] = (), context: Sequence[str] = ()) -> None:
        self.message, self.field, self.rule = message, field, rule
        self.values, self.context = tuple(values), tuple(context)
        super().__init__(self.line())

    def _got(self) -> str:
        return f" (got {' and '.join(_value(v) for v in self.values)})" if self.values else ""

    def _body(self, field: bool = True) -> str:
        """The line without its context: ``field: rule (got values)`` (``field=False``: without
        the field's name, as an option that set the field words it)."""
        if self.message:
            return self.message
        return (f"{self.field}: {self.rule}" if self.field and field else self.rule) + self._got()

    def line(self, context: bool = True, field: bool = True) -> str:
        """The one line: the context's names (``context=False``: none), then the error (``field=False``:
        without naming its field, where the rule reads alone)."""
        return ": ".join((*(self.context if context else ()), self._body(field)))

    def __str__(self) -> str:
        return self.line()

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.__dict__))

    @property
    def names(self) -> tuple[str, ...]:
        """The fields the error names (``field``, and a divisor's name where there is one)."""
        return (self.field,) if self.field else ()

    def _renamed(self, names: Mapping[str, str]) -> None:
        if self.field is not None:
            self.field = names.get(self.field, self.field)

    def renamed(self: E, names: Mapping[str, str]) -> E:
        """The same error with the fields it names renamed by ``names`` (``{field: new name}``):
        a config's own words for a field."""
        out = copy.copy(self)
        out._renamed(names)
        out.args = (out.line(),)
        return out

    def inside(self: E, name: str) -> E:
        """The same error met inside ``name`` (a pool, a file): its context grows by one name."""
        out = copy.copy(self)
        out.context = (name, *self.context)
        out.args = (out.line(),)
        return out


def _rebuild(cls: type[SymcostError], state: dict[str, Any]) -> SymcostError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    err.args = (err.line(),)
    return err


class ConfigError(SymcostError):
    """A field's value breaks its rule: not positive, not an integer, inexact, unknown name, wrong type.

    >>> from symcost.core.dtypes import DataType
    >>> try:
    ...     DataType.parse("fp7")
    ... except ConfigError as err:
    ...     print(err.field, "|", err.rule[:23])
    dtype | unknown data type 'fp7'
    """


class DivisibilityError(ConfigError):
    """A parallel degree provably does not divide what it splits (heads, widths, tokens, layers):
    ``field`` must be divisible by ``divisor`` (names; ``note`` qualifies the rule), or with
    ``mutual`` the two must divide one another; ``values`` are the two numbers."""

    def __init__(self, message: str = "", *, field: Optional[str] = None, divisor: Optional[str] = None,
                 note: str = "", mutual: bool = False, values: Sequence[Any] = (),
                 context: Sequence[str] = ()) -> None:
        self.divisor, self.note, self.mutual = divisor, note, mutual
        super().__init__(message, field=field, rule=self._rule(), values=values, context=context)

    def _rule(self) -> str:
        if self.divisor is None:
            return ""
        return (f"and {self.divisor} must divide one another" if self.mutual
                else f"must be divisible by {self.divisor}") + self.note

    def _body(self, field: bool = True) -> str:
        if self.message:
            return self.message
        return f"{self.field} {self.rule}{self._got()}"  # NB: the rule does not read without its field

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.field, self.divisor) if n)

    def _renamed(self, names: Mapping[str, str]) -> None:
        super()._renamed(names)
        if self.divisor is not None:
            self.divisor = names.get(self.divisor, self.divisor)
        self.rule = self._rule()

    @staticmethod
    def sentence(field: str, divisor: str, note: str = "", mutual: bool = False) -> str:
        """The rule as a sentence, as the error prints it before its values."""
        return DivisibilityError(field=field, divisor=divisor, note=note, mutual=mutual).line()


class AssumptionError(DivisibilityError):
    """A value breaks a divisibility rule an expression was derived under (see
    :mod:`symcost.core.assumptions`)."""


class HardwareError(ConfigError):
    """A chip description (a field, a file) or a chip name that cannot be used."""


class UnboundSymbolError(SymcostError):
    """A number or a comparison was asked for, but the expression still has free symbols."""


class SolveError(SymcostError):
    """A solver cannot answer: no closed form in the symbol solved for, and other symbols remain."""

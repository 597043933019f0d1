"""Assumptions: the divisibility rules a symbolic expression relies on, carried with it.

A layer built with symbols (``tensor_parallel=S.tp``) cannot decide whether ``t`` divides the
heads; validation is three-valued (raise only when a rule is provably broken), so an undecided
rule is *recorded* instead: every :class:`~symcost.core.metrics.LayerMetrics` carries the
:class:`Assumption` objects its expressions need, and ``subs``, ``evaluate`` and the compiled
sweeps check them, raising :class:`AssumptionError` (a ``ValueError``) with one line naming the
rule as soon as a value breaks one.

An assumption holds when *one* of its ``(multiple, divisor)`` pairs divides: most rules have one
pair; Megatron's KV-head rule has two (``t`` divides ``g``, or ``g`` divides ``t`` and each chip
keeps one whole KV head).

>>> from symcost import symbols as S
>>> rule = Assumption.divisible(((32, S.tp),), "num_heads", "tensor_parallel")
>>> rule
Assumption(num_heads must be divisible by tensor_parallel: t | 32)
>>> rule.xreplace({S.tp: sp.Integer(8)}).verdict
True
>>> rule.xreplace({S.tp: sp.Integer(3)}).check()
Traceback (most recent call last):
...
symcost.errors.AssumptionError: num_heads must be divisible by tensor_parallel (got 32 and 3)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import sympy as sp

from ..errors import AssumptionError, DivisibilityError

__all__ = ["Assumption", "AssumptionError", "collecting", "record", "merge", "check_all"]


def _number(value: Any) -> Any:
    """A value as the number it stands for: a SymPy integer or an integral float (a sweep's) as an
    ``int``."""
    if isinstance(value, sp.Integer) or (isinstance(value, (float, np.floating)) and float(value).is_integer()):
        return int(value)
    return value


@dataclass(frozen=True)
class Assumption:
    """``rule`` holds when some ``(multiple, divisor)`` pair of ``pairs`` divides exactly
    (``multiple / divisor`` is an integer); ``rule`` is the sentence an error prints. A rule made
    by :meth:`divisible` also names its parts (``field``, ``divisor``, ``note``, ``mutual``: those
    of :class:`~symcost.errors.DivisibilityError`), which its error carries."""

    pairs: tuple[tuple[Any, Any], ...]
    rule: str
    field: Optional[str] = None
    divisor: Optional[str] = None
    note: str = ""
    mutual: bool = False

    @classmethod
    def divisible(cls, pairs: tuple[tuple[Any, Any], ...], field: str, divisor: str, note: str = "",
                  mutual: bool = False) -> "Assumption":
        """``field`` must be divisible by ``divisor`` (names; with ``mutual``, the two must divide
        one another), its sentence as its error prints it."""
        return cls(pairs, DivisibilityError.sentence(field, divisor, note, mutual), field, divisor, note, mutual)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pairs", tuple((sp.sympify(m), sp.sympify(d)) for m, d in self.pairs))

    def __repr__(self) -> str:
        alternatives = " or ".join(f"{d} | {m}" for m, d in self.pairs)
        return f"Assumption({self.rule}: {alternatives})"

    @property
    def free_symbols(self) -> set:
        return set().union(*(m.free_symbols | d.free_symbols for m, d in self.pairs))

    @property
    def verdict(self) -> Optional[bool]:
        """``True`` when some pair provably divides, ``False`` when none can, else ``None``."""
        results = [(m / d).is_integer for m, d in self.pairs]
        if any(r is True for r in results):
            return True
        if all(r is False for r in results):
            return False
        return None

    def xreplace(self, mapping: dict) -> "Assumption":
        return dataclasses.replace(self, pairs=tuple((m.xreplace(mapping), d.xreplace(mapping)) for m, d in self.pairs))

    def error(self, values: Optional[tuple[Any, Any]] = None) -> AssumptionError:
        """The error of the broken rule at ``values`` (default: the first pair's), one line."""
        m, d = (_number(v) for v in (values if values is not None else self.pairs[0]))
        if self.field is None or self.divisor is None:  # a rule given as a sentence only
            return AssumptionError(f"{self.rule} (got {m} and {d})")
        return AssumptionError(field=self.field, divisor=self.divisor, note=self.note, mutual=self.mutual,
                               values=(m, d))

    def check(self) -> Optional[bool]:
        """Raise :class:`AssumptionError` when the rule is provably broken; else its verdict."""
        verdict = self.verdict
        if verdict is False:
            raise self.error()
        return verdict

    def holds(self, arrays: list) -> bool:
        """Whether the rule holds at every point, given ``multiple, divisor`` for each pair in
        turn (float64 arrays or numbers): the test of :meth:`check_arrays`, with no error and
        the fewest passes (a sweep checks its inputs block by block with it)."""
        ok = None
        for m, d in zip(arrays[0::2], arrays[1::2]):
            q = np.asarray(m, dtype=np.float64) / np.asarray(d, dtype=np.float64)
            divides = np.equal(q, np.rint(q))
            ok = divides if ok is None else ok | divides
        return bool(np.all(ok))

    def check_arrays(self, arrays: list) -> np.ndarray:
        """Where the rule holds over a sweep, given float64 arrays of ``multiple, divisor`` for
        each pair in turn; raises :class:`AssumptionError` at the first point that breaks it."""
        grid = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in arrays))
        ok = np.zeros(grid[0].shape, dtype=bool)
        for m, d in zip(grid[0::2], grid[1::2]):
            q = m / d
            ok |= q == np.round(q)
        if not ok.all():
            index = np.unravel_index(int(np.argmin(ok)), ok.shape)
            raise self.error((grid[0][index], grid[1][index]))
        return ok


def merge(*groups: Iterable[Assumption]) -> tuple[Assumption, ...]:
    """The assumptions of every group, each once, in order of appearance."""
    out: dict[Assumption, None] = {}
    for group in groups:
        for a in group:
            out.setdefault(a, None)
    return tuple(out)


def check_all(assumptions: Iterable[Assumption]) -> tuple[Assumption, ...]:
    """Check each assumption; raise on the first broken one, drop those now settled true."""
    return tuple(a for a in assumptions if a.check() is None)


_ACTIVE: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar("symcost_assumptions", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list]:
    """Collect the assumptions :func:`record` sees while the block runs (nested blocks too)."""
    found: list[Assumption] = []
    token = _ACTIVE.set(found)
    try:
        yield found
    finally:
        _ACTIVE.reset(token)


def record(assumption: Assumption) -> None:
    """Check ``assumption``; when undecided, hand it to the active :func:`collecting` block."""
    if assumption.check() is None:
        active = _ACTIVE.get()
        if active is not None:
            active.append(assumption)

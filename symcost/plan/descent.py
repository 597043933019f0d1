"""Coordinate descent over exact grids: the search the whole-run calibrations share
(:mod:`symcost.plan.calibration_inference`, :mod:`symcost.plan.calibration_training`)."""

from __future__ import annotations

from fractions import Fraction
from typing import Callable, Mapping, Sequence

__all__ = ["coordinate_descent"]


def coordinate_descent(grids: Mapping[str, Sequence[Fraction]], start: Mapping[str, Fraction],
                       loss: Callable[[list[float]], float]) -> tuple[dict[str, Fraction], list[float]]:
    """From ``start``, try every value of each parameter's grid in turn, keep any that lowers
    ``loss`` (of the parameters as floats, in the order of ``grids``) by more than 1e-12, and
    repeat until no single change does; deterministic. Returns the exact values and their floats.

    >>> coordinate_descent({"a": [Fraction(k) for k in range(5)]}, {"a": Fraction(0)},
    ...                    lambda x: (x[0] - 3) ** 2)
    ({'a': Fraction(3, 1)}, [3.0])
    """
    names = tuple(grids)
    current = {n: Fraction(start[n]) for n in names}
    x = [float(current[n]) for n in names]
    best, changed = loss(x), True
    while changed:
        changed = False
        for j, name in enumerate(names):
            for value in grids[name]:
                trial = x.copy()
                trial[j] = float(value)
                score = loss(trial)
                if score < best - 1e-12:
                    best, x, current[name], changed = score, trial, value, True
    return current, x

"""Sweeps: compile expressions once, evaluate them over NumPy grids in float64.

Compilation uses ``sympy.lambdify(cse=True)`` with arguments ordered by symbol name (the order of
``free_symbols`` changes between processes) and is cached, so a sweep of a million points costs
one compile and a few vectorized passes. Inputs are cast to float64: int64 would wrap silently
above 9.2e18 and real FLOP counts pass that.

>>> import numpy as np
>>> from symcost import symbols as S, sweep
>>> sweep(2 * S.batch_size * S.seq_len, batch_size=np.array([1, 2]), seq_len=[[1024], [2048]])
array([[2048., 4096.],
       [4096., 8192.]])
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import numpy as np
import sympy as sp

from . import sweep_dask
from . import symbols as S
from ._expr import as_expr
from .assumptions import Assumption

__all__ = ["sweep", "Sweeper", "SweepResult", "compile_numpy"]


def _maximum(*args):
    return functools.reduce(np.maximum, args)


def _minimum(*args):
    return functools.reduce(np.minimum, args)


def _heaviside(x, h0=0.5):
    return np.heaviside(x, h0)


_MODULES = [{"Max": _maximum, "Min": _minimum, "Heaviside": _heaviside}, "numpy"]


def _ordered(symbols) -> tuple[sp.Symbol, ...]:
    return tuple(sorted(symbols, key=lambda s: (s.name, str(s.assumptions0))))


@functools.lru_cache(maxsize=256)
def compile_numpy(exprs: tuple[sp.Expr, ...], args: tuple[sp.Symbol, ...]):
    """``lambdify(args, exprs, cse=True)`` for NumPy, cached by (exprs, args)."""
    return sp.lambdify(args, list(exprs), modules=_MODULES, cse=True)


class SweepResult:
    """Named float64 arrays from a :class:`Sweeper`: ``result.latency`` or ``result["latency"]``."""

    def __init__(self, arrays: dict[str, Any], inputs: Mapping[str, Any] | None = None):
        self._arrays = arrays
        self._inputs = dict(inputs or {})

    @property
    def inputs(self) -> dict[str, Any]:
        """The swept inputs by canonical name (``"batch_size"``), as given (before broadcasting)."""
        return dict(self._inputs)

    def to_pandas(self) -> Any:
        """One row per swept point (C order): a column per input, then a column per result.
        Needs the ``pandas`` extra (so this example is not a doctest; tests/test_sweep_dask.py
        checks it); a Dask sweep is computed first (all of it, into memory)::

            >>> Sweeper({"flops": 2 * S.batch_size * S.seq_len})(batch_size=[1, 2], seq_len=8).to_pandas()
               batch_size  seq_len  flops
            0         1.0      8.0   16.0
            1         2.0      8.0   32.0
        """
        return _frame({**self._inputs, **self._arrays})

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the arrays, in the order they were requested."""
        return tuple(self._arrays)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self._arrays[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        shape = next(iter(self._arrays.values())).shape if self._arrays else ()
        return f"SweepResult({', '.join(self._arrays)}; shape {shape})"


class Sweeper:
    """Named expressions compiled once; call it with arrays (broadcast together) for each free
    symbol, by canonical name or by symbol. ``assumptions`` (a metrics object's divisibility
    rules) are checked on every swept point whose symbols are given; a point that breaks one
    raises :class:`~symcost.assumptions.AssumptionError`.

    >>> from symcost import symbols as S
    >>> f = Sweeper({"flops": 2 * S.batch_size * S.seq_len, "tokens": S.batch_size * S.seq_len})
    >>> f.args
    (b, s)
    >>> f(batch_size=[1, 2], seq_len=10).flops
    array([20., 40.])
    """

    def __init__(self, exprs: Mapping[str, Any], assumptions: Sequence[Assumption] = ()):
        if not exprs:
            raise ValueError("Sweeper needs at least one expression")
        self.assumptions = tuple(assumptions)
        self.names = tuple(exprs)
        self.exprs = tuple(as_expr(e, name) for name, e in exprs.items())
        self.args = _ordered(set().union(*(e.free_symbols for e in self.exprs)))
        self._function = compile_numpy(self.exprs, self.args)

    def __reduce__(self) -> tuple[Any, ...]:
        # the expressions travel, the compiled function is rebuilt (a Dask worker in another process)
        return (Sweeper, (dict(zip(self.names, self.exprs)), self.assumptions))

    def __call__(self, mapping: Mapping[Any, Any] | None = None, **arrays: Any) -> SweepResult:
        given: dict[sp.Symbol, Any] = {}
        for key, value in list((mapping or {}).items()) + list(arrays.items()):
            symbol = S.lookup(key) if isinstance(key, str) else key
            given[symbol] = value
        missing = [s for s in self.args if s not in given]
        if missing:
            raise ValueError("sweep: no values for " + ", ".join(S.describe(s) for s in missing))
        if sweep_dask.is_dask(given.values()):  # chunked and lazy: this NumPy path on every block
            return SweepResult(sweep_dask.sweep_blocks(self, given), {_column(s): v for s, v in given.items()})
        # values for symbols the expressions do not use are allowed (a chip's whole table, say);
        # they still shape the result, so a swept axis never silently disappears
        arrays_in = {s: np.asarray(v, dtype=np.float64) for s, v in given.items()}
        self._check(arrays_in)
        inputs = [arrays_in[s] for s in self.args]
        shape = np.broadcast_shapes(*(a.shape for a in arrays_in.values())) if arrays_in else ()
        outputs = self._function(*inputs)
        return SweepResult({
            name: np.broadcast_to(np.asarray(out, dtype=np.float64), shape)
            for name, out in zip(self.names, outputs)}, {_column(s): v for s, v in given.items()})


    def _check(self, arrays: dict[sp.Symbol, np.ndarray]) -> None:
        for rule in self.assumptions:
            symbols = _ordered(rule.free_symbols)
            if not all(s in arrays for s in symbols):
                continue  # the swept fields do not depend on the values this rule needs
            exprs = tuple(e for pair in rule.pairs for e in pair)
            rule.check_arrays(compile_numpy(exprs, symbols)(*(arrays[s] for s in symbols)))


def _frame(columns: dict[str, Any]) -> Any:
    """A pandas DataFrame of broadcast columns, flattened in C order (Dask columns computed)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_pandas needs pandas: pip install 'symcost[pandas]'") from None
    if sweep_dask.is_dask(columns.values()):
        import dask

        columns = dict(zip(columns, dask.compute(*columns.values())))
    values = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    shape = np.broadcast_shapes(*(v.shape for v in values.values()))
    return pd.DataFrame({k: np.broadcast_to(v, shape).ravel() for k, v in values.items()})


def _column(symbol: sp.Symbol) -> str:
    row = S.info(symbol)
    return row.name if row else str(symbol)


def sweep(expr: Any, mapping: Mapping[Any, Any] | None = None, *, as_frame: bool = False, **arrays: Any) -> Any:
    """Evaluate one expression over broadcast arrays of its free symbols, in float64: an array
    (a Dask array when any input is one), or with ``as_frame=True`` a pandas DataFrame with a
    column per input and the column ``value`` (:meth:`SweepResult.to_pandas`)."""
    result = Sweeper({"value": expr})(mapping, **arrays)
    return result.to_pandas() if as_frame else result["value"]


"""Sweeps: compile expressions once, evaluate them over NumPy grids in float64.

Compilation uses ``sympy.lambdify(cse=True)`` with arguments ordered by symbol name (the order of
``free_symbols`` changes between processes) and is cached, so a sweep of a million points costs
one compile and a few vectorized passes. Inputs are cast to float64: int64 would wrap silently
above 9.2e18 and real FLOP counts pass that. A long flat list of configurations is evaluated in
blocks of :attr:`Sweeper.chunk_size` points, so the compiled arithmetic works in the CPU cache;
elementwise arithmetic gives the same bits either way (the tests compare both paths).

>>> import numpy as np
>>> from symcost import symbols as S, sweep
>>> sweep(2 * S.batch_size * S.seq_len, batch_size=np.array([1, 2]), seq_len=[[1024], [2048]])
array([[2048., 4096.],
       [4096., 8192.]])
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable, Iterator, Mapping, Sequence, cast

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

from . import sweep_dask
from . import symbols as sym
from ._expr import Ceil, as_expr
from .assumptions import Assumption
from .cse import node_counts, rewrite, tree_cse, unevaluated

__all__ = ["sweep", "Sweeper", "SweepResult", "compile_numpy"]


def _maximum(*args):
    return functools.reduce(np.maximum, args)


def _minimum(*args):
    return functools.reduce(np.minimum, args)


def _heaviside(x, h0=0.5):
    return np.heaviside(x, h0)


_MAX_DYNAMIC_THRESHOLD = 32 * 2**20 - 2**16
"""Bytes: below glibc's DEFAULT_MMAP_THRESHOLD_MAX (32 MiB on 64-bit), so freeing raises it."""

_MODULES = [{"Max": _maximum, "Min": _minimum, "Heaviside": _heaviside}, "numpy"]


def _ordered(symbols) -> tuple[sp.Symbol, ...]:
    return tuple(sorted(symbols, key=lambda s: (s.name, str(s.assumptions0))))


class _SweepPrinter(NumPyPrinter):
    """NumPy source for float64 sweeps: ``1/x`` for ``x**-1`` (NumPy's ``power`` takes 3x the time
    of a division; both round the exact reciprocal, so the values agree to the last bit where
    ``pow`` is correctly rounded and within 1 ulp where it is not), and ``where`` for a two-way
    ``Piecewise`` that ends in ``True`` (instead of ``select`` over stacked lists)."""

    def _print_Pow(self, expr, rational=False):
        if expr.exp == -1:
            return f"1/{self.parenthesize(expr.base, PRECEDENCE['Pow'])}"
        return super()._print_Pow(expr, rational=rational)

    def _print_CeilDiv(self, expr):
        top, scale = expr.args
        return f"{self._module_format('numpy.ceil')}({self.parenthesize(top, PRECEDENCE['Mul'])}/{scale})"

    def _print_FloorDiv(self, expr):
        top, scale = expr.args
        return f"{self._module_format('numpy.floor')}({self.parenthesize(top, PRECEDENCE['Mul'])}/{scale})"

    def _print_Piecewise(self, expr):
        if len(expr.args) != 2 or expr.args[-1].cond is not sp.true:
            return super()._print_Piecewise(expr)
        (value, cond), (otherwise, _) = expr.args
        return (f"{self._module_format('numpy.where')}({self._print(cond)}, {self._print(value)}, "
                f"{self._print(otherwise)})")


class CeilDiv(sp.Function):
    """``ceil(N / L)`` for an integer ``L``, kept whole (not evaluated, not split by CSE) so the
    compiled sweep divides by ``L`` (see :func:`over_common_denominator`)."""

    nargs = 2


class FloorDiv(sp.Function):
    """``floor(N / L)``, as :class:`CeilDiv`."""

    nargs = 2


def exact_rounding(exprs: Sequence[sp.Expr]) -> list[sp.Expr]:
    """``exprs`` with every ceiling and floor of a rational combination written as
    :class:`CeilDiv`/:class:`FloorDiv` of its integer combination and common denominator."""
    def rule(node: Any, args: list) -> Any:
        if type(node) in (sp.ceiling, sp.floor, Ceil):
            top, scale = over_common_denominator(args[0])
            if scale != 1:
                return (FloorDiv if type(node) is sp.floor else CeilDiv)(top, scale)
        if all(x is y for x, y in zip(args, node.args)):
            return node
        return unevaluated(node, args)

    return rewrite(exprs, rule)


def over_common_denominator(expr: sp.Expr) -> tuple[sp.Expr, int]:
    """``(N, L)`` with ``expr = N / L``: ``L`` the least common multiple of the denominators of
    the terms' rational coefficients, ``N`` their sum with integer coefficients. A ceiling or floor
    prints as ``ceil(N / L)``: a division by an integer rounds correctly, so an integer quotient is
    exact, where ``x * (1/75)`` is not (``ceil(525 * (1/75))`` is 8 in float64; ``525 / 75`` is 7).

    >>> from symcost.core.symbols import batch_size as b, seq_len as s
    >>> over_common_denominator(b / 3 + s / 7 + 1)
    (7*b + 3*s + 21, 21)
    """
    terms = [t.as_coeff_Mul() for t in sp.Add.make_args(expr)]
    if not all(c.is_Rational for c, _ in terms):
        return expr, 1
    scale = math.lcm(*(int(c.q) for c, _ in terms))
    if scale == 1:
        return expr, 1
    return sp.Add(*(c * scale * rest for c, rest in terms)), scale



_BASIC_FREE = sp.Basic.__dict__["free_symbols"]


_PLAIN_FREE: dict[type, bool] = {}


def _plain_free(kind: type) -> bool:
    """Whether ``kind``'s free symbols are those of its arguments (no bound variables)."""
    plain = _PLAIN_FREE.get(kind)
    if plain is None:
        plain = _PLAIN_FREE[kind] = next(
            k.__dict__["free_symbols"] for k in kind.__mro__ if "free_symbols" in k.__dict__) is _BASIC_FREE
    return plain


def _scan(exprs: Sequence[sp.Basic]) -> tuple[set, bool]:
    """The free symbols of ``exprs`` and whether a ``Float`` occurs in them, each shared node
    walked once (``free_symbols`` and ``has`` walk the tree: a step's is several times its DAG)."""
    symbols: set = set()
    seen: set = set()
    floats = False
    stack = list(exprs)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.is_Float:
            floats = True
        elif not _plain_free(type(node)):  # a symbol, or a node that binds variables: walked by SymPy
            symbols |= node.free_symbols
            floats = floats or node.has(sp.Float)
        else:
            stack.extend(node.args)
    return symbols, floats



class _Source:
    """NumPy source for expressions, written straight from their DAG (the fast compile): every
    compound node used more than once becomes one local variable; sums and products in their
    stored order; ``NotImplementedError`` for a node it does not know (then lambdify writes it)."""

    _RELATIONS = {sp.Le: "<=", sp.Lt: "<", sp.Ge: ">=", sp.Gt: ">", sp.Eq: "==", sp.Ne: "!="}
    _CALLS = {sp.ceiling: "ceil", sp.floor: "floor", sp.log: "log", sp.exp: "exp", sp.Abs: "absolute",
              sp.Heaviside: "_heaviside", sp.Mod: "mod", sp.Max: "_maximum", sp.Min: "_minimum",
              sp.And: "_and", sp.Or: "_or", sp.Not: "logical_not", Ceil: "ceil"}

    def __init__(self, args: Sequence[sp.Symbol], counts: dict) -> None:
        self.names = {a: f"_a{i}" for i, a in enumerate(args)}
        self.counts = counts
        self.lines: list[str] = []

    def code(self, node: sp.Basic) -> str:
        done = self.names.get(node)
        if done is not None:
            return done
        text = self._write(node)
        if not node.is_Atom and self.counts.get(node, 0) > 1:
            name = f"_x{len(self.lines)}"
            self.lines.append(f"    {name} = {text}")
            self.names[node] = text = name
        return text

    def _write(self, node: sp.Basic) -> str:
        if node.is_Symbol:
            raise NotImplementedError(f"free symbol {node} not among the arguments")
        if node.is_Number or node is sp.true or node is sp.false or node.is_NumberSymbol:
            return self._number(node)
        kind = type(node)
        if kind is sp.Add:
            return "(" + " + ".join(self.code(a) for a in node.args) + ")"
        if kind is sp.Mul:
            return self._mul(node)
        if kind is sp.Pow:
            return self._pow(node)
        if kind is sp.Piecewise:
            return self._piecewise(node)
        if kind in self._RELATIONS:
            return f"({self.code(node.args[0])} {self._RELATIONS[kind]} {self.code(node.args[1])})"
        if kind in (CeilDiv, FloorDiv):
            top, scale = node.args
            return f"{'ceil' if kind is CeilDiv else 'floor'}({self.code(top)}/{int(scale)})"
        call = self._CALLS.get(kind)
        if call is None:
            raise NotImplementedError(kind.__name__)
        return f"{call}(" + ", ".join(self.code(a) for a in node.args) + ")"

    @staticmethod
    def _number(node: sp.Basic) -> str:
        if node is sp.true or node is sp.false:
            return repr(bool(node))
        if node.is_Integer or node.is_Float or node.is_NumberSymbol:
            value = float(node)
        elif node.is_Rational:
            value = int(node.p) / int(node.q)  # correctly rounded, as lambdify's p/q
        elif node in (sp.oo, -sp.oo):
            value = float("inf") if node is sp.oo else float("-inf")
        else:
            raise NotImplementedError(str(node))
        return f"({value!r})" if math.isfinite(value) else ("inf" if value > 0 else "(-inf)")

    def _mul(self, node: sp.Basic) -> str:
        top, bottom = [], []
        for a in node.args:
            if a.is_Pow and a.exp.is_Integer and a.exp < 0:
                bottom.append(self.code(a.base) if a.exp == -1 else f"{self.code(a.base)}**{int(-a.exp)}")
            else:
                top.append(self.code(a))
        text = "*".join(top) if top else "1.0"
        return f"({text}/({'*'.join(bottom)}))" if bottom else f"({text})"

    def _pow(self, node: sp.Basic) -> str:
        base, power = self.code(node.base), node.exp
        if power.is_Integer:
            return f"({base}**{int(power)})" if power > 0 else f"(1/{base}**{int(-power)})"
        if power == sp.Rational(1, 2):
            return f"sqrt({base})"
        return f"({base}**{self.code(power)})"

    def _piecewise(self, node: sp.Basic) -> str:
        *pieces, (last, cond) = node.args
        if cond is not sp.true:
            raise NotImplementedError("Piecewise without a final True")
        text = self.code(last)
        for value, test in reversed(pieces):
            text = f"where({self.code(test)}, {self.code(value)}, {text})"
        return text


def _compile_dag(exprs: Sequence[sp.Expr], args: Sequence[sp.Symbol]) -> Callable[..., list]:
    """:class:`_Source` compiled: a function of ``args`` returning the list of ``exprs``."""
    counts = node_counts(exprs)
    source = _Source(args, counts)
    outs = [source.code(sp.sympify(e)) for e in exprs]
    text = "\n".join([f"def _f({', '.join(source.names[a] for a in args)}):", *source.lines,
                      f"    return [{', '.join(outs)}]"])
    namespace = {"ceil": np.ceil, "floor": np.floor, "log": np.log, "exp": np.exp, "absolute": np.absolute,
                 "mod": np.mod, "sqrt": np.sqrt, "where": np.where, "logical_not": np.logical_not, "inf": np.inf,
                 "_heaviside": _heaviside, "_maximum": _maximum, "_minimum": _minimum,
                 "_and": lambda *a: functools.reduce(np.logical_and, a),
                 "_or": lambda *a: functools.reduce(np.logical_or, a)}
    exec(compile(text, f"<symcost-sweep-{next(_SOURCES)}>", "exec"), namespace)  # our own generated source
    return cast(Callable[..., list], namespace["_f"])


_SOURCES = itertools.count()


@functools.lru_cache(maxsize=256)
def compile_numpy(exprs: tuple[sp.Expr, ...], args: tuple[sp.Symbol, ...], fast: bool = False):
    """``lambdify(args, exprs, cse=True)`` for NumPy, cached by (exprs, args); ``fast`` takes
    :func:`tree_cse` instead of ``sympy.cse`` and prints sums and products in their stored
    order, unsorted (a build in linear time for large expressions; a little more arithmetic per
    point, and sums added in another order: the same values to a few ulps)."""
    exprs = tuple(exact_rounding(exprs))
    settings = {"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
                "user_functions": {k: k for k in _MODULES[0]}}
    if fast:
        try:
            return _compile_dag(exprs, args)
        except NotImplementedError:
            settings["order"] = "none"
    return sp.lambdify(args, list(exprs), modules=_MODULES, cse=tree_cse if fast else True,
                       printer=_SweepPrinter(settings))


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
        Needs the ``pandas`` extra (so this example is not a doctest; tests/core/test_sweep_dask.py
        checks it); a Dask sweep is computed first (all of it, into memory)::

            Sweeper({"flops": 2 * S.batch_size * S.seq_len})(batch_size=[1, 2], seq_len=8).to_pandas()
            #    batch_size  seq_len  flops
            # 0         1.0      8.0   16.0
            # 1         2.0      8.0   32.0
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
    raises :class:`~symcost.core.assumptions.AssumptionError`. ``fast_compile=True`` finds common
    sub-expressions with :func:`tree_cse` (whole nodes, linear time) instead of ``sympy.cse``:
    for a whole model's step with free degrees (the parallelism search) a build in a fraction of
    the time, for a little more arithmetic per point.

    >>> from symcost import symbols as S
    >>> f = Sweeper({"flops": 2 * S.batch_size * S.seq_len, "tokens": S.batch_size * S.seq_len})
    >>> f.args
    (b, s)
    >>> f(batch_size=[1, 2], seq_len=10).flops
    array([20., 40.])
    """

    chunk_size: int = 1 << 14
    """Points per block of a large sweep: the compiled arithmetic runs block by block, so its
    intermediates stay in the CPU cache (2^14 float64 = 128 KiB each) instead of allocating
    full-size temporaries; 0 evaluates the whole grid at once. Same values either way."""

    def __init__(self, exprs: Mapping[str, Any], assumptions: Sequence[Assumption] = (),
                 chunk_size: int | None = None, fast_compile: bool = False):
        if chunk_size is not None:
            if chunk_size < 0:
                raise ValueError(f"Sweeper: chunk_size must be >= 0, got {chunk_size}")
            self.chunk_size = chunk_size
        if not exprs:
            raise ValueError("Sweeper needs at least one expression")
        self.assumptions = tuple(assumptions)
        self.names = tuple(exprs)
        # NB: as_expr's checks, with the Float search and the free symbols in one walk of the DAG
        self.exprs = tuple(e if isinstance(e, sp.Expr) else as_expr(e, name) for name, e in exprs.items())
        symbols, floats = _scan(self.exprs)
        if floats:
            for name, e in zip(self.names, self.exprs):
                as_expr(e, name)  # raises, naming the field
        self.args = _ordered(symbols)
        self._fast = fast_compile
        self._function = compile_numpy(self.exprs, self.args, fast_compile)

    def __reduce__(self) -> tuple[Any, ...]:
        # the expressions travel, the compiled function is rebuilt (a Dask worker in another process)
        return (Sweeper, (dict(zip(self.names, self.exprs)), self.assumptions, None, self._fast))

    def __call__(self, mapping: Mapping[Any, Any] | None = None, **arrays: Any) -> SweepResult:
        given: dict[sp.Symbol, Any] = {}
        for key, value in list((mapping or {}).items()) + list(arrays.items()):
            symbol = sym.lookup(key) if isinstance(key, str) else key
            given[symbol] = value
        missing = [s for s in self.args if s not in given]
        if missing:
            raise ValueError("sweep: no values for " + ", ".join(sym.describe(s) for s in missing))
        if sweep_dask.is_dask(given.values()):  # chunked and lazy: this NumPy path on every block
            return SweepResult(sweep_dask.sweep_blocks(self, given), {_column(s): v for s, v in given.items()})
        # values for symbols the expressions do not use are allowed (a chip's whole table, say);
        # they still shape the result, so a swept axis never silently disappears
        arrays_in = {s: np.asarray(v, dtype=np.float64) for s, v in given.items()}
        shape = np.broadcast_shapes(*(a.shape for a in arrays_in.values())) if arrays_in else ()
        self._check(arrays_in)
        # NB: a single value goes in as a NumPy scalar, not a 0-d array: its arithmetic is the same
        # float64 arithmetic at a tenth of the call cost, paid once per block
        inputs = [a[()] if a.ndim == 0 else a for a in (arrays_in[s] for s in self.args)]
        chunk = self.chunk_size
        # NB: block by block only when some input is itself longer than a block (a flat list of
        # configurations); an outer product of short axes is cheaper whole, since its shared
        # sub-expressions are computed once per axis and only the last steps are full-size
        columns = {_column(s): v for s, v in given.items()}
        if chunk and max((np.size(a) for a in inputs), default=0) > chunk and math.prod(shape):
            return SweepResult(dict(zip(self.names, _chunked(self._function, inputs, shape, chunk))), columns)
        outputs = self._function(*inputs)
        return SweepResult({
            name: np.broadcast_to(np.asarray(out, dtype=np.float64), shape)
            for name, out in zip(self.names, outputs)}, columns)

    def _check(self, arrays: dict[sp.Symbol, np.ndarray]) -> None:
        seen = set()
        for rule in self.assumptions:
            symbols = _ordered(rule.free_symbols)
            if rule.pairs in seen or not all(s in arrays for s in symbols):
                continue  # checked already, or the swept fields do not need this rule's values
            seen.add(rule.pairs)
            function = compile_numpy(tuple(e for pair in rule.pairs for e in pair), symbols)
            inputs = [arrays[s] for s in symbols]
            shape = np.broadcast_shapes(*(a.shape for a in inputs))
            chunk = self.chunk_size
            if chunk and math.prod(shape) > chunk:
                blocks = (function(*(_take(a, index, len(shape)) for a in inputs))
                          for index in _blocks(shape, chunk))
                if all(rule.holds(values) for values in blocks):
                    continue
            # broken somewhere (or small): the whole check names the first point that breaks it
            rule.check_arrays(function(*inputs))


def _blocks(shape: tuple[int, ...], chunk: int) -> Iterator[tuple[slice, ...]]:
    """Index tuples (one slice per leading axis) that tile a non-empty ``shape`` in C order:
    the trailing axes that fit in ``chunk`` points are taken whole, the next axis is cut into
    steps that fit, and the axes before it go one index at a time (every block keeps all its
    axes, so it broadcasts like the whole)."""
    k, inner = len(shape) - 1, 1
    while k > 0 and inner * shape[k] <= chunk:
        inner *= shape[k]
        k -= 1
    step = max(1, chunk // inner)
    for outer in itertools.product(*(range(n) for n in shape[:k])):
        head = tuple(slice(i, i + 1) for i in outer)
        for j in range(0, shape[k], step):
            yield head + (slice(j, j + step),)


def _take(array: Any, index: tuple[slice, ...], ndim: int) -> Any:
    """The block ``index`` of an input that broadcasts to ``ndim`` dimensions (axes of length
    one, and missing leading axes, are kept whole; a scalar as it is)."""
    if np.ndim(array) == 0:
        return array
    lead = ndim - array.ndim
    return array[tuple(slice(None) if array.shape[i - lead] == 1 else index[i]
                       for i in range(lead, min(len(index), ndim)))]


@functools.lru_cache(maxsize=None)
def _keep_freed_blocks(nbytes: int) -> None:
    """Allocate and free one ``nbytes`` array, once per size.

    NB: glibc's malloc gives the top of its heap back to the OS whenever more than its trim
    threshold (128 KiB at start) lies free there, and raises that threshold to twice the size of
    the largest block it has unmapped (up to 32 MiB). A block's temporaries (a few MiB) are freed
    together at the end of each block, so with the starting threshold every block pays for fresh
    pages again (3x the arithmetic on a 2-core VM). Freeing one array of the size of a block's
    temporaries raises the threshold, as freeing any large NumPy array does; elsewhere it is a
    harmless allocation.
    """
    scratch = np.empty(nbytes // 8)
    del scratch


def _chunked(function, inputs: list[Any], shape: tuple[int, ...], chunk: int) -> list[np.ndarray]:
    """``function(*inputs)`` broadcast to ``shape``, evaluated block by block so that the
    intermediates of the compiled expressions stay in cache (each block <= ``chunk`` points)."""
    _keep_freed_blocks(min(64 * 8 * chunk, _MAX_DYNAMIC_THRESHOLD))
    ndim = len(shape)
    outputs: list[np.ndarray] = []
    for index in _blocks(shape, chunk):
        values = function(*(_take(a, index, ndim) for a in inputs))
        if not outputs:
            outputs = [np.empty(shape, dtype=np.float64) for _ in values]
        for out, value in zip(outputs, values):
            out[index] = value
    return outputs


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
    row = sym.info(symbol)
    return row.name if row else str(symbol)


def sweep(expr: Any, mapping: Mapping[Any, Any] | None = None, *, as_frame: bool = False, **arrays: Any) -> Any:
    """Evaluate one expression over broadcast arrays of its free symbols, in float64: an array
    (a Dask array when any input is one), or with ``as_frame=True`` a pandas DataFrame with a
    column per input and the column ``value`` (:meth:`SweepResult.to_pandas`)."""
    result = Sweeper({"value": expr})(mapping, **arrays)
    return result.to_pandas() if as_frame else result["value"]


"""The canonical symbol table.

Every symbol symcost emits comes from this table, created once with its assumptions, so that
``symcost.symbols.seq_len`` in one formula is the very same object as in another. Never build a
symbol from a string: ``sympy.sympify("S*E")`` turns ``S`` into ``sympy.S`` and ``E`` into Euler's
number.

>>> from symcost import symbols as S
>>> S.seq_len.is_integer, S.seq_len.is_positive
(True, True)
>>> S.dtype_bytes.is_integer is None     # int4 stores 1/2 byte per element
True
>>> S.lookup("hidden_size") is S.hidden_size
True
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

__all__ = [
    "SymbolInfo",
    "TABLE",
    "lookup",
    "latex_names",
    "batch_size",
    "seq_len",
    "hidden_size",
    "intermediate_size",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "vocab_size",
    "num_layers",
    "dtype_bytes",
    "tp",
    "sp",
    "pp",
    "ep",
    "dp",
]


@dataclass(frozen=True)
class SymbolInfo:
    """One row of the table: the attribute name, the SymPy symbol, its LaTeX and its meaning."""

    name: str
    symbol: sympy.Symbol
    latex: str
    meaning: str


_SIZE = {"positive": True, "integer": True}


def _row(name: str, printed: str, latex: str, meaning: str, **assumptions: bool) -> SymbolInfo:
    return SymbolInfo(name, sympy.Symbol(printed, **(assumptions or _SIZE)), latex, meaning)


# NB: printed names follow the Megatron-LM papers (b, s, h, a, t) and ../shared/CONVENTIONS.md
# (f, g, d, e); the parallel degrees other than t print with a two-letter name so that no letter
# means two things (d is the head dimension, e the bytes per element).
_ROWS = (
    _row("batch_size", "b", "b", "sequences per micro-batch"),
    _row("seq_len", "s", "s", "tokens per sequence (keys attended in decode)"),
    _row("hidden_size", "h", "h", "model (hidden) width"),
    _row("intermediate_size", "f", "f", "feed-forward width"),
    _row("num_heads", "a", "a", "query (attention) heads"),
    _row("num_kv_heads", "g", "g", "key/value heads"),
    _row("head_dim", "d", "d", "width of one attention head"),
    _row("vocab_size", "V", "V", "vocabulary size"),
    _row("num_layers", "L", "L", "transformer layers"),
    _row("dtype_bytes", "e", "e", "bytes per element", positive=True, rational=True),
    _row("tp", "t", "t", "tensor-parallel degree"),
    _row("sp", "sp", r"n_{\mathrm{sp}}", "sequence-parallel (Ulysses) degree"),
    _row("pp", "pp", "p", "pipeline-parallel degree"),
    _row("ep", "ep", r"n_{\mathrm{ep}}", "expert-parallel degree"),
    _row("dp", "dp", r"n_{\mathrm{dp}}", "data-parallel degree"),
)

TABLE: dict[str, SymbolInfo] = {row.name: row for row in _ROWS}
"""Every canonical symbol by its attribute name."""

_BY_SYMBOL = {row.symbol: row for row in _ROWS}

batch_size = TABLE["batch_size"].symbol
seq_len = TABLE["seq_len"].symbol
hidden_size = TABLE["hidden_size"].symbol
intermediate_size = TABLE["intermediate_size"].symbol
num_heads = TABLE["num_heads"].symbol
num_kv_heads = TABLE["num_kv_heads"].symbol
head_dim = TABLE["head_dim"].symbol
vocab_size = TABLE["vocab_size"].symbol
num_layers = TABLE["num_layers"].symbol
dtype_bytes = TABLE["dtype_bytes"].symbol
tp = TABLE["tp"].symbol
sp = TABLE["sp"].symbol
pp = TABLE["pp"].symbol
ep = TABLE["ep"].symbol
dp = TABLE["dp"].symbol


def lookup(name: str) -> sympy.Symbol:
    """The canonical symbol called ``name`` (its attribute name, e.g. ``"seq_len"``).

    Raises ``KeyError`` listing the known names otherwise; nothing is parsed.

    >>> lookup("tp")
    t
    """
    try:
        return TABLE[name].symbol
    except KeyError:
        raise KeyError(f"unknown symbol {name!r}; known: {', '.join(TABLE)}") from None


def latex_names() -> dict[sympy.Symbol, str]:
    """``symbol_names`` for :func:`sympy.latex`: each canonical symbol's LaTeX."""
    return {row.symbol: row.latex for row in _ROWS}


def info(symbol: sympy.Symbol) -> SymbolInfo | None:
    """The table row of a canonical symbol, or ``None`` for any other symbol."""
    return _BY_SYMBOL.get(symbol)

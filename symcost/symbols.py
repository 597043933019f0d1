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
    "peak_flops",
    "vector_flops",
    "hbm_capacity",
    "hbm_bandwidth",
    "scale_up_bandwidth",
    "scale_up_domain",
    "scale_out_bandwidth",
    "collective_latency",
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
    _row("window", "w", "w", "sliding-window length (keys one query may attend)"),
    _row("dtype_bytes", "e", "e", "bytes per element", positive=True, rational=True),
    _row("tp", "t", "t", "tensor-parallel degree"),
    _row("sp", "sp", r"n_{\mathrm{sp}}", "sequence-parallel (Ulysses) degree"),
    _row("pp", "pp", "p", "pipeline-parallel degree"),
    _row("ep", "ep", r"n_{\mathrm{ep}}", "expert-parallel degree"),
    _row("dp", "dp", r"n_{\mathrm{dp}}", "data-parallel degree"),
    # hardware: what an unbound (symbolic) chip is made of; rates in base units
    _row("peak_flops", "F", r"F_{\mathrm{peak}}", "peak matrix FLOP/s for the dtype in use",
         positive=True),
    _row("vector_flops", "F_vec", r"F_{\mathrm{vec}}", "vector-unit FLOP/s", positive=True),
    _row("hbm_capacity", "M_HBM", r"M_{\mathrm{HBM}}", "HBM capacity (bytes)", positive=True),
    _row("hbm_bandwidth", "B_HBM", r"B_{\mathrm{HBM}}", "HBM bandwidth (bytes/s)", positive=True),
    _row("scale_up_bandwidth", "B_up", r"B_{\mathrm{up}}",
         "scale-up link bandwidth per chip and direction (bytes/s)", positive=True),
    _row("scale_up_domain", "D_up", r"D_{\mathrm{up}}", "chips in one scale-up domain"),
    _row("scale_out_bandwidth", "B_out", r"B_{\mathrm{out}}",
         "scale-out bandwidth per chip (bytes/s)", positive=True),
    _row("collective_latency", "alpha", r"\alpha", "latency of one collective step (s)",
         positive=True),
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
window = TABLE["window"].symbol
dtype_bytes = TABLE["dtype_bytes"].symbol
tp = TABLE["tp"].symbol
sp = TABLE["sp"].symbol
pp = TABLE["pp"].symbol
ep = TABLE["ep"].symbol
dp = TABLE["dp"].symbol
peak_flops = TABLE["peak_flops"].symbol
vector_flops = TABLE["vector_flops"].symbol
hbm_capacity = TABLE["hbm_capacity"].symbol
hbm_bandwidth = TABLE["hbm_bandwidth"].symbol
scale_up_bandwidth = TABLE["scale_up_bandwidth"].symbol
scale_up_domain = TABLE["scale_up_domain"].symbol
scale_out_bandwidth = TABLE["scale_out_bandwidth"].symbol
collective_latency = TABLE["collective_latency"].symbol


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


def describe(symbol: sympy.Symbol) -> str:
    """``"name (printed)"`` for a canonical symbol, for error messages; else the symbol itself.

    >>> describe(seq_len)
    'seq_len (s)'
    """
    row = _BY_SYMBOL.get(symbol)
    return f"{row.name} ({symbol})" if row else str(symbol)

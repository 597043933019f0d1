r"""LaTeX export for papers: formulas, ``align*`` blocks, booktabs tables, glossaries, macros.

Two notations name the canonical symbols (:data:`NOTATIONS`): ``"megatron"``, the letters of the
Megatron-LM papers that :mod:`symcost.core.symbols` carries (b, s, h, f, a, g, d, e, t, p, L, V), and
``"scaling-book"``, the letters of *How to Scale Your Model* (B batch, T sequence, D model width,
F feed-forward width, N query heads, K KV heads, H head dimension, L layers, V vocabulary).

Presentation (:func:`present`): ``factor_terms(expand(expr))`` — every product multiplied out,
then the largest common monomial and numeric factor pulled in front, e.g.
``12 b f h s/t + 24 b f s/t`` prints as ``12 b f s (h + 2)/t``. It is an identity transform
(the value never changes), deterministic, and never calls ``simplify``.

>>> from symcost import MLPLayer, symbols as S
>>> from symcost import latex
>>> m = MLPLayer(parallelism={"tensor_parallel": S.tp}).compute_metrics(phase="prefill")
>>> latex.expression(m.matmul_flops_per_chip)
'\\frac{4 b f h s}{t}'
>>> latex.expression(m.matmul_flops_per_chip, notation="scaling-book")   # b f h s -> B F D T
'\\frac{4 B F D T}{t}'
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Union

import sympy as sp

from ..core import symbols as sym
from ..core._expr import Value
from ..core.metrics import METRIC_FIELDS, LayerMetrics
from ..core.notation import NOTATIONS as NOTATIONS
from ..core.notation import expression as expression
from ..core.notation import label as _label
from ..core.notation import names as _names
from ..core.notation import present as present
from ..core.notation import text as _text
from ..core.parallelism import Parallelism, ParallelismLike
from ..core.phase import Phase
from ..errors import ConfigError
from ..layers import catalogue

if TYPE_CHECKING:  # model.py imports this module lazily; no cycle at run time
    from ..layers.base import Layer
    from ..models.model import Model

__all__ = [
    "NOTATIONS",
    "TABLE_FIELDS",
    "present",
    "expression",
    "align",
    "table",
    "layer_table",
    "glossary",
    "macros",
    "macro_name",
    "document",
    "model_document",
]

TABLE_FIELDS = ("flops_per_chip", "weight_memory_per_chip", "activation_memory_per_chip",
                "kv_cache_memory_per_chip", "comm_bytes_per_chip")
"""The default columns of :func:`table` and :func:`layer_table`."""

_FORMULA_FIELDS = METRIC_FIELDS[:7]
"""The fields that need no hardware (no times): what :func:`model_document` prints."""

_LINE_WIDTH = 110
"""NB: an ``align*`` line holds at most this many characters of LaTeX *source* before a sum is
continued on the next line; source length is a rough proxy for printed width (``\\frac`` and
``\\left(`` print narrower than they read)."""

Metrics = Union[LayerMetrics, Mapping[str, Any]]


def _check_fields(fields: Sequence[str], caller: str) -> list[str]:
    if isinstance(fields, str):
        fields = [fields]
    unknown = [f for f in fields if f not in METRIC_FIELDS]
    if unknown:
        raise ConfigError(f"{caller}: unknown fields {unknown}; valid: {', '.join(METRIC_FIELDS)}")
    return list(fields)


def _values(metrics: Metrics, fields: Sequence[str] | None, caller: str) -> dict[str, Any]:
    """``{field: value}`` for the chosen fields of a LayerMetrics or a mapping of field values."""
    if isinstance(metrics, LayerMetrics):
        chosen = _check_fields(METRIC_FIELDS if fields is None else fields, caller)
        return {f: getattr(metrics, f) for f in chosen}
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"{caller}: expected LayerMetrics or a mapping of field to expression, "
                         f"got {type(metrics).__name__}")
    _check_fields(list(metrics), caller)
    chosen = _check_fields(list(metrics) if fields is None else fields, caller)
    missing = [f for f in chosen if f not in metrics]
    if missing:
        raise ConfigError(f"{caller}: fields {missing} are not in the mapping (it has {list(metrics)})")
    return {f: metrics[f] for f in chosen}


# -- formulas -------------------------------------------------------------------------------------


def _pieces(expr: Value, names: Mapping[sp.Symbol, str], width: int) -> list[str]:
    r"""The LaTeX of a presented expression as lines of at most ``width`` source characters.

    A long sum is broken between terms (each continuation line starts with its sign); a long
    product ``c (t_1 + t_2 + ...)`` prints as ``c \left( t_1 + ... \right.`` with the sum broken
    the same way and closed by ``\left. ... \right)``. Anything else stays on one line.
    """
    symbol_names = dict(names)
    pres = present(expr)
    whole = sp.latex(pres, symbol_names=symbol_names)
    if len(whole) <= width:
        return [whole]
    if isinstance(pres, sp.Add):
        return _broken_sum(pres, symbol_names, width, "")
    if isinstance(pres, sp.Mul):
        sums = [f for f in pres.args if isinstance(f, sp.Add)]
        if len(sums) == 1:
            (inner,) = sums
            outside = sp.latex(sp.Mul(*(f for f in pres.args if f is not inner)), symbol_names=symbol_names)
            prefix = "-" if outside == "-1" else ("" if outside == "1" else outside + " ")
            lines = _broken_sum(inner, symbol_names, width, prefix + "\\left(")
            if len(lines) == 1:
                return [whole]
            return ([lines[0] + " \\right."] + [f"\\left. {line} \\right." for line in lines[1:-1]]
                    + [f"\\left. {lines[-1]} \\right)"])
    return [whole]


def _broken_sum(total: sp.Add, names: dict, width: int, opening: str) -> list[str]:
    """The terms of ``total`` packed into lines of about ``width`` characters, the first line
    starting with ``opening``."""
    lines: list[str] = []
    current = opening
    # the printer's own term order, so a broken sum reads as the unbroken one
    for i, term in enumerate(total.as_ordered_terms()):
        tex = sp.latex(term, symbol_names=names)
        if i == 0:
            current = f"{current} {tex}" if current else tex
            continue
        piece = f"- {tex[1:].lstrip()}" if tex.startswith("-") else f"+ {tex}"
        if len(current) + 1 + len(piece) > width:
            lines.append(current)
            current = piece
        else:
            current = f"{current} {piece}"
    lines.append(current)
    return lines


def align(metrics: Metrics, fields: Sequence[str] | None = None, notation: str = "megatron") -> str:
    r"""An ``align*`` environment, one line per field: ``label &= formula``.

    ``metrics`` is a :class:`~symcost.core.metrics.LayerMetrics` (``fields`` defaults to every field of
    :data:`~symcost.core.metrics.METRIC_FIELDS`) or a mapping from field names to values (default: all
    of its keys). A sum longer than a line continues on the next lines (``&\quad + ...``).

    >>> from symcost import NormLayer
    >>> m = NormLayer(kind="rmsnorm").compute_metrics(phase="prefill", dtype="bf16")
    >>> print(align(m, ["weight_memory_per_chip", "flops_per_chip"], notation="scaling-book"))
    \begin{align*}
    M_{\mathrm{weights}} &= 2 D \\
    \mathrm{FLOPs} &= 4 B D T
    \end{align*}
    """
    names = _names(notation)
    values = _values(metrics, fields, "align")
    return _align_env([(_label(f, notation), v) for f, v in values.items()], names)


def _align_env(rows: Sequence[tuple[str, Any]], names: Mapping[sp.Symbol, str]) -> str:
    lines = []
    for label, value in rows:
        first, *rest = _pieces(value, names, _LINE_WIDTH)
        lines.append(f"{label} &= {first}")
        lines.extend(f"&\\quad {piece}" for piece in rest)
    return "\\begin{align*}\n" + " \\\\\n".join(lines) + "\n\\end{align*}"


# -- tables ---------------------------------------------------------------------------------------


def table(rows: Mapping[str, Metrics], fields: Sequence[str] = TABLE_FIELDS, notation: str = "megatron",
          width: str | None = None) -> str:
    r"""A booktabs ``tabular``: one row per entry of ``rows`` (its key is the row's text label),
    one column per field, each cell an inline formula.

    ``width`` (e.g. ``r"\linewidth"``) scales the table to that width with ``\resizebox``
    (package ``graphicx``); by default the table keeps its natural width.

    >>> from symcost import NormLayer
    >>> rms = NormLayer(kind="rmsnorm").compute_metrics(phase="decode", dtype="bf16")
    >>> print(table({"RMSNorm": rms}, ["weight_memory_per_chip", "flops_per_chip"]))
    \begin{tabular}{lll}
    \toprule
    Layer & $M_{\mathrm{weights}}$ & $\mathrm{FLOPs}$ \\
    \midrule
    RMSNorm & $2 h$ & $4 b h$ \\
    \bottomrule
    \end{tabular}
    """
    return _table([(_text(str(label)), metrics) for label, metrics in rows.items()], fields, notation, width)


def _table(rows: Sequence[tuple[str, Metrics]], fields: Sequence[str], notation: str, width: str | None) -> str:
    """:func:`table` of rows whose labels are LaTeX already."""
    names = _names(notation)
    chosen = _check_fields(fields, "table")
    header = " & ".join(["Layer"] + [f"${_label(f, notation)}$" for f in chosen])
    body = []
    for label, metrics in rows:
        values = _values(metrics, chosen, "table")
        cells = [f"${sp.latex(present(v), symbol_names=dict(names))}$" for v in values.values()]
        body.append(" & ".join([label] + cells) + " \\\\")
    lines = [f"\\begin{{tabular}}{{{'l' * (len(chosen) + 1)}}}", "\\toprule", header + " \\\\", "\\midrule",
             *body, "\\bottomrule", "\\end{tabular}"]
    text = "\n".join(lines)
    if width is not None:
        text = f"\\resizebox{{{width}}}{{!}}{{%\n{text}%\n}}"
    return text


def _symbolic_layers(parallelism: ParallelismLike) -> dict[str, "Layer"]:
    par = Parallelism.coerce(parallelism)
    return {
        "MLP": catalogue.build("mlp", parallelism=par),
        "Gated MLP": catalogue.build("gated-mlp", parallelism=par),
        "Attention (MHA)": catalogue.build("attention", parallelism=par),
        "Attention (GQA)": catalogue.build("gqa", parallelism=par),
        "LayerNorm": catalogue.build("norm", parallelism=par),
    }


def layer_table(phase: Phase | str = "training", notation: str = "megatron", parallelism: ParallelismLike = None,
                fields: Sequence[str] = TABLE_FIELDS, width: str | None = None) -> str:
    r""":func:`table` of the seed layer types with symbolic shapes (batch, sequence, sizes and
    bytes per element all symbols): MLP, gated MLP, MHA, GQA and LayerNorm, for ``phase``.

    ``parallelism`` is applied to every layer (``None``: one chip, no degree appears).

    >>> from symcost import symbols as S
    >>> tex = layer_table("decode", parallelism={"tensor_parallel": S.tp})
    >>> tex.count("\\\\") - 1                       # the header and one line per layer type
    5
    >>> r"$\frac{2 b e g h s}{a \min\left(g, t\right)}$" in tex   # GQA KV cache, d = h/a:
    ... #   2 b s (g/min(g, t)) d e, one whole KV head per chip once t > g
    True
    """
    rows = {label: layer.compute_metrics(phase=phase) for label, layer in _symbolic_layers(parallelism).items()}
    return table(rows, fields, notation, width)


# -- symbols --------------------------------------------------------------------------------------


def macro_name(name: str) -> str:
    r"""The LaTeX command :func:`macros` defines for the canonical symbol ``name``: ``\sc`` and the
    name in CamelCase (letters only).

    >>> macro_name("batch_size"), macro_name("tp")
    ('\\scBatchSize', '\\scTp')
    """
    if name not in sym.TABLE:
        raise ConfigError(f"unknown symbol {name!r}; known: {', '.join(sym.TABLE)}")
    return "\\sc" + "".join(part.capitalize() for part in re.split(r"[^A-Za-z]+", name) if part)


def macros(notation: str = "megatron") -> str:
    r"""One ``\newcommand`` per canonical symbol, in the table's order, so a paper can write
    ``$\scSeqLen$`` and switch notation in its preamble. Each body is ``\ensuremath``-wrapped and
    so works in text and in math.

    >>> print(macros("scaling-book").splitlines()[1])
    \newcommand{\scSeqLen}{\ensuremath{T}}
    """
    names = _names(notation)
    return "\n".join(f"\\newcommand{{{macro_name(row.name)}}}{{\\ensuremath{{{names[row.symbol]}}}}}"
                     for row in sym.TABLE.values())


def _rows_for(symbols: Iterable[sp.Symbol | str] | None) -> list[sym.SymbolInfo]:
    if symbols is None:
        return list(sym.TABLE.values())
    wanted = set()
    unknown = []
    for item in symbols:
        row = sym.TABLE.get(item) if isinstance(item, str) else sym.info(item)
        if row is None:
            unknown.append(str(item))
        else:
            wanted.add(row.name)
    if unknown:
        raise ConfigError(f"glossary: not canonical symbols: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sym.TABLE)}")
    return [row for row in sym.TABLE.values() if row.name in wanted]


def glossary(symbols: Iterable[sp.Symbol | str] | None = None, notation: str = "megatron") -> str:
    r"""A booktabs ``tabular`` of symbols and their meanings (from :data:`symcost.core.symbols.TABLE`),
    in the table's order. ``symbols`` are canonical symbols or their names (default: all).

    >>> from symcost import symbols as S
    >>> print(glossary([S.seq_len, "batch_size"], notation="scaling-book"))
    \begin{tabular}{ll}
    \toprule
    Symbol & Meaning \\
    \midrule
    $B$ & sequences per micro-batch \\
    $T$ & tokens per sequence (keys attended in decode) \\
    \bottomrule
    \end{tabular}
    """
    names = _names(notation)
    lines = ["\\begin{tabular}{ll}", "\\toprule", "Symbol & Meaning \\\\", "\\midrule"]
    lines += [f"${names[row.symbol]}$ & {_text(row.meaning)} \\\\" for row in _rows_for(symbols)]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines)


def _used_symbols(values: Iterable[Any]) -> set[sp.Symbol]:
    used: set[sp.Symbol] = set()
    for v in values:
        if isinstance(v, sp.Basic):
            used |= {s for s in v.free_symbols if sym.info(s) is not None}
    return used


# -- documents ------------------------------------------------------------------------------------

_PREAMBLE = r"""\documentclass{article}
\usepackage{amsmath}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage[margin=2cm]{geometry}
\allowdisplaybreaks"""


def document(body: str, title: str | None = None, notation: str = "megatron") -> str:
    r"""A complete, compilable ``article``: amsmath, booktabs, graphicx and geometry, the
    notation's :func:`macros`, an optional title (escaped as text), then ``body``.

    >>> tex = document("$x$", title="MLP costs")
    >>> tex.startswith("\\documentclass{article}"), tex.rstrip().endswith("\\end{document}")
    (True, True)
    >>> "\\newcommand{\\scBatchSize}{\\ensuremath{b}}" in tex
    True
    """
    parts = [_PREAMBLE, f"% symcost symbol macros, notation {notation}", macros(notation)]
    if title is not None:
        parts.append(f"\\title{{{_text(title)}}}\n\\author{{}}\n\\date{{}}")
    parts.append("\\begin{document}")
    if title is not None:
        parts.append("\\maketitle")
    parts += [body, "\\end{document}", ""]
    return "\n".join(parts)


def _section(title: str) -> str:
    return f"\\section*{{{_text(title)}}}"


def _centered(text: str) -> str:
    return f"\\begin{{center}}\n{text}\n\\end{{center}}"


def model_document(target: "Model | Layer | None" = None, phase: Phase | str = "training",
                   notation: str = "megatron", standalone: bool = True,
                   fields: Sequence[str] | None = None) -> str:
    r"""The formulas of a model, a layer, or (``target=None``) the seed layer types, as LaTeX: a
    complete document when ``standalone`` (what ``symcost latex --standalone`` prints), else the
    body alone. Batch, sequence length and bytes per element stay symbols.

    - a :class:`~symcost.models.model.Model`: its parameter count, a table of its distinct layers
      (each with its count) and an ``align*`` of the whole model's per-chip metrics;
    - a :class:`~symcost.layers.base.Layer`: an ``align*`` of its metrics;
    - ``None``: :func:`layer_table` of MLP, gated MLP, MHA, GQA and LayerNorm.

    ``fields`` (default: every field that needs no hardware) choose the ``align*`` lines; the
    tables show :data:`TABLE_FIELDS`. A glossary of the symbols used closes the document.

    >>> from symcost import GatedMLPLayer, symbols
    >>> tex = model_document(GatedMLPLayer(), phase="decode", notation="scaling-book")
    >>> r"\mathrm{FLOPs}_{\mathrm{matmul}} &= 6 B F D" in tex, tex.count("\\newcommand") == len(symbols.TABLE)
    (True, True)
    """
    from ..layers.base import Layer
    from ..models.model import Model

    names = _names(notation)
    phase = Phase.parse(phase)
    formula_fields = _check_fields(_FORMULA_FIELDS if fields is None else fields, "model_document")
    blocks: list[str] = []
    used: set[sp.Symbol] = set()
    if isinstance(target, Model):
        title = f"{target.name}: per-chip costs, {phase.value}"
        blocks += _model_blocks(target, phase, notation, names, formula_fields, used)
    elif isinstance(target, Layer):
        title = f"{type(target).__name__}: per-chip costs, {phase.value}"
        values = _values(target.compute_metrics(phase=phase), formula_fields, "model_document")
        used |= _used_symbols(values.values())
        blocks.append(align(values, notation=notation))
    elif target is None:
        title = f"Per-chip costs of the layer types, {phase.value}"
        layers = {label: layer.compute_metrics(phase=phase) for label, layer in _symbolic_layers(None).items()}
        for metrics in layers.values():
            used |= _used_symbols(getattr(metrics, f) for f in TABLE_FIELDS)
        blocks.append(_centered(table(layers, TABLE_FIELDS, notation, r"\linewidth")))
    else:
        raise ConfigError(f"model_document: expected a Model, a Layer or None, got {type(target).__name__}")
    if used:
        blocks += [_section("Symbols"), _centered(glossary(used, notation))]
    body = "\n\n".join(blocks)
    return document(body, title=title, notation=notation) if standalone else body


def _model_blocks(model: "Model", phase: Phase, notation: str, names: Any, formula_fields: Sequence[str],
                  used: set[sp.Symbol]) -> list[str]:
    """A model's parameter count, its table of distinct layers and its whole-model ``align*``
    (the symbols they use are added to ``used``)."""
    params = model.parameter_count
    used |= _used_symbols([sp.sympify(params)])
    blocks = [_section("Parameters"), _align_env([(r"N_{\mathrm{params}}", params)], names)]
    rows: list[tuple[str, LayerMetrics]] = []
    for name, count, metrics in model.breakdown(phase=phase):
        label = _text(name.replace("_", " "))
        if count != 1:
            label = f"{label} ($\\times {expression(count, notation)}$)"
        rows.append((label, metrics))
        used |= _used_symbols(getattr(metrics, f) for f in TABLE_FIELDS)
        used |= _used_symbols([sp.sympify(count)])
    blocks += [_section("Layers (one of each)"), _centered(_table(rows, TABLE_FIELDS, notation, r"\linewidth"))]
    values = _values(model.compute_metrics(phase=phase), formula_fields, "model_document")
    used |= _used_symbols(values.values())
    return blocks + [_section("Whole model"), align(values, notation=notation)]

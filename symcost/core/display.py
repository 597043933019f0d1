r"""What people read: quantities with units (text, LaTeX, HTML), readable formulas and HTML tables.

Every result object's ``__str__``, ``__repr__``, ``_repr_latex_`` and ``_repr_html_`` is built from
these helpers; the objects keep their exact values in their fields. A quantity has a *kind* (one of
:data:`KINDS`) naming its unit; a numeric value is shown with :mod:`symcost.core.units` (the exact
value stays in the HTML cell's ``title``), a symbolic one as its formula.

This module sits in ``core`` so that every stage may use it (``plan`` must not import ``report``);
it imports SymPy only inside the functions that print formulas.

>>> from fractions import Fraction
>>> text(Fraction(22948, 654296875), "time"), latex(80 * 10**9, "bytes")
('35.07 µs', '80\\,\\mathrm{GB}')
>>> table = html_table(["x", "T"], [["a", html(Fraction(1, 8), "time")]], highlight=0)
>>> '<tr class="chosen"' in table, '<span title="1/8 s">125 ms</span>' in table
(True, True)
"""

from __future__ import annotations

import html as _html
import numbers
from typing import Any, Callable, Optional, Sequence

from . import units

__all__ = ["KINDS", "is_numeric", "text", "latex", "html", "formula", "readable", "html_table", "html_section",
           "short_repr", "FIELD_KINDS"]

KINDS: dict[str, Callable[[Any], str]] = {
    "time": units.format_time,
    "bytes": units.format_bytes,
    "flops": units.format_flops,
    "flop_rate": lambda x: units.format_rate(x, "FLOP"),
    "byte_rate": lambda x: units.format_rate(x, "B"),
    "token_rate": lambda x: units.format_rate(x, "token"),
    "count": units.format_count,
    "percent": units.format_percent,
    "plain": lambda x: _plain(x),
}
"""The kinds of quantity and how a number of each kind is written."""


def _plain(x: Any) -> str:
    """A unitless number: 4 significant digits, thousands separators, ``1.234e-05`` below 0.001."""
    number = units.to_number(x)
    if number and abs(float(number)) < 1e-3:  # display only
        return f"{float(number):.4g}"
    return units.format_scaled(number, [(1, "")])


_UNIT_OF = {"time": "s", "bytes": "B", "flops": "FLOP", "flop_rate": "FLOP/s", "byte_rate": "B/s",
            "token_rate": "token/s", "count": "", "percent": "", "plain": ""}

FIELD_KINDS = {
    "flops_per_chip": "flops", "matmul_flops_per_chip": "flops", "hbm_bytes_per_chip": "bytes",
    "weight_memory_per_chip": "bytes", "activation_memory_per_chip": "bytes",
    "kv_cache_memory_per_chip": "bytes", "comm_bytes_per_chip": "bytes", "compute_time": "time",
    "memory_time": "time", "comm_time": "time", "latency": "time",
}
"""The kind of each :data:`~symcost.core.metrics.METRIC_FIELDS` field."""


def is_numeric(value: Any) -> bool:
    """Whether ``value`` is a number (Python or SymPy), not a formula.

    >>> import sympy as sp
    >>> is_numeric(3), is_numeric(sp.Rational(1, 2)), is_numeric(sp.Symbol("b")), is_numeric(None)
    (True, True, False, False)
    """
    if value is None or isinstance(value, (bool, str)):
        return False
    if isinstance(value, numbers.Number):
        return True
    return bool(getattr(value, "is_number", False))


def text(value: Any, kind: str) -> str:
    """``value`` for plain text: a number with its unit, a formula as SymPy prints it, ``-`` for ``None``."""
    if value is None:
        return "-"
    if is_numeric(value):
        return KINDS[kind](value)
    unit = _UNIT_OF[kind]
    shown = readable(value, kind)
    return f"{shown} {unit}".rstrip() if unit else str(shown)


def _latex_unit(unit_text: str) -> str:
    number, _, unit = unit_text.partition(" ")
    number = number.replace(",", "{,}")
    if not unit:
        return number
    if unit == "%":
        return number + r"\,\%"
    if unit.startswith("µ"):
        return rf"{number}\,\mu\mathrm{{{unit[1:]}}}"
    return rf"{number}\,\mathrm{{{unit}}}"


def latex(value: Any, kind: str, notation: str = "megatron") -> str:
    """``value`` as LaTeX math: a number with its unit (``35.07\\,\\mu\\mathrm{s}``), else its formula."""
    if value is None:
        return r"\text{--}"
    if is_numeric(value):
        return _latex_unit(KINDS[kind](value))
    return formula(value, kind, notation)


def html(value: Any, kind: str) -> str:
    """``value`` for an HTML cell: a number with its unit, the exact value in the ``title``
    (shown on hover), or a formula in ``<code>``."""
    if value is None:
        return "-"
    if is_numeric(value):
        unit = _UNIT_OF[kind]
        exact = f"{value} {unit}".rstrip() if kind != "percent" else str(value)
        return f'<span title="{_html.escape(exact)}">{_html.escape(KINDS[kind](value))}</span>'
    return f"<code>{_html.escape(text(value, kind))}</code>"


COLLECT_BY = {"flops": ("seq_len",), "bytes": ("seq_len", "hidden_size"), "time": ()}
"""The canonical form of a formula, chosen per kind: after :func:`symcost.core.notation.present`
(expand, then the common factor out), the sum left is collected in these symbols, in order: FLOPs
and traffic by the sequence length (the ``s`` and ``s²`` terms apart), memory by the sequence
length then the hidden size."""

_LEAVE = 200
"""A formula with more terms than this once expanded is shown as stored (expansion would not help)."""


def readable(value: Any, kind: str = "plain") -> Any:
    """The display form of a formula: expanded, the common factor out, the rest collected in the
    symbols of :data:`COLLECT_BY` for ``kind``; the same value (``expand(readable(x) - x) == 0``).
    A ``Max`` or ``Min`` at the top (a peak) has each branch made readable; formulas with one
    inside (times: a sum of per-op rooflines) are shown as stored.

    >>> from symcost import symbols as S
    >>> L, e, h = S.num_layers, S.dtype_bytes, S.hidden_size
    >>> readable(L * (4*e*h + e*(4*h**2 + 4*h) + e*(8*h**2 + 5*h)), "bytes")
    L*e*h*(12*h + 13)
    """
    import sympy as sp

    from . import symbols as sym

    if not isinstance(value, sp.Expr) or value.is_number:
        return value
    if isinstance(value, (sp.Max, sp.Min)):  # a peak or a cap: each branch readable
        return value.func(*(readable(arg, kind) for arg in value.args), evaluate=False)
    if value.has(sp.Max, sp.Min, sp.Piecewise):
        return value
    expanded = sp.expand(value)
    if len(sp.Add.make_args(expanded)) > _LEAVE:
        return value
    out = sp.factor_terms(expanded)
    symbols = [getattr(sym, n) for n in COLLECT_BY.get(kind, ())]
    if not symbols:
        return out
    return out.replace(lambda x: isinstance(x, sp.Add), lambda x: sp.collect(x, symbols, func=sp.factor_terms))


def formula(value: Any, kind: str = "plain", notation: str = "megatron") -> str:
    """The LaTeX of :func:`readable` (``value``) with the notation's symbol names."""
    import sympy as sp

    from .notation import names

    return sp.latex(readable(value, kind), symbol_names=dict(names(notation)))


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], highlight: Optional[int] = None,
               caption: Optional[str] = None) -> str:
    """An HTML table; ``headers`` are escaped, cells are HTML already (see :func:`html`); row
    ``highlight`` (0-based) is marked ``class="chosen"`` and highlighted."""
    head = "".join(f"<th>{_html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        mark = ' class="chosen" style="background:#fff3b0;font-weight:bold"' if i == highlight else ""
        body.append(f"<tr{mark}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    cap = f"<caption>{_html.escape(caption)}</caption>" if caption else ""
    return f'<table class="symcost">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def html_section(title: str, parts: Sequence[str]) -> str:
    """A titled block of HTML parts (tables, paragraphs) for ``_repr_html_``."""
    inner = "".join(parts)
    return f'<div class="symcost"><strong>{_html.escape(title)}</strong>{inner}</div>'


def html_text(s: str) -> str:
    """``s`` escaped as an HTML paragraph."""
    return f"<p>{_html.escape(s)}</p>"


def short_repr(name: str, items: Sequence[tuple[str, str]], limit: int = 200, item_limit: int = 48) -> str:
    """``name(key=value, ...)``, each value cut to ``item_limit`` characters and the whole to
    ``limit``, with ``...`` where cut (a symbolic step time can run to thousands of characters).

    >>> short_repr("Step", [("T", "1 s"), ("fits", "True")])
    'Step(T=1 s, fits=True)'
    """
    cut = [(k, v if len(v) <= item_limit else v[:item_limit - 3] + "...") for k, v in items]
    out = f"{name}(" + ", ".join(f"{k}={v}" for k, v in cut) + ")"
    return out if len(out) <= limit else out[:limit - 4] + "...)"


def fits_text(fits: Optional[bool]) -> str:
    """``fits`` for people: ``fits``, ``does not fit`` or ``fit unknown (symbolic)``."""
    return "fit unknown (symbolic)" if fits is None else ("fits" if fits else "does not fit")


# -- metrics --------------------------------------------------------------------------------------

def _metric_fields(m: Any) -> list[str]:
    """The fields worth showing: every field, the times only once a chip is bound."""
    timed = any(getattr(m, f) != 0 for f in ("compute_time", "memory_time", "comm_time", "latency"))
    return [f for f in FIELD_KINDS if timed or FIELD_KINDS[f] != "time"]


def metrics_repr(m: Any) -> str:
    """``LayerMetrics(phase=..., flops=..., memory=..., latency=..., bound=...)`` in 200 characters,
    the undecided assumptions last."""
    def shown(value: Any, kind: str) -> str:
        return text(value if is_numeric(value) else readable(value, kind), kind)

    items = [("phase", str(m.phase)), ("flops", shown(m.flops_per_chip, "flops")),
             ("hbm", shown(m.hbm_bytes_per_chip, "bytes")), ("memory", shown(m.memory_per_chip, "bytes"))]
    if "latency" in _metric_fields(m):
        items += [("latency", shown(m.latency, "time")), ("bound", str(m.bound))]
    if m.assumptions:
        items.append(("assuming", "; ".join(a.rule for a in m.assumptions)))
    return short_repr("LayerMetrics", items, limit=400 if m.assumptions else 200, item_limit=120)


def metrics_text(m: Any) -> str:
    """One line per field: a number with its unit, or the readable formula."""
    lines = [f"{m.phase} metrics per chip:"]
    for f in _metric_fields(m):
        value = getattr(m, f)
        shown = text(value, FIELD_KINDS[f]) if is_numeric(value) else text(readable(value, FIELD_KINDS[f]), "plain")
        lines.append(f"  {f}: {shown}")
    if m.assumptions:
        lines.append("  assuming " + "; ".join(a.rule for a in m.assumptions))
    return "\n".join(lines)


def metrics_latex(m: Any, notation: str = "megatron") -> str:
    """The fields as an ``aligned`` block: readable formulas (:func:`readable`), numbers with units."""
    from .notation import label
    from .notation import text as latex_text

    rows = [f"{label(f, notation)} &= {latex(getattr(m, f), FIELD_KINDS[f], notation)}" for f in _metric_fields(m)]
    tail = ""
    if m.assumptions:
        tail = "\\quad\\text{(assuming " + "; ".join(latex_text(a.rule) for a in m.assumptions) + ")}"
    return "$\\displaystyle \\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}" + tail + "$"


def metrics_html(m: Any) -> str:
    """A table of the fields: the readable formula, or the number with its unit (exact in ``title``)."""
    rows = [[_html.escape(f), html(readable(getattr(m, f), FIELD_KINDS[f]), FIELD_KINDS[f])]
            for f in _metric_fields(m)]
    if "latency" in _metric_fields(m):
        rows.append(["bound", _html.escape(str(m.bound))])
    parts = [html_table(["per chip", "value"], rows)]
    if m.assumptions:
        parts.append(html_text("assuming " + "; ".join(a.rule for a in m.assumptions)))
    return html_section(f"{m.phase} metrics", parts)

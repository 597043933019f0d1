r"""Notations and the two LaTeX printers every stage may use (metrics, models, :mod:`symcost.report.latex`).

This is the bottom of the LaTeX stack: it knows the canonical symbols and the metric field names,
and nothing of layers, models or reports, so :class:`~symcost.core.metrics.LayerMetrics` and
:class:`~symcost.models.model.Model` print themselves without importing :mod:`symcost.report.latex` (which
imports them). :mod:`symcost.report.latex` re-exports :data:`NOTATIONS`, :func:`present` and
:func:`expression`; use them from there.

>>> from symcost import symbols as S
>>> expression(2 * S.hidden_size, "scaling-book"), text("llama_3")
('2 D', 'llama\\_3')
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Sequence

import sympy as sp

from ..errors import ConfigError
from . import symbols as sym
from ._expr import Value, as_expr

__all__ = ["NOTATIONS", "LABELS", "names", "label", "text", "present", "expression", "aligned"]

# -- notations ------------------------------------------------------------------------------------

MEGATRON: dict[sp.Symbol, str] = sym.latex_names()

# NB: "How to Scale Your Model" (Austin et al. 2025, jax-ml.github.io/scaling-book, chapter
# "All the Transformer Math You Need to Know") names
# the model dimensions; it uses T for the query length and S for the key/value length, and
# symcost has one sequence length, so seq_len is T. The parallel degrees (the book uses mesh axes
# X, Y, Z rather than named degrees), bytes per element and the hardware symbols keep their
# Megatron-style LaTeX.
SCALING_BOOK: dict[sp.Symbol, str] = {
    **MEGATRON,
    sym.batch_size: "B",
    sym.seq_len: "T",
    sym.hidden_size: "D",
    sym.intermediate_size: "F",
    sym.num_heads: "N",
    sym.num_kv_heads: "K",
    sym.head_dim: "H",
    sym.num_layers: "L",
    sym.vocab_size: "V",
    # the book's H and N are the head width and the query heads: the Mamba-2 letters move aside
    sym.ssm_heads: r"H_{\mathrm{ssm}}",
    sym.ssm_state_size: r"N_{\mathrm{ssm}}",
}

NOTATIONS: Mapping[str, Mapping[sp.Symbol, str]] = MappingProxyType({
    "megatron": MappingProxyType(MEGATRON),
    "scaling-book": MappingProxyType(SCALING_BOOK),
})
"""For each notation, the LaTeX of every canonical symbol (``symbol_names`` for ``sympy.latex``)."""

# Metric labels. NB: the megatron labels are exactly those LayerMetrics.to_latex always printed;
# scaling-book uses T for the sequence length, so the latency is T_step there.
LABELS: dict[str, str] = {
    "flops_per_chip": r"\mathrm{FLOPs}",
    "matmul_flops_per_chip": r"\mathrm{FLOPs}_{\mathrm{matmul}}",
    "hbm_bytes_per_chip": r"\mathrm{HBM\ traffic}",
    "weight_memory_per_chip": r"M_{\mathrm{weights}}",
    "activation_memory_per_chip": r"M_{\mathrm{act}}",
    "kv_cache_memory_per_chip": r"M_{\mathrm{KV}}",
    "comm_bytes_per_chip": r"\mathrm{comm\ bytes}",
    "compute_time": r"T_{\mathrm{compute}}",
    "memory_time": r"T_{\mathrm{memory}}",
    "comm_time": r"T_{\mathrm{comm}}",
    "latency": r"T",
}
LABEL_OVERRIDES: dict[str, dict[str, str]] = {"scaling-book": {"latency": r"T_{\mathrm{step}}"}}


def names(notation: str) -> Mapping[sp.Symbol, str]:
    """The LaTeX name of every canonical symbol in ``notation`` (one of :data:`NOTATIONS`)."""
    try:
        return NOTATIONS[notation]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown notation {notation!r}; valid: {', '.join(NOTATIONS)}") from None


def label(field: str, notation: str) -> str:
    """The LaTeX label of a metric field in ``notation``."""
    return LABEL_OVERRIDES.get(notation, {}).get(field, LABELS[field])


_TEXT_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def text(s: str) -> str:
    """``s`` as LaTeX text, special characters escaped."""
    return "".join(_TEXT_ESCAPES.get(c, c) for c in s)


def present(value: Value) -> sp.Expr:
    """The presentation form of ``value``: ``factor_terms(expand(value))``, the same value.

    Products are multiplied out, then the common monomial and numeric factor is pulled out of
    every sum (recursively); no ``simplify``, no change of value.

    >>> from symcost import symbols as S
    >>> b, s, h, f, t = S.batch_size, S.seq_len, S.hidden_size, S.intermediate_size, S.tp
    >>> present(5*b*s*f/t + 6*(b*s*f/t + b*s*h))       # 11 b f s/t + 6 b h s, common b s
    b*s*(11*f/t + 6*h)
    """
    expr = as_expr(value, "expression")
    return sp.factor_terms(sp.expand(expr))


def expression(expr: Value, notation: str = "megatron") -> str:
    r"""``sympy.latex`` of :func:`present` (``expr``) with the notation's symbol names.

    >>> from symcost import NormLayer
    >>> m = NormLayer(kind="rmsnorm").compute_metrics(phase="prefill", dtype="bf16")
    >>> expression(m.weight_memory_per_chip), expression(m.weight_memory_per_chip, "scaling-book")
    ('2 h', '2 D')
    >>> expression(4096)
    '4096'
    """
    symbols = names(notation)
    return sp.latex(present(expr), symbol_names=dict(symbols))


def aligned(rows: Sequence[tuple[str, Any]], notation: str) -> str:
    """An ``aligned`` block, one ``label &= value`` line per ``(field, value)``, values as stored
    (renamed to the notation, not :func:`present`-ed): what :meth:`LayerMetrics.to_latex` prints."""
    symbols = dict(names(notation))
    lines = [f"{label(f, notation)} &= {sp.latex(sp.sympify(v), symbol_names=symbols)}" for f, v in rows]
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"

"""Tests of symcost.report.latex: exact formulas in both notations, structure, macros, compilation."""

import re

import pytest
import sympy as sp

import symcost as sc
from symcost import models
from symcost import symbols as S
from symcost.core.metrics import METRIC_FIELDS
from symcost.report import latex

TP = {"tensor_parallel": S.tp}


def _rmsnorm(phase="prefill"):
    return sc.NormLayer(kind="rmsnorm").compute_metrics(phase=phase, dtype="bf16")


# -- exact formulas ---------------------------------------------------------------------------------


def test_rmsnorm_weights_in_both_notations():
    """RMSNorm weights: h gammas at 2 bytes (bf16) = 2h, printed "2 h" and "2 D"."""
    w = _rmsnorm().weight_memory_per_chip
    assert latex.expression(w) == "2 h"
    assert latex.expression(w, "megatron") == "2 h"
    assert latex.expression(w, "scaling-book") == "2 D"


def test_mlp_matmul_flops_in_both_notations():
    """MLP prefill matmul FLOPs: 2 matmuls of 2 (b s) h (f/t) = 4 b f h s / t."""
    m = sc.MLPLayer(parallelism=TP).compute_metrics(phase="prefill")
    assert latex.expression(m.matmul_flops_per_chip) == r"\frac{4 b f h s}{t}"
    # b->B, f->F, h->D, s->T; SymPy orders the factors by the canonical names b < f < h < s
    assert latex.expression(m.matmul_flops_per_chip, "scaling-book") == r"\frac{4 B F D T}{t}"


def test_gqa_kv_cache_in_both_notations():
    """GQA decode KV cache: K and V, 2 * b * s * g/min(g, t) heads * d * e with d = h/a (g/t
    heads per chip, or one replicated head when g < t: issue 8 item 4)."""
    m = sc.GroupedQueryAttentionLayer(parallelism=TP).compute_metrics(phase="decode")
    assert latex.expression(m.kv_cache_memory_per_chip) == r"\frac{2 b e g h s}{a \min\left(g, t\right)}"
    # b e g h s -> B e K D T over a min(g, t) -> N min(K, t)
    assert latex.expression(m.kv_cache_memory_per_chip, "scaling-book") == \
        r"\frac{2 B e K D T}{N \min\left(K, t\right)}"


def test_presentation_pulls_out_common_factors():
    """MLP decode FLOPs 4 b f h/t (matmuls) + 8 b f/t (GELU, 8 per element) = 4 b f (h + 2)/t."""
    m = sc.MLPLayer(parallelism=TP).compute_metrics(phase="decode")
    assert latex.expression(m.flops_per_chip) == r"\frac{4 b f \left(h + 2\right)}{t}"


def test_presentation_never_changes_the_value():
    """present(x) - x cancels to zero for every field of every seed layer, training and decode."""
    for layer in latex._symbolic_layers(TP).values():
        for phase in ("training", "decode"):
            m = layer.compute_metrics(phase=phase)
            for field in METRIC_FIELDS[:7]:
                value = sp.sympify(getattr(m, field))
                assert sp.cancel(latex.present(value) - value) == 0, (type(layer).__name__, phase, field)


def test_expression_takes_numbers_and_refuses_strings():
    """Exact numbers print as themselves; strings are never parsed (rule 1)."""
    assert latex.expression(8030261248) == "8030261248"
    assert latex.expression(sp.Rational(1, 2)) == r"\frac{1}{2}"
    with pytest.raises(ValueError, match="never parsed"):
        latex.expression("S*E")


def test_to_latex_default_notation_is_unchanged():
    """LayerMetrics.to_latex prints the stored fields exactly as before; notation renames them."""
    m = _rmsnorm()  # weights 2h; FLOPs 4 per element (rmsnorm) over b s h
    fields = ["weight_memory_per_chip", "flops_per_chip"]
    assert m.to_latex(fields) == (
        "\\begin{aligned}\nM_{\\mathrm{weights}} &= 2 h \\\\\n\\mathrm{FLOPs} &= 4 b h s\n\\end{aligned}")
    assert m.to_latex(fields, notation="scaling-book") == (
        "\\begin{aligned}\nM_{\\mathrm{weights}} &= 2 D \\\\\n\\mathrm{FLOPs} &= 4 B D T\n\\end{aligned}")
    # the notebook view shows the readable forms (issue 13), here the same as stored
    tex = m._repr_latex_()
    assert tex.startswith("$\\displaystyle \\begin{aligned}") and tex.endswith("\\end{aligned}$")
    assert "M_{\\mathrm{weights}} &= 2 h \\\\" in tex and "\\mathrm{FLOPs} &= 4 b h s \\\\" in tex


def test_model_repr_latex_shows_parameter_count():
    """A model renders its name, parameter count (Llama-3-8B: 8,030,261,248) and depth."""
    tex = models.get("llama-3-8b")._repr_latex_()
    assert tex.startswith("$") and tex.endswith("$")
    assert r"\text{llama-3-8b}" in tex
    assert r"N_{\mathrm{params}} = 8030261248" in tex and r"N_{\mathrm{layers}} = 32" in tex


# -- structure ------------------------------------------------------------------------------------


def test_align_has_one_line_per_field():
    """align: an align* environment with one labelled line per field, none broken when short."""
    m = sc.MLPLayer(parallelism=TP).compute_metrics(phase="decode")
    fields = METRIC_FIELDS[:7]
    tex = latex.align(m, fields)
    lines = tex.splitlines()
    assert lines[0] == r"\begin{align*}" and lines[-1] == r"\end{align*}"
    body = lines[1:-1]
    assert len(body) == len(fields) and all(line.count("&=") == 1 for line in body)
    assert body[1] == r"\mathrm{FLOPs}_{\mathrm{matmul}} &= \frac{4 b f h}{t} \\"


def test_align_takes_a_mapping():
    """align accepts {field: expression}, in the mapping's order."""
    tex = latex.align({"kv_cache_memory_per_chip": 2 * S.batch_size, "flops_per_chip": 0}, notation="scaling-book")
    assert tex == "\\begin{align*}\nM_{\\mathrm{KV}} &= 2 B \\\\\n\\mathrm{FLOPs} &= 0\n\\end{align*}"


def test_align_breaks_long_sums_without_changing_them():
    """A long sum (GQA training latency) continues on &\\quad lines; joined, it is the one-line
    LaTeX, and every line balances its \\left and \\right."""
    m = sc.GroupedQueryAttentionLayer(parallelism=TP).compute_metrics(phase="training")
    names = latex.NOTATIONS["megatron"]
    whole = sp.latex(latex.present(m.latency), symbol_names=dict(names))
    pieces = latex._pieces(m.latency, names, latex._LINE_WIDTH)
    assert len(pieces) > 1 and " ".join(pieces) == whole
    tex = latex.align(m)
    body = tex.splitlines()[1:-1]
    assert sum(line.count("&=") for line in body) == len(METRIC_FIELDS)
    assert len(body) > len(METRIC_FIELDS)
    for line in body:
        assert line.count(r"\left") == line.count(r"\right"), line


def test_layer_table_structure():
    """layer_table: booktabs rules, a header and one row per layer type (5), one & per field."""
    fields = latex.TABLE_FIELDS
    tex = latex.layer_table("training", parallelism=TP)
    lines = tex.splitlines()
    assert lines[0] == r"\begin{tabular}{" + "l" * (len(fields) + 1) + "}"
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert lines.count(rule) == 1
    top, mid, bottom = lines.index(r"\toprule"), lines.index(r"\midrule"), lines.index(r"\bottomrule")
    rows = lines[mid + 1:bottom]
    assert mid == top + 2 and len(rows) == 5
    assert [r.split(" & ")[0] for r in rows] == ["MLP", "Gated MLP", "Attention (MHA)", "Attention (GQA)", "LayerNorm"]
    for row in [lines[top + 1]] + rows:
        assert row.count("&") == len(fields) and row.endswith(r" \\")
    # the MLP's training weights: 2 h f/t parameters at e bytes
    assert rows[0].split(" & ")[2] == r"$\frac{2 e f h}{t}$"


def test_table_escapes_labels_and_can_fit_a_width():
    """Row labels are text (escaped); width= wraps the tabular in \\resizebox."""
    tex = latex.table({"norm_1 & 2": _rmsnorm()}, ["weight_memory_per_chip"], width=r"\linewidth")
    assert r"norm\_1 \& 2 & $2 h$ \\" in tex
    assert tex.startswith(r"\resizebox{\linewidth}{!}{%") and tex.endswith("}")


def test_macros_are_valid_commands():
    """One \\newcommand per canonical symbol, letters-only names, all distinct."""
    for notation in latex.NOTATIONS:
        lines = latex.macros(notation).splitlines()
        assert len(lines) == len(S.TABLE)
        names = [re.match(r"\\newcommand\{(\\[A-Za-z]+)\}\{\\ensuremath\{.+\}\}$", line).group(1) for line in lines]
        assert len(set(names)) == len(names)
    assert r"\newcommand{\scHiddenSize}{\ensuremath{D}}" in latex.macros("scaling-book")
    assert r"\newcommand{\scSp}{\ensuremath{n_{\mathrm{sp}}}}" in latex.macros("megatron")


def test_glossary_lists_each_symbol():
    """glossary(): a row per canonical symbol, its LaTeX and meaning; a subset in table order."""
    tex = latex.glossary(notation="scaling-book")
    names = latex.NOTATIONS["scaling-book"]
    for row in S.TABLE.values():
        assert f"${names[row.symbol]}$ & {row.meaning} \\\\" in tex
    assert tex.count(r" \\") == len(S.TABLE) + 1  # and the header
    sub = latex.glossary([S.num_kv_heads, "seq_len"])
    assert sub.index("$s$") < sub.index("$g$") and "$b$" not in sub


def test_model_document_shapes():
    """model_document: a model (parameters, layer table, whole model), a layer, or the seed
    layer types; standalone gives a whole document, otherwise the body alone."""
    tex = latex.model_document(models.get("llama-3-8b"), phase="decode")
    assert tex.startswith(r"\documentclass{article}") and tex.rstrip().endswith(r"\end{document}")
    assert r"N_{\mathrm{params}} &= 8030261248" in tex
    assert r"blocks[0] ($\times 32$)" in tex
    body = latex.model_document(sc.NormLayer(kind="rmsnorm"), phase="prefill", standalone=False)
    assert r"\documentclass" not in body and r"M_{\mathrm{weights}} &= e h" in body
    seed = latex.model_document(None, phase="training", notation="scaling-book")
    assert seed.count(r"\bottomrule") == 2  # the layer table and the glossary


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_notation_names_the_valid_ones():
    """Every entry point refuses an unknown notation with a ValueError listing the valid ones."""
    m = _rmsnorm()
    calls = [lambda: latex.expression(1, "tufte"), lambda: latex.align(m, notation="tufte"),
             lambda: latex.table({"x": m}, notation="tufte"), lambda: latex.glossary(notation="tufte"),
             lambda: latex.macros("tufte"), lambda: latex.document("", notation="tufte"),
             lambda: m.to_latex(notation="tufte"), lambda: latex.model_document(None, notation="tufte")]
    for call in calls:
        with pytest.raises(ValueError, match=r"unknown notation 'tufte'; valid: megatron, scaling-book"):
            call()


def test_unknown_field_or_symbol_is_named():
    """An unknown field (align, table, to_latex) or symbol (glossary) is named in the error."""
    m = _rmsnorm()
    with pytest.raises(ValueError, match=r"align: unknown fields \['flops'\]"):
        latex.align(m, ["flops"])
    with pytest.raises(ValueError, match=r"table: unknown fields \['params'\]"):
        latex.table({"x": m}, ["flops_per_chip", "params"])
    with pytest.raises(ValueError, match=r"align: unknown fields \['params'\]"):
        latex.align({"params": 1})
    with pytest.raises(ValueError, match=r"to_latex: unknown fields \['flops'\]"):
        m.to_latex(["flops"])
    with pytest.raises(ValueError, match="not canonical symbols: hidden"):
        latex.glossary(["hidden"])
    with pytest.raises(ValueError, match="expected a Model, a Layer or None"):
        latex.model_document("llama-3-8b")


# -- compilation ----------------------------------------------------------------------------------


def _documents():
    m = sc.GroupedQueryAttentionLayer(parallelism=TP).compute_metrics(phase="training")
    body = "\n\n".join([latex.align(m), latex.layer_table("decode", "scaling-book", TP, width=r"\linewidth"),
                        latex.glossary(), r"Macros in text: \scBatchSize, \scSp."])
    return {
        "parts": latex.document(body, title="symcost: GQA & friends"),
        "model": latex.model_document(models.get("mixtral-8x7b"), phase="training"),
        "symbolic": latex.model_document(sc.Model.llama(parallelism=TP), phase="decode", notation="scaling-book"),
    }


@pytest.mark.parametrize("name", ["parts", "model", "symbolic"])
def test_documents_compile_with_pdflatex(latex_pdf, name):
    """document(...) and model_document(...) compile with pdflatex (skipped without it)."""
    assert latex_pdf(_documents()[name]).stat().st_size > 0

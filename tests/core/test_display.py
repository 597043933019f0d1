"""symcost.core.display and the metrics' displays: readable formulas equal to the stored ones,
numbers with units, HTML that parses, LaTeX that compiles."""

from fractions import Fraction
from html.parser import HTMLParser

import pytest
import sympy as sp

import symcost as sc
from symcost import symbols as S
from symcost.core import display
from symcost.core.metrics import METRIC_FIELDS

L, e, h, V, b, s, a = S.num_layers, S.dtype_bytes, S.hidden_size, S.vocab_size, S.batch_size, S.seq_len, S.num_heads


def _gpt_metrics(phase):
    return sc.Model.gpt(seq_len=2048).compute_metrics(phase=phase)


def test_gpt_weights_read_as_a_collected_polynomial():
    """Stored: L(4eh + e(4h²+4h) + e(8h²+5h)) + 2eh + e(Vh + 2048h); shown: e h (12 L h + 13 L + V + 2050)."""
    m = _gpt_metrics("prefill")
    want = e * h * (12 * L * h + 13 * L + V + 2050)
    shown = display.readable(m.weight_memory_per_chip, "bytes")
    assert shown == want                      # the canonical form, structurally
    assert sp.expand(shown - m.weight_memory_per_chip) == 0
    assert "e h \\left(12 L h + 13 L + V + 2050\\right)" in m._repr_latex_()


@pytest.mark.parametrize("phase", ["prefill", "decode", "training"])
def test_every_displayed_formula_equals_the_stored_one(phase):
    m = _gpt_metrics(phase)
    for field in METRIC_FIELDS:
        stored = getattr(m, field)
        shown = display.readable(stored, display.FIELD_KINDS[field])
        assert sp.expand(shown - stored) == 0, field


def test_flops_are_collected_by_sequence_length():
    # training matmul FLOPs of Megatron GPT per layer 72 b s h² + 12 b s² h, LM head 6 b s h V (Narayanan 2021)
    m = _gpt_metrics("training")
    assert display.readable(m.matmul_flops_per_chip, "flops") == 6 * b * h * s * (12 * L * h + 2 * L * s + V)


def test_numeric_metrics_show_units():
    # MLP h = 4096, f = 16384, b = 1, s = 2048: matmul FLOPs 2 * (2 * 2048 * 4096 * 16384) = 549,755,813,888
    # (docs/conventions.md reference point) -> 549.8 GFLOP; weights 2 * 4096 * 16384 * 2 B = 268,435,456 B
    m = sc.MLPLayer(hidden_size=4096, intermediate_size=16384).compute_metrics(
        batch_size=1, seq_len=2048, phase="prefill", dtype="bf16")
    page = m._repr_html_()
    HTMLParser().feed(page)
    assert "549.8 GFLOP" in page and "268.4 MB" in page and 'title="549755813888 FLOP"' in page
    assert "549.8 GFLOP" in str(m) and "268.4 MB" in str(m)
    assert "549.8\\,\\mathrm{GFLOP}" in m._repr_latex_()
    assert len(repr(m)) <= 200 and m.matmul_flops_per_chip == 549755813888


def test_metrics_html_parses_with_formulas():
    page = _gpt_metrics("decode")._repr_html_()
    HTMLParser().feed(page)
    assert "<code>2*L*b*e*h*s B</code>" in page       # KV cache 2 (K and V) b s h e per layer, L layers


def test_quantity_helpers():
    assert display.text(Fraction(22948, 654296875), "time") == "35.07 µs"
    assert display.latex(Fraction(22948, 654296875), "time") == "35.07\\,\\mu\\mathrm{s}"
    assert display.latex(12345 * 10**18, "bytes") == "12{,}345\\,\\mathrm{EB}"
    assert display.text(S.hidden_size * 2, "bytes") == "2*h B"
    assert display.html(None, "time") == "-" and display.text(Fraction(1, 4), "percent") == "25 %"


def test_metrics_latex_compiles(latex_pdf):
    numeric = sc.MLPLayer(hidden_size=4096, intermediate_size=16384).compute_metrics(
        batch_size=1, seq_len=2048, phase="prefill", dtype="bf16", hardware="H100_SXM")
    symbolic = sc.GroupedQueryAttentionLayer(parallelism={"tensor_parallel": S.tp}).compute_metrics(phase="decode")
    body = "\n\n".join(x._repr_latex_() for x in (numeric, symbolic, sc.models.get("llama-2-7b")))
    latex_pdf(body, wrap=True)

"""How solutions display: closed form and value with units where known, the condition they hold under."""

from html.parser import HTMLParser

import pytest
import sympy as sp

from symcost import GroupedQueryAttentionLayer
from symcost import symbols as S
from symcost.analysis.solve import max_integer, min_degree


def _kv_solution():
    # GQA h=4096, a=32, g=8 => d=128; KV bytes per token per layer: 2 (K and V) * 8 * 128 * 2 B = 4096 B.
    # 80e9 B / 4096 B = 19,531,250 tokens exactly.
    m = GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8).compute_metrics(
        batch_size=1, phase="decode", dtype="bf16")
    return max_integer(m.kv_cache_memory_per_chip, S.seq_len, 80 * 10**9, kind="bytes")


def test_integer_solution_with_numeric_closed_form_has_no_floor():
    """A numeric closed form is the value itself: no \\lfloor 19531250 \\rfloor (issue 13)."""
    out = _kv_solution()._repr_latex_()
    assert "lfloor" not in out
    assert "19{,}531{,}250" in out or "19531250" in out


def test_integer_solution_symbolic_closed_form_keeps_the_floor():
    # 4096 * b * s <= 80e9  =>  s = floor(80e9 / (4096 b)) = floor(19531250 / b)
    m = GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8).compute_metrics(
        phase="decode", dtype="bf16")
    out = max_integer(m.kv_cache_memory_per_chip, S.seq_len, 80 * 10**9)._repr_latex_()
    assert r"\left\lfloor" in out and "19531250" in out and "b" in out


def test_integer_solution_text_and_html():
    r = _kv_solution()
    assert "19,531,250" in str(r)
    assert len(repr(r)) <= 200 and "19531250" in repr(r)
    page = r._repr_html_()
    HTMLParser().feed(page)
    assert "19,531,250" in page and "80 GB" in page    # the limit 80e9 bytes read as a byte limit


def test_degree_solution_display():
    # TP degree t: weights 16e9 B / t must fit in 5e9 B => t in (1, 2, 4) fails until t = 4 (4e9 B)
    t = S.tp
    r = min_degree(16 * 10**9 / t, t, 5 * 10**9, candidates=(1, 2, 4, 8), kind="bytes")
    assert r.value == 4
    page = r._repr_html_()
    HTMLParser().feed(page)
    assert "16 GB" in page and "8 GB" in page and "4 GB" in page
    assert "4" in str(r) and len(repr(r)) <= 200


@pytest.mark.parametrize("which", ["integer", "degree"])
def test_solution_latex_compiles(latex_pdf, which):
    if which == "integer":
        body = _kv_solution()._repr_latex_()
    else:
        body = min_degree(16 * 10**9 / S.tp, S.tp, 5 * 10**9, candidates=(1, 2, 4, 8), kind="bytes")._repr_latex_()
    latex_pdf(body, wrap=True)


def test_expression_unchanged():
    """Displaying reads the solution; value and closed form stay exact."""
    r = _kv_solution()
    r._repr_html_()
    assert r.value == 19531250 and r.closed_form == sp.Integer(19531250)

"""How a model reads (issue 13): a shape table and the parameter count."""

from html.parser import HTMLParser

import symcost as sc


def test_small_gpt_shape_table():
    gpt = sc.Model.gpt(hidden_size=64, num_heads=4, num_layers=2, vocab_size=128, seq_len=32)
    # parameters h (12 L h + 13 L + V + s + 2) = 64 * (1536 + 26 + 128 + 32 + 2) = 110,336
    # one attention layer with bias: 4 h^2 + 4 h = 16,640; one MLP (f = 4h, bias): 8 h^2 + 5 h = 33,088,
    # x 2 layers = 66,176 (60.0 % of all); the embedding (V + s) h = 10,240, 9.28 % of all
    page = gpt._repr_html_()
    HTMLParser().feed(page)
    assert "110,336 parameters" in page
    for want in ("16,640", "33,088", "66,176", "60 %", "9.28 %", "10,240", "hidden_size=64", "num_heads=4"):
        assert want in page, want
    assert repr(gpt) == "Model(name='gpt', layers=2, parameters=110,336)"
    assert str(gpt).startswith("gpt: 110,336 parameters, 2 blocks")
    assert gpt.parameter_count == 110336


def test_preset_parameter_count_in_words():
    # Llama-2-7B: 6,738,415,616 parameters (Touvron et al. 2023 report "7B"; HF config count)
    m = sc.models.get("llama-2-7b")
    assert "6.738 billion" in m._repr_html_() and "6.738 billion" in repr(m) and len(repr(m)) <= 200
    assert "6738415616 \\approx 6.738\\,\\mathrm{billion}" in m._repr_latex_()


def test_symbolic_model_reads_its_formula():
    gpt = sc.Model.gpt(seq_len=2048)
    assert "h*(12*L*h + 13*L + V + 2050)" in repr(gpt)
    HTMLParser().feed(gpt._repr_html_())

"""Model.with_window / with_layer_windows / window_pattern (symcost/models/model.py): sliding
windows on every attention layer, or hybrid local/global as Gemma 2 and 3 alternate them."""

from __future__ import annotations

import pytest
import sympy as sp

import symcost as sc
from symcost import models
from symcost import symbols as S
from symcost.models.model import window_pattern
from symcost.testing import assert_expr_equal

# 4 layers, h = 64, 4 query heads and 2 KV heads of d = 16: K and V of one token in one layer are
# 2 * 2 * 16 = 64 elements, 128 bytes in bf16.
SMALL = dict(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=4, vocab_size=128, intermediate_size=128)


def small(**kw):
    return sc.Model.llama(**{**SMALL, **kw})


def kv(model, s, b=1):
    return model.compute_metrics(batch_size=b, seq_len=s, phase="decode", dtype="bf16").kv_cache_memory_per_chip


def test_window_on_every_layer_caps_the_cache():
    """window 256 at s = 1024: 4 layers * 256 tokens * 128 bytes = 131,072 (full: 524,288)."""
    model = small().with_window(256)
    assert [(blk.attention.window, n) for blk, n in model.blocks] == [(256, 4)]
    assert kv(model, 1024) == 4 * 256 * 128 == 131072
    assert kv(small(), 1024) == 4 * 1024 * 128
    assert kv(model, 100) == 4 * 100 * 128  # shorter than the window: the whole context
    assert model.parameter_count == small().parameter_count  # a window adds no weights


def test_gemma2_pattern_even_layers_slide():
    """HF Gemma2Config: layer_types[i] = "sliding_attention" if (i + 1) % 2 else "full_attention":
    layers 0 and 2 local, 1 and 3 global. At s = 1024, w = 256: 2 * 256 + 2 * 1024 = 2,560 tokens
    * 128 bytes = 327,680."""
    assert window_pattern(4, 256, 2) == [256, None, 256, None]
    model = small().with_window(256, global_every=2)
    assert [(blk.attention.window, n) for blk, n in model.blocks] == [(256, 1), (None, 1), (256, 1), (None, 1)]
    assert kv(model, 1024) == (2 * 256 + 2 * 1024) * 128 == 327680


def test_gemma3_pattern_groups_consecutive_local_layers():
    """Gemma 3's sliding_window_pattern 6 on 12 layers: 5 local, 1 global, twice; grouped."""
    model = small(num_layers=12).with_window(1024, global_every=6)
    assert [(blk.attention.window, n) for blk, n in model.blocks] == [(1024, 5), (None, 1), (1024, 5), (None, 1)]
    assert model.num_layers == 12


def test_hybrid_is_the_mean_of_all_local_and_all_global():
    """With k = 2 half the layers are each kind: every additive metric is (local + global) / 2,
    in prefill (causal window pairs) as in decode."""
    hybrid, local, full = small().with_window(8, global_every=2), small().with_window(8), small()
    for phase in ("prefill", "decode", "training"):
        m, lo, gl = (x.compute_metrics(batch_size=2, seq_len=32, phase=phase, dtype="bf16")
                     for x in (hybrid, local, full))
        for field in ("flops_per_chip", "hbm_bytes_per_chip", "kv_cache_memory_per_chip"):
            assert 2 * getattr(m, field) == getattr(lo, field) + getattr(gl, field), (phase, field)


def test_symbolic_window_and_depth():
    """Symbolic w on every layer of L layers: KV = L * 2 b g d e Min(s, w) (d = h/a)."""
    model = sc.Model.llama().with_window(S.window)
    b, s, h, a, g, e, L = (S.batch_size, S.seq_len, S.hidden_size, S.num_heads, S.num_kv_heads,
                           S.dtype_bytes, S.num_layers)
    got = model.compute_metrics(phase="decode").kv_cache_memory_per_chip
    assert_expr_equal(got, L * 2 * b * g * (h / a) * e * sp.Min(s, S.window))


def test_windows_replace_and_remove():
    """Mistral's own 4096 window: removed by with_window(None), restored by with_window(4096)."""
    mistral = models.get("mistral-7b")
    assert mistral.blocks[0][0].attention.window == 4096
    full = mistral.with_window(None)
    assert full.blocks[0][0].attention.window is None
    assert full.with_window(4096) == mistral


def test_layer_windows_match_the_hf_qwen2_reader():
    """Qwen2's max_window_layers = 2 of 4 (layers 2 and 3 slide), read by symcost.models.hf,
    equals the same list given to with_layer_windows."""
    config = {"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
              "num_hidden_layers": 4, "vocab_size": 128, "intermediate_size": 128, "use_sliding_window": True,
              "sliding_window": 16, "max_window_layers": 2, "tie_word_embeddings": False}
    from_hf = models.from_hf_config(config)
    ours = sc.Model.llama(**SMALL, attention_bias="qkv", name=from_hf.name).with_layer_windows([None, None, 16, 16])
    assert ours.blocks == from_hf.blocks


@pytest.mark.parametrize(("call", "message"), [
    (lambda: small().with_window(16, global_every=0), "global_every must be a positive integer, got 0"),
    (lambda: small().with_window(None, global_every=2), "global_every: needs a window"),
    (lambda: small().with_window(0), "window must be positive"),
    (lambda: sc.Model.llama().with_window(16, global_every=2), "needs a whole number of layers, got L"),
    (lambda: small().with_layer_windows([16, None]), "one window per layer, 4 in all; got 2"),
    (lambda: models.get("deepseek-v3").with_window(4096), "MLALayer has no sliding window"),
])
def test_bad_windows_are_one_clear_error(call, message):
    with pytest.raises(sc.errors.ConfigError, match=message):
        call()


@pytest.mark.parametrize(("notation", "want"), [
    ("megatron", r"M_{\mathrm{KV}} &= 128 b e \left(s + \min\left(s, w\right)\right)"),
    ("scaling-book", r"M_{\mathrm{KV}} &= 128 B e \left(T + \min\left(T, w\right)\right)"),
])
def test_latex_prints_the_window_in_min(notation, want):
    """Hybrid k = 2 on 4 layers: 2 global layers of s tokens and 2 local of min(s, w), 64 elements
    each per token: 128 b e (s + min(s, w)); the window symbol is w in both notations."""
    from symcost.report import latex

    model = small().with_window(S.window, global_every=2)
    assert want in latex.align(model.compute_metrics(phase="decode"), ["kv_cache_memory_per_chip"], notation=notation)


def test_window_on_a_hybrid_reaches_its_attention_mixers_only():
    """A Nemotron-H-like hybrid: the window lands on the attention mixer; Mamba-2 and MLP mixers
    are unchanged. Its decode KV cache at s = 1024, w = 256 is then, for the one attention block
    (g = 2 KV heads of 64/4 = 16 dims, bf16): 2 (K and V) * 256 tokens * 2 * 16 * 2 bytes =
    32768 bytes, plus the Mamba-2 blocks' state caches, which the window leaves as they were."""
    from symcost.models import ssm

    kw = dict(hidden_size=64, vocab_size=100, mamba_layers=4, attention_layers=1, mlp_layers=5,
              num_heads=4, num_kv_heads=2, intermediate_size=256, ssm_head_dim=32, state_size=16,
              chunk_size=8)
    plain, windowed = ssm.hybrid(**kw), ssm.hybrid(**kw).with_window(256)
    kinds = [(type(b.mixer).__name__, getattr(b.mixer, "window", "-")) for b, _ in windowed.blocks]
    assert kinds == [("Mamba2Layer", "-"), ("GroupedQueryAttentionLayer", 256), ("MLPLayer", "-")]
    kv = [m.kv_cache_memory_per_chip for m in (
        model.compute_metrics(batch_size=1, seq_len=1024, phase="decode", dtype="bf16")
        for model in (plain, windowed))]
    # without the window the attention block holds 1024 tokens: 4 times 32768
    assert kv[0] - kv[1] == 4 * 32768 - 32768

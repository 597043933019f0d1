"""Training activations against Korthikanti et al. 2022 (docs/conventions.md §7), as identities.

"Reducing Activation Recomputation in Large Transformer Models", section 4 and Table 2: for a GPT
layer (two LayerNorms, MHA with eager attention, a GELU MLP with f = 4h, dropout on; e = 2) the
activations saved per layer are
    no parallelism               s b h (34 + 5 a s / h)
    tensor parallel t            s b h (10 + 24/t + 5 a s / (h t))
    TP + sequence parallel       s b h (34/t + 5 a s / (h t))
    TP + selective recompute     s b h (10 + 24/t)
    TP + SP + selective          s b h (34/t)
"""

import pytest
import sympy as sp

import symcost as sc
from symcost import symbols as S
from symcost.testing import assert_expr_equal

b, s, h, a, t = S.batch_size, S.seq_len, S.hidden_size, S.num_heads, S.tp


def gpt_layer_activations(parallelism, recompute="none"):
    """Saved bytes of the paper's GPT layer, summed over our four layers (e = 2, bf16)."""
    kw = {"parallelism": parallelism}
    layers = [
        sc.NormLayer(**kw),
        sc.AttentionLayer(flash_attention=False, dropout=True, **kw),
        sc.NormLayer(**kw),
        sc.MLPLayer(intermediate_size=4 * h, dropout=True, **kw),
    ]
    metrics = [layer.compute_metrics(phase="training", dtype="bf16", recompute=recompute)
               for layer in layers]
    return sp.Add(*(m.activation_memory_per_chip for m in metrics))


@pytest.mark.parametrize(
    ("parallelism", "recompute", "paper"),
    [
        ({}, "none", s * b * h * (34 + 5 * a * s / h)),
        ({"tensor_parallel": t}, "none", s * b * h * (10 + 24 / t + 5 * a * s / (h * t))),
        ({"tensor_parallel": t, "sequence_parallel": "tp"}, "none",
         s * b * h * (34 + 5 * a * s / h) / t),
        ({"tensor_parallel": t}, "selective", s * b * h * (10 + 24 / t)),
        ({"tensor_parallel": t, "sequence_parallel": "tp"}, "selective", 34 * s * b * h / t),
    ],
    ids=["none", "tp", "tp+sp", "tp+selective", "tp+sp+selective"],
)
def test_gpt_layer_matches_korthikanti(parallelism, recompute, paper):
    """The GPT layer's saved activations equal the paper's closed form exactly."""
    assert_expr_equal(gpt_layer_activations(parallelism, recompute), paper)


def test_numeric_tp_matches_paper_at_a_point():
    """With numbers (t = 8, GPT-3 175B shapes) the sum is the paper's formula's integer."""
    par = {"tensor_parallel": 8}
    kw = {"parallelism": par}
    layers = [
        sc.NormLayer(hidden_size=12288, **kw),
        sc.AttentionLayer(hidden_size=12288, num_heads=96, flash_attention=False, dropout=True, **kw),
        sc.NormLayer(hidden_size=12288, **kw),
        sc.MLPLayer(hidden_size=12288, intermediate_size=4 * 12288, dropout=True, **kw),
    ]
    got = sum(layer.compute_metrics(batch_size=1, seq_len=2048, phase="training", dtype="bf16")
              .activation_memory_per_chip for layer in layers)
    # s b h (10 + 24/t + 5 a s/(h t)) = 2048*12288*(10 + 3) + 5*96*2048^2/8
    #                                 = 327,155,712 + 251,658,240
    assert got == 2048 * 12288 * 13 + 5 * 96 * 2048 * 2048 // 8 == 578_813_952


def test_full_recompute_keeps_only_each_layers_input():
    """Under full recompute each layer keeps only its input, s*b*h*e (the paper's 2sbh at e = 2)."""
    for layer in (sc.NormLayer(), sc.AttentionLayer(dropout=True), sc.MLPLayer(dropout=True)):
        m = layer.compute_metrics(phase="training", dtype="bf16", recompute="full")
        assert_expr_equal(m.activation_memory_per_chip, 2 * s * b * h)


def test_full_recompute_with_sequence_parallel_shards_the_input():
    """Full recompute under Megatron SP keeps the sequence-sharded input: 2sbh/t."""
    par = {"tensor_parallel": t, "sequence_parallel": "tp"}
    m = sc.MLPLayer(parallelism=par).compute_metrics(phase="training", dtype="bf16",
                                                      recompute="full")
    assert_expr_equal(m.activation_memory_per_chip, 2 * s * b * h / t)


def test_flash_attention_saves_no_quadratic_terms():
    """Flash MHA with dropout saves input, Q, K, V, output (2sbh each), the output dropout mask
    (sbh) and the fp32 log-sum-exp (4bas): 11sbh + 4abs at e = 2."""
    m = sc.AttentionLayer(flash_attention=True, dropout=True).compute_metrics(
        phase="training", dtype="bf16")
    assert_expr_equal(m.activation_memory_per_chip, 11 * s * b * h + 4 * a * b * s)


def test_flash_gqa_saves_kv_at_kv_heads():
    """Flash GQA saves K and V at g heads: input 2sbh, Q 2sbh, K and V 2*2*s*b*g*d, output 2sbh,
    LSE 4bas (no dropout), with d = h/a."""
    g = S.num_kv_heads
    m = sc.GroupedQueryAttentionLayer().compute_metrics(phase="training", dtype="bf16")
    want = 6 * s * b * h + 4 * s * b * g * h / a + 4 * a * b * s
    assert_expr_equal(m.activation_memory_per_chip, want)


def test_eager_attention_without_dropout():
    """Without dropout the masks and dropout outputs vanish: 5 sbh e + a s^2 b e."""
    e = S.dtype_bytes
    m = sc.AttentionLayer(flash_attention=False).compute_metrics(phase="training")
    assert_expr_equal(m.activation_memory_per_chip, 5 * s * b * h * e + a * s**2 * b * e)


def test_gated_mlp_saves_input_gate_up_and_product():
    """The gated MLP saves 2sbh + 6sbf at e = 2 (docs/conventions.md §7): its input (fc1's, 2sbh),
    the gate and up outputs (the fused SwiGLU's input, 2 x 2sbf; Megatron-Core's
    fusions/fused_bias_swiglu.py SwiGLUFunction saves only its input and recomputes silu in the
    backward) and the product (fc2's input, 2sbf). Not silu(gate): 8sbf would be eager PyTorch."""
    f = S.intermediate_size
    m = sc.GatedMLPLayer().compute_metrics(phase="training", dtype="bf16")
    assert_expr_equal(m.activation_memory_per_chip, 2 * s * b * h + 6 * s * b * f)


def test_selective_recompute_adds_the_core_forward_flops():
    """Selective recompute adds one forward of the attention core: 4 b a s^2 d = 4 b s^2 h
    matmul FLOPs (d = h/a); full recompute adds the whole forward."""
    layer = sc.AttentionLayer(flash_attention=False)
    none = layer.compute_metrics(phase="training", recompute="none").matmul_flops_per_chip
    sel = layer.compute_metrics(phase="training", recompute="selective").matmul_flops_per_chip
    full = layer.compute_metrics(phase="training", recompute="full").matmul_flops_per_chip
    fwd = layer.compute_metrics(phase="prefill").matmul_flops_per_chip
    assert_expr_equal(sel - none, 4 * b * s**2 * h)
    assert_expr_equal(full - none, fwd)

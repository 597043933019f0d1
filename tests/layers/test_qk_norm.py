"""Qwen3's per-head Q/K RMSNorm (``qk_norm``) on the attention layers, derived by hand.

Shapes: h = 64, a = 4 query heads, g = 2 KV heads, d = 16, b = 1, s = 8, bf16 (e = 2).
Q and K hold T x (a + g) x d = 8 x 6 x 16 = 768 elements; the two norm weights 2d = 32.
"""

from __future__ import annotations

import pytest

from symcost import GroupedQueryAttentionLayer

KW = {"hidden_size": 64, "num_heads": 4, "num_kv_heads": 2}


def metrics(layer, phase="prefill", seq_len=8, **kw):
    return layer.compute_metrics(batch_size=1, seq_len=seq_len, phase=phase, dtype="bf16", **kw)


def both(**kw):
    return GroupedQueryAttentionLayer(**KW, **kw), GroupedQueryAttentionLayer(**KW, qk_norm=True, **kw)


def test_parameters_add_one_d_vector_for_q_and_one_for_k():
    """Q, O 2 x 64 x 64 = 8192, K, V 2 x 64 x 2 x 16 = 4096, plus 2 x 16 = 32 norm weights."""
    plain, normed = both()
    assert plain.num_params == 12288
    assert normed.num_params == 12288 + 32


def test_prefill_adds_four_flops_per_q_and_k_element_and_no_matmul():
    """768 elements x 4 FLOPs (RMSNorm, ops.VECTOR_FLOPS) = 3,072; bytes: read the 768 elements
    and the 32 weights, write 768, at 2 bytes: (800 + 768) x 2 = 3,136; weights 32 x 2 = 64."""
    plain, normed = (metrics(layer) for layer in both())
    assert normed.matmul_flops_per_chip == plain.matmul_flops_per_chip
    assert normed.flops_per_chip - plain.flops_per_chip == 3072
    assert normed.hbm_bytes_per_chip - plain.hbm_bytes_per_chip == 3136
    assert normed.weight_memory_per_chip - plain.weight_memory_per_chip == 64
    # peak: the normed copies of Q and K, 768 x 2 bytes
    assert normed.activation_memory_per_chip - plain.activation_memory_per_chip == 1536


def test_decode_normalises_the_one_new_token():
    """Decode: T = b = 1: (4 + 2) x 16 = 96 elements x 4 = 384 FLOPs; the KV cache is unchanged."""
    plain, normed = (metrics(layer, "decode", seq_len=32) for layer in both())
    assert normed.flops_per_chip - plain.flops_per_chip == 384
    assert normed.kv_cache_memory_per_chip == plain.kv_cache_memory_per_chip


def test_training_adds_the_backward_and_saves_the_norm_inputs():
    """Training: forward 3,072 plus the backward at twice the forward (ops.BACKWARD_VECTOR_FACTOR):
    9,216 FLOPs; saved: Q and K before their norms, 768 x 2 = 1,536 bytes."""
    plain, normed = (metrics(layer, "training") for layer in both())
    assert normed.flops_per_chip - plain.flops_per_chip == 9216
    assert normed.activation_memory_per_chip - plain.activation_memory_per_chip == 1536


def test_tensor_parallel_shards_the_normalised_heads():
    """t = 2: a/t = 2 query heads and g/t = 1 KV head per chip: 8 x 3 x 16 = 384 elements,
    1,536 FLOPs; the norm weights stay whole on each chip (64 bytes)."""
    plain, normed = (metrics(layer) for layer in both(parallelism={"tensor_parallel": 2}))
    assert normed.flops_per_chip - plain.flops_per_chip == 1536
    assert normed.weight_memory_per_chip - plain.weight_memory_per_chip == 64


def test_flop_counter_sees_no_norm():
    """FlopCounterMode counts matmuls only: an RMSNorm over Q and K (torch.nn.functional.rms_norm)
    adds nothing to it, as the equal matmul_flops above say."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    q = torch.randn(1, 4, 8, 16)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.rms_norm(q, (16,), torch.ones(16))
    assert counter.get_total_flops() == 0

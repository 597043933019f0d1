"""gpt-oss's attention sinks (``sinks``) and biased experts (``MoELayer.expert_bias``), derived by
hand (transformers' GptOssAttention.sinks: one learned logit per query head; GptOssExperts:
``gate_up_proj_bias`` (E x 2f) and ``down_proj_bias`` (E x h)).

Attention shapes: h = 64, a = 4 query heads, g = 2 KV heads, d = 16, bf16 (e = 2).
MoE shapes: h = 64, E = 4 experts of f = 32, top 2, b = 1, s = 8: T = 8 tokens, P = 16 pairs.
"""

from __future__ import annotations

from symcost import GroupedQueryAttentionLayer
from symcost.layers.moe import MoELayer

ATTENTION = {"hidden_size": 64, "num_heads": 4, "num_kv_heads": 2}
MOE = {"hidden_size": 64, "expert_intermediate_size": 32, "num_experts": 4, "top_k": 2}


def metrics(layer, phase="prefill", seq_len=8, **kw):
    return layer.compute_metrics(batch_size=1, seq_len=seq_len, phase=phase, dtype="bf16", **kw)


def test_sinks_add_one_parameter_per_query_head():
    """Q, O 2 x 64 x 64 = 8192, K, V 2 x 64 x 2 x 16 = 4096, plus a = 4 sink logits."""
    assert GroupedQueryAttentionLayer(**ATTENTION).num_params == 12288
    assert GroupedQueryAttentionLayer(**ATTENTION, sinks=True).num_params == 12288 + 4


def test_sinks_split_with_the_query_heads_and_add_no_counted_flops():
    """t = 2: 2 sink logits per chip, 4 bytes; their softmax term is one more logit per query
    row (docs/conventions.md §16, item 15: not counted), so FLOPs and the KV cache are unchanged."""
    for phase in ("prefill", "decode", "training"):
        plain, sunk = (metrics(GroupedQueryAttentionLayer(**ATTENTION, sinks=sinks,
                                                          parallelism={"tensor_parallel": 2}), phase)
                       for sinks in (False, True))
        assert sunk.weight_memory_per_chip - plain.weight_memory_per_chip == 2 * 2
        assert sunk.flops_per_chip == plain.flops_per_chip
        assert sunk.kv_cache_memory_per_chip == plain.kv_cache_memory_per_chip


def test_expert_bias_parameters():
    """Per expert 3 x 64 x 32 = 6144 weights plus 2 x 32 + 64 = 128 biases; the router 64 x 4."""
    assert MoELayer(**MOE).num_params == 4 * 6144 + 256
    assert MoELayer(**MOE, expert_bias=True).num_params == 4 * (6144 + 128) + 256


def test_expert_bias_flops_and_memory():
    """Prefill: gate and up biases on P x f = 16 x 32 elements each, the down bias on P x h =
    16 x 64 (added per pair, before the routing weight scales it): 2 x 512 + 1024 = 2,048 adds,
    no matmul FLOPs; weights (4 x 128) x 2 bytes = 1,024. Bias bytes read: the 4 experts' biases,
    (2 x 32 + 64) x 4 x 2 = 1,024."""
    plain, biased = (metrics(MoELayer(**MOE, expert_bias=flag)) for flag in (False, True))
    assert biased.matmul_flops_per_chip == plain.matmul_flops_per_chip
    assert biased.flops_per_chip - plain.flops_per_chip == 2048
    assert biased.weight_memory_per_chip - plain.weight_memory_per_chip == 1024
    assert biased.hbm_bytes_per_chip - plain.hbm_bytes_per_chip == 1024


def test_expert_bias_under_tensor_and_expert_parallelism():
    """t = 2, ep = 2: 2 local experts, each gate/up bias split (2 x 16) and the down bias whole
    (64): 2 x 96 x 2 bytes = 384 bytes of biases per chip; the routed-expert parameters one chip
    holds grow by the same 192."""
    par = {"tensor_parallel": 2, "expert_parallel": 2}
    plain, biased = (MoELayer(**MOE, expert_bias=flag, parallelism=par) for flag in (False, True))
    assert biased.expert_params_per_chip - plain.expert_params_per_chip == 192
    assert metrics(biased, "decode").weight_memory_per_chip - metrics(plain, "decode").weight_memory_per_chip == 384

"""AttentionLayer and GroupedQueryAttentionLayer: hand-derived FLOPs, bytes, memory, comm."""

import pytest

import symcost as sc
from symcost import symbols as S
from symcost.testing import assert_expr_equal

b, s, h, a, g, t, e = (S.batch_size, S.seq_len, S.hidden_size, S.num_heads, S.num_kv_heads,
                       S.tp, S.dtype_bytes)


def llama_attention(**kw):
    """Llama-3-8B's attention: h = 4096, 32 query heads, 8 KV heads, d = 128."""
    return sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8, **kw)


def test_gqa_decode_by_hand():
    """One decode step of Llama-3-8B attention over 2048 keys, batch 1, bf16."""
    m = llama_attention().compute_metrics(batch_size=1, seq_len=2048, phase="decode", dtype="bf16")
    # qkv: (1 x 4096) @ (4096 x (32 + 2*8)*128 = 6144); core: 4*1*32*1*2048*128; out: 4096x4096
    assert m.matmul_flops_per_chip == 2 * 4096 * 6144 + 4 * 32 * 2048 * 128 + 2 * 4096 * 4096
    # softmax: 5 FLOPs per score, 32 heads x 2048 keys
    assert m.flops_per_chip - m.matmul_flops_per_chip == 5 * 32 * 2048
    # KV cache: 2 * b * s * g * d * e
    assert m.kv_cache_memory_per_chip == 2 * 1 * 2048 * 8 * 128 * 2 == 8_388_608
    # traffic: qkv reads x, W, writes qkv; flash core reads q, K, V (whole cache), writes o;
    # out reads o and W, writes y
    qkv = 2 * (4096 + 4096 * 6144 + 6144)
    core = 2 * (32 * 128 + 2 * 8 * 2048 * 128 + 32 * 128)
    out = 2 * (4096 + 4096 * 4096 + 4096)
    assert m.hbm_bytes_per_chip == qkv + core + out == 92_327_936
    weights = 2 * (4096 * 6144 + 4096 * 4096)
    assert m.weight_memory_per_chip == weights
    assert m.hbm_bytes_per_chip > weights + m.kv_cache_memory_per_chip  # decode reads them all


def test_prefill_kv_cache_and_training_has_none():
    """Prefill writes a cache of s tokens; training keeps none."""
    pre = llama_attention().compute_metrics(batch_size=2, seq_len=512, phase="prefill", dtype="fp8_e4m3")
    assert pre.kv_cache_memory_per_chip == 2 * 2 * 512 * 8 * 128 * 1
    train = llama_attention().compute_metrics(batch_size=2, seq_len=512, phase="training", dtype="bf16")
    assert train.kv_cache_memory_per_chip == 0


def test_causal_counts_only_unmasked_pairs():
    """causal=True: s(s+1)/2 pairs in prefill; s pairs for the one decode query."""
    full = sc.AttentionLayer(hidden_size=64, num_heads=4).compute_metrics(
        batch_size=1, seq_len=8, dtype="fp32")
    causal = sc.AttentionLayer(hidden_size=64, num_heads=4, causal=True).compute_metrics(
        batch_size=1, seq_len=8, dtype="fp32")
    # core: 4 * b * a * pairs * d with d = 16: 64 pairs vs 36 pairs
    assert full.matmul_flops_per_chip - causal.matmul_flops_per_chip == 4 * 4 * (64 - 36) * 16
    dec_full = sc.AttentionLayer(hidden_size=64, num_heads=4).compute_metrics(
        batch_size=1, seq_len=8, phase="decode", dtype="fp32")
    dec_causal = sc.AttentionLayer(hidden_size=64, num_heads=4, causal=True).compute_metrics(
        batch_size=1, seq_len=8, phase="decode", dtype="fp32")
    assert dec_full.flops_per_chip == dec_causal.flops_per_chip


def test_symbolic_causal_prefill_core():
    """Causal prefill core: 4 b a d s(s+1)/2 = 2 b h s (s+1) matmul FLOPs."""
    full = sc.AttentionLayer().compute_metrics()
    causal = sc.AttentionLayer(causal=True).compute_metrics()
    assert_expr_equal(full.matmul_flops_per_chip - causal.matmul_flops_per_chip,
                      4 * b * h * s**2 - 2 * b * h * s * (s + 1))


def test_eager_attention_traffic_includes_score_matrices():
    """Eager attention writes S, reads S, writes P, reads P: 4 b a s^2 e more bytes than flash."""
    eager = sc.AttentionLayer(flash_attention=False).compute_metrics()
    flash = sc.AttentionLayer(flash_attention=True).compute_metrics()
    assert_expr_equal(eager.hbm_bytes_per_chip - flash.hbm_bytes_per_chip, 4 * b * a * s**2 * e)


def test_kv_heads_fewer_than_tp_are_replicated():
    """g = 2 KV heads on t = 8 chips: each chip keeps one whole KV head (Megatron)."""
    layer = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=2,
                                          parallelism={"tensor_parallel": 8})
    m = layer.compute_metrics(batch_size=1, seq_len=1000, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 2 * 1000 * 1 * 128 * 2
    # Q and O: 2 * 4096 * (32/8 * 128); K and V: 2 * 4096 * 128 (one head each)
    assert m.weight_memory_per_chip == (2 * 4096 * 512 + 2 * 4096 * 128) * 2


def test_mqa_is_gqa_with_one_kv_head():
    """MQA (g = 1): K and V projections of one head; KV cache 2 b s d e."""
    m = sc.GroupedQueryAttentionLayer(num_kv_heads=1).compute_metrics(phase="decode")
    assert_expr_equal(m.kv_cache_memory_per_chip, 2 * b * s * (h / a) * e)


def test_tp_all_reduce_in_decode():
    """Decode with TP issues one all-reduce of b*h*e bytes."""
    m = llama_attention(parallelism={"tensor_parallel": 4}).compute_metrics(
        batch_size=16, seq_len=4096, phase="decode", dtype="bf16")
    (ar,) = m.collectives
    assert (ar.kind, ar.axis, ar.group_size, ar.payload_bytes) == ("all_reduce", "tp", 4, 16 * 4096 * 2)
    assert m.comm_bytes_per_chip == 2 * 3 * 16 * 4096 * 2 // 4


def test_ulysses_prefill_all_to_alls():
    """Ulysses sp = 4 with t = 2: two all-to-alls forward (Q, K, V in; output back), each of the
    chip's buffer; the core runs on the whole sequence with a/(t*sp) heads."""
    m = llama_attention(parallelism={"tensor_parallel": 2, "sequence_parallel": 4}).compute_metrics(
        batch_size=1, seq_len=4096, phase="prefill", dtype="bf16")
    T = 4096 // 4  # tokens per chip
    qkv_buffer = T * (16 + 2 * 4) * 128 * 2  # a/t = 16 query heads, g/t = 4 KV heads, d = 128
    out_buffer = T * 16 * 128 * 2
    kinds = [(c.kind, c.axis, c.group_size, c.payload_bytes) for c in m.collectives]
    assert ("all_to_all", "sp", 4, qkv_buffer) in kinds
    assert ("all_to_all", "sp", 4, out_buffer) in kinds
    assert ("all_reduce", "tp", 2, T * 4096 * 2) in kinds
    # core: 4 * b * (32 / 8) * 4096^2 * 128
    qkv_out = 2 * T * 4096 * (24 * 128) + 2 * T * (16 * 128) * 4096
    assert m.matmul_flops_per_chip == qkv_out + 4 * 4 * 4096 * 4096 * 128
    # KV cache: g/t = 4 heads per chip, sequence split 4 ways
    assert m.kv_cache_memory_per_chip == 2 * (4096 // 4) * 4 * 128 * 2


def ulysses_qkv_buffer(a_: int, g_: int, t_: int, u: int, tokens: int, d: int, e_: int) -> int:
    """The bytes one chip puts into the forward Q, K, V all-to-all, counted destination by
    destination. The chips of TP rank i (i = 0 here; all alike) hold query heads
    [i*a/t, (i+1)*a/t); after the all-to-all, Ulysses rank j holds a/(t*u) of them, and query head
    q reads KV head q // (a/g). Each chip sends to each rank j' of its group (itself included)
    its ``tokens`` tokens of Q for j''s query heads and of K and V for every KV head j' needs:
    with fewer KV heads than ranks, a KV head goes to every rank that needs it (DeepSpeed-Ulysses
    replicates it: ``UlyssesSPAttentionHF.kv_replication_factor = world_size // kv_head_count``,
    ``repeat_interleave`` before the all-to-all)."""
    per_rank = a_ // (t_ * u)
    total = 0
    for j in range(u):
        queries = range(j * per_rank, (j + 1) * per_rank)
        kv_needed = {q // (a_ // g_) for q in queries}
        total += tokens * (len(queries) + 2 * len(kv_needed)) * d * e_
    return total


@pytest.mark.parametrize(("heads", "kv", "tp", "sp_"), [
    (32, 8, 4, 4),   # t*sp = 16 > g = 8: each KV head goes to two ranks
    (32, 8, 1, 16),  # no TP, 16 Ulysses ranks, 8 KV heads
    (32, 2, 2, 4),   # 8 ranks over 2 KV heads
    (32, 4, 8, 2),   # g < t: each TP rank keeps one KV head, sent to both Ulysses ranks
    (8, 1, 1, 8),    # MQA
    (32, 8, 2, 4),   # t*sp = g: no replication
    (32, 32, 2, 4),  # MHA
])
def test_ulysses_all_to_all_replicates_kv_heads(heads, kv, tp, sp_):
    """The Q, K, V all-to-all's payload is the brute-force count of ulysses_qkv_buffer: with more
    attention ranks t*sp than KV heads g, K and V travel at one head per rank (t = 4, sp = 4,
    g = 8: 16 heads' worth per TP group, not 8); the backward all-to-all is the same size."""
    s_, d = 4096, 128
    layer = sc.GroupedQueryAttentionLayer(hidden_size=heads * d, num_heads=heads, num_kv_heads=kv,
                                          parallelism={"tensor_parallel": tp, "sequence_parallel": sp_})
    want = ulysses_qkv_buffer(heads, kv, tp, sp_, s_ // sp_, d, 2)
    out = (s_ // sp_) * (heads // tp) * d * 2
    for phase in ("prefill", "training"):
        m = layer.compute_metrics(batch_size=1, seq_len=s_, phase=phase, dtype="bf16")
        a2a = {c.payload_bytes: c.count for c in m.collectives if c.kind == "all_to_all"}
        forward_and_backward = 1 if phase == "prefill" else 2
        assert a2a == {want: forward_and_backward, out: forward_and_backward}


def test_ulysses_decode_splits_keys():
    """Decode with sp = 2: each chip attends to s/2 keys with all its heads, then one all-reduce
    over sp combines the partial outputs."""
    m = llama_attention(parallelism={"sequence_parallel": 2}).compute_metrics(
        batch_size=1, seq_len=2048, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 2 * 1024 * 8 * 128 * 2
    # four sequences: four decode rows reach the one-shot (every sp rank holds all the queries)
    four = llama_attention(parallelism={"sequence_parallel": 2}).compute_metrics(
        batch_size=4, seq_len=2048, phase="decode", dtype="bf16")
    assert four.collectives[0].tokens == 4
    core = 4 * 32 * 1024 * 128
    assert m.matmul_flops_per_chip == 2 * 4096 * 6144 + core + 2 * 4096 * 4096
    (ar,) = m.collectives
    assert (ar.kind, ar.axis, ar.payload_bytes) == ("all_reduce", "sp", 32 * 128 * 2)
    # one decode token's row (32 heads * 128 * 2 bytes): the engine's one-shot reads the rows
    assert ar.tokens == 1


def test_head_dim_may_differ_from_hidden_over_heads():
    """An explicit head_dim sizes Q, K, V and O: Gemma-style a*d != h."""
    m = sc.AttentionLayer(hidden_size=3072, num_heads=16, head_dim=256).compute_metrics(
        batch_size=1, seq_len=1, phase="decode", dtype="bf16")
    # Q, K, V, O each 3072 x 4096 parameters
    assert m.weight_memory_per_chip == 4 * 3072 * 4096 * 2


def test_flash_backward_is_five_halves_of_forward_core():
    """Training core matmul FLOPs: forward + 2.5x (flash) vs forward + 2x (eager)."""
    flash = sc.AttentionLayer(flash_attention=True).compute_metrics(phase="training")
    eager = sc.AttentionLayer(flash_attention=False).compute_metrics(phase="training")
    core = 4 * b * s**2 * h  # 4 b a s^2 d
    assert_expr_equal(flash.matmul_flops_per_chip - eager.matmul_flops_per_chip, core / 2)


@pytest.mark.parametrize("phase", ["prefill", "decode", "training"])
def test_bias_adds_no_matmul_flops(phase):
    """Biases are vector FLOPs (docs/conventions.md §1)."""
    with_bias = sc.AttentionLayer(bias=True).compute_metrics(phase=phase)
    without = sc.AttentionLayer().compute_metrics(phase=phase)
    assert_expr_equal(with_bias.matmul_flops_per_chip, without.matmul_flops_per_chip)


def test_fp8_kv_cache_with_bf16_activations():
    """kv_cache_dtype="fp8_e4m3": the cache holds 1 byte per element (2 b s g d e_kv) and the decode
    core reads it at 1 byte, while Q, O and the projections stay bf16."""
    layer = llama_attention(kv_cache_dtype="fp8_e4m3")
    m = layer.compute_metrics(batch_size=1, seq_len=2048, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 2 * 1 * 2048 * 8 * 128 * 1
    bf16 = llama_attention().compute_metrics(batch_size=1, seq_len=2048, phase="decode", dtype="bf16")
    # the core's K and V reads halve: 2 * 8 * 2048 * 128 elements at 2 -> 1 byte
    assert bf16.hbm_bytes_per_chip - m.hbm_bytes_per_chip == 2 * 8 * 2048 * 128
    assert m.matmul_flops_per_chip == bf16.matmul_flops_per_chip
    with pytest.raises(ValueError, match="unknown data type"):
        llama_attention(kv_cache_dtype="fp7")

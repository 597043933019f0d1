"""Chunked local attention (Llama 4's ``attention_chunk_size``): the layers' ``attention_chunk``.

transformers' ``chunked_causal_mask`` (masking_utils.py) keeps key j for query p when
``j <= p`` and ``j // c == p // c``: each query sees the keys of its own chunk of c positions up
to itself. So, unlike a sliding window, the count restarts at every chunk boundary. A decode step
at length s (the new token at position s - 1) reads the ``((s - 1) mod c) + 1`` keys of its
chunk; the KV cache keeps one chunk, ``min(s, c)`` tokens.
"""

from __future__ import annotations

import pytest
import sympy as sp

import symcost as sc
from symcost import symbols as S
from symcost.core.ops import AttentionCore, chunk_keys_read, chunk_pairs

s, c = S.seq_len, S.attention_chunk


def mask_pairs(q_len: int, kv_len: int, chunk: int) -> int:
    """Pairs kept, counted one by one: query i sits at position kv_len - q_len + i."""
    kept = 0
    for i in range(q_len):
        pos = kv_len - q_len + i
        kept += sum(1 for j in range(kv_len) if j <= pos and j // chunk == pos // chunk)
    return kept


def mask_keys(q_len: int, kv_len: int, chunk: int) -> int:
    """Keys some query sees: from the smallest visible key to the last position."""
    seen = {j for i in range(q_len) for j in range(kv_len)
            if j <= kv_len - q_len + i and j // chunk == (kv_len - q_len + i) // chunk}
    return kv_len - min(seen)


CASES = [(1, 1), (1, 9), (1, 8), (4, 4), (8, 8), (9, 9), (12, 12), (17, 17), (3, 10), (9, 12), (5, 21), (2, 33)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 8, 13])
@pytest.mark.parametrize(("q_len", "kv_len"), CASES)
def test_chunk_pairs_and_keys_match_the_mask(q_len, kv_len, chunk):
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=q_len, kv_len=kv_len, head_dim=1,
                         causal=True, attention_chunk=chunk)
    assert core.pairs == mask_pairs(q_len, kv_len, chunk)
    assert core.keys_read == mask_keys(q_len, kv_len, chunk)


def test_hand_derived_prefill_counts():
    """s = q c + r: q c(c+1)/2 + r(r+1)/2. s = 20, c = 8: 2 x 36 + 10 = 82 (a causal square keeps 210,
    a sliding window of 8: 36 + 12 x 8 = 132)."""
    assert chunk_pairs(sp.Integer(20), sp.Integer(20), sp.Integer(8)) == 2 * 36 + 10 == 82
    # Llama 4 at 32,768 tokens (4 chunks of 8,192): 4 x 8192 x 8193 / 2 = 134,234,112
    assert chunk_pairs(sp.Integer(32768), sp.Integer(32768), sp.Integer(8192)) == 134_234_112


def test_symbolic_counts_substitute_to_the_mask():
    pairs = chunk_pairs(s, s, c)
    decode = chunk_keys_read(sp.Integer(1), s, c)
    for s_, c_ in [(3, 7), (7, 7), (8, 7), (20, 6), (64, 1), (65, 8)]:
        assert pairs.xreplace({s: s_, c: c_}) == mask_pairs(s_, s_, c_)
        assert decode.xreplace({s: s_, c: c_}) == mask_keys(1, s_, c_)


def attention(**kw):
    # Llama-4-Scout's attention: h 5120, 40 query heads, 8 KV heads of 128
    return sc.GroupedQueryAttentionLayer(hidden_size=5120, num_heads=40, num_kv_heads=8, head_dim=128, **kw)


def test_decode_reads_the_current_chunk_and_caches_one_chunk():
    """At s = 8192 + 100 the new token is the 100th of chunk 2: 100 keys read and scored
    (4 x b x a x d x 100 core FLOPs); the cache holds min(s, c) = 8192 tokens: 2 x 8 x 128 x 2 x
    8192 bytes per sequence. At s = 2 x 8192 the last token of chunk 2 reads all 8192."""
    kw = dict(batch_size=1, phase="decode", dtype="bf16")
    chunked = attention(attention_chunk=8192, causal=True)
    full = attention(causal=True)
    m = chunked.compute_metrics(seq_len=8292, **kw)
    f = full.compute_metrics(seq_len=8292, **kw)
    assert f.matmul_flops_per_chip - m.matmul_flops_per_chip == 4 * 40 * 128 * (8292 - 100)
    assert m.kv_cache_memory_per_chip == 2 * 8 * 128 * 2 * 8192
    end = chunked.compute_metrics(seq_len=16384, **kw)
    assert end.matmul_flops_per_chip == attention(causal=True).compute_metrics(seq_len=8192, **kw).matmul_flops_per_chip
    assert chunked.compute_metrics(seq_len=1000, **kw).kv_cache_memory_per_chip == 2 * 8 * 128 * 2 * 1000


@pytest.mark.parametrize("phase", ["prefill", "training"])
def test_causal_prefill_counts_the_pairs_inside_chunks(phase):
    """s = 48, c = 16 (3 whole chunks): 3 x 136 = 408 pairs against the square's 1176; the core's
    matmul FLOPs are 4 b a d x pairs (training 3.5x with flash)."""
    kw = dict(hidden_size=64, num_heads=4, num_kv_heads=2, causal=True)
    chunked = sc.GroupedQueryAttentionLayer(attention_chunk=16, **kw).compute_metrics(
        batch_size=2, seq_len=48, phase=phase, dtype="fp32")
    full = sc.GroupedQueryAttentionLayer(**kw).compute_metrics(batch_size=2, seq_len=48, phase=phase, dtype="fp32")
    factor = sp.Rational(7, 2) if phase == "training" else 1
    dropped = mask_pairs(48, 48, 10**9) - mask_pairs(48, 48, 16)
    assert dropped == 1176 - 408
    assert full.matmul_flops_per_chip - chunked.matmul_flops_per_chip == factor * 4 * 2 * 4 * 16 * dropped


def test_non_causal_counting_keeps_the_square():
    """causal=False (eager kernels, FlopCounterMode): every pair of the s x s score matrix."""
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=12, kv_len=12, head_dim=1, attention_chunk=4)
    assert core.pairs == 144


def test_window_and_chunk_together_are_refused():
    with pytest.raises(ValueError, match="sliding window or chunked attention, not both"):
        sc.GroupedQueryAttentionLayer(hidden_size=64, num_heads=4, num_kv_heads=2, window=8, attention_chunk=8)


def test_weightless_qk_norm_has_no_parameters_and_the_same_flops():
    kw = dict(hidden_size=64, num_heads=4, num_kv_heads=2)
    plain = sc.GroupedQueryAttentionLayer(**kw)
    weighted = sc.GroupedQueryAttentionLayer(qk_norm=True, **kw)
    weightless = sc.GroupedQueryAttentionLayer(qk_norm="weightless", **kw)
    assert weightless.num_params == plain.num_params == weighted.num_params - 2 * 16
    m = dict(batch_size=1, seq_len=8, phase="prefill", dtype="bf16")
    assert weightless.compute_metrics(**m).flops_per_chip == weighted.compute_metrics(**m).flops_per_chip


@pytest.mark.parametrize(("total", "piece", "chunk"), [(37, 5, 8), (64, 8, 8), (50, 12, 7), (30, 30, 4), (9, 1, 4)])
def test_prefill_pieces_keep_the_whole_prefills_pairs(total, piece, chunk):
    """A chunked prefill (pieces of ``piece`` queries after the earlier ones' keys) scores exactly the
    pairs of the whole prefill, and each piece reads the keys its mask reaches."""
    done, pairs = 0, 0
    while done < total:
        q = min(piece, total - done)
        core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=q, kv_len=done + q, head_dim=1, causal=True,
                             attention_chunk=chunk)
        assert core.keys_read == mask_keys(q, done + q, chunk)
        pairs += core.pairs
        done += q
    assert pairs == mask_pairs(total, total, chunk)


def test_speculative_verification_reads_the_current_chunk():
    """Verifying k = 3 drafted tokens at s = 8192 + 10 (queries at positions 8201..8204, all in
    chunk 2): the core reads the 13 keys of that chunk, not the 8,205 a global layer reads."""
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=4, kv_len=8205, head_dim=1, causal=True,
                         attention_chunk=8192)
    assert core.keys_read == 13 == mask_keys(4, 8205, 8192)
    assert core.pairs == 10 + 11 + 12 + 13

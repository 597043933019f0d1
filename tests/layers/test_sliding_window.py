"""Sliding-window attention (Mistral-7B-v0.1's ``sliding_window``): the layers' ``window`` field.

Each query attends at most ``window`` keys: itself and the ``window - 1`` before it (HF
transformers' sliding-window mask, Mistral's rolling-buffer cache). So the KV cache holds
``min(s, window)`` tokens, one decode step reads and scores ``min(s, window)`` keys, and under
``causal=True`` prefill/training count only the (query, key) pairs inside the causal window.
"""

from __future__ import annotations

import pytest
import sympy as sp

import symcost as sc
from symcost import symbols as S
from symcost.core.ops import AttentionCore
from symcost.testing import assert_expr_equal

b, s, h, a, g = S.batch_size, S.seq_len, S.hidden_size, S.num_heads, S.num_kv_heads
w = S.window


def brute_force_pairs(q_len: int, kv_len: int, window: int | None, causal: bool) -> int:
    """(query, key) pairs the mask keeps, counted one by one: query i sits at position
    kv_len - q_len + i and, causally, sees keys max(0, pos - window + 1) .. pos."""
    kept = 0
    for i in range(q_len):
        pos = kv_len - q_len + i
        for j in range(kv_len):
            if not causal:
                kept += 1
            elif j <= pos and (window is None or j > pos - window):
                kept += 1
    return kept


@pytest.mark.parametrize("window", [1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize(("q_len", "kv_len"), [(1, 1), (1, 9), (4, 4), (8, 8), (12, 12), (3, 10), (9, 12)])
def test_causal_window_pairs_match_brute_force(q_len, kv_len, window):
    """The closed form of the core's pairs equals a pair-by-pair count of the mask."""
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=q_len, kv_len=kv_len, head_dim=1,
                         causal=True, window=window)
    assert core.pairs == brute_force_pairs(q_len, kv_len, window, causal=True)


def test_non_causal_counting_keeps_the_full_score_matrix():
    """causal=False (eager kernels, FlopCounterMode): every pair is scored, window or not."""
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=12, kv_len=12, head_dim=1, window=4)
    assert core.pairs == 144 == brute_force_pairs(12, 12, 4, causal=False)


def test_symbolic_window_pairs_use_min():
    """Symbolic s and w: s queries over s keys keep m(m+1)/2 + (s - m) w pairs, m = Min(s, w);
    substituted on both sides of s = w it is the brute-force count."""
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=s, kv_len=s, head_dim=1,
                         causal=True, window=w)
    assert core.pairs.has(sp.Min)
    for s_, w_ in [(3, 7), (7, 7), (20, 6), (64, 1)]:
        assert core.pairs.xreplace({s: s_, w: w_}) == brute_force_pairs(s_, s_, w_, causal=True)


def mistral_attention(**kw):
    # Mistral-7B-v0.1: h = 4096, 32 query heads, 8 KV heads of 128, sliding_window 4096
    return sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8, window=4096, **kw)


def test_kv_cache_is_capped_at_the_window():
    """One layer, b = 1, bf16, 32,768 tokens: 2 x 8 x 128 x 2 bytes x 4096 = 16,777,216 bytes,
    not 8x that; below the window it is unchanged."""
    at_32k = mistral_attention().compute_metrics(batch_size=1, seq_len=32768, phase="decode", dtype="bf16")
    assert at_32k.kv_cache_memory_per_chip == 2 * 8 * 128 * 2 * 4096 == 16_777_216
    at_1k = mistral_attention().compute_metrics(batch_size=1, seq_len=1024, phase="decode", dtype="bf16")
    assert at_1k.kv_cache_memory_per_chip == 2 * 8 * 128 * 2 * 1024


def test_symbolic_kv_cache_uses_min():
    """2 b Min(s, w) g d e, symbolic in every size."""
    layer = sc.GroupedQueryAttentionLayer(window=w)
    m = layer.compute_metrics(phase="decode")
    d = h / a
    assert_expr_equal(m.kv_cache_memory_per_chip, 2 * b * sp.Min(s, w) * g * d * S.dtype_bytes)


def test_decode_work_is_capped_at_the_window():
    """A decode step past the window reads and scores exactly what one at s = window does."""
    for causal in (False, True):
        past = mistral_attention(causal=causal).compute_metrics(batch_size=2, seq_len=32768, phase="decode",
                                                                dtype="bf16")
        at = mistral_attention(causal=causal).compute_metrics(batch_size=2, seq_len=4096, phase="decode",
                                                              dtype="bf16")
        assert past.flops_per_chip == at.flops_per_chip
        assert past.hbm_bytes_per_chip == at.hbm_bytes_per_chip
    # and the core itself: 4 b a d min(s, w) = 4 * 2 * 32 * 128 * 4096 matmul FLOPs
    plain = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8).compute_metrics(
        batch_size=2, seq_len=32768, phase="decode", dtype="bf16")
    assert plain.matmul_flops_per_chip - past.matmul_flops_per_chip == 4 * 2 * 32 * 128 * (32768 - 4096)


@pytest.mark.parametrize("phase", ["prefill", "training"])
def test_causal_window_prefill_counts_pairs_inside_the_window(phase):
    """Prefill of s = 48 with w = 16, causal: the core's matmul FLOPs are 4 b a d x pairs
    (training: 3.5x with flash, forward + 2x backward + recomputed Q K^T), pairs by brute force."""
    kw = dict(hidden_size=64, num_heads=4, num_kv_heads=2, causal=True)
    windowed = sc.GroupedQueryAttentionLayer(window=16, **kw).compute_metrics(
        batch_size=2, seq_len=48, phase=phase, dtype="fp32")
    full = sc.GroupedQueryAttentionLayer(**kw).compute_metrics(batch_size=2, seq_len=48, phase=phase, dtype="fp32")
    factor = sp.Rational(7, 2) if phase == "training" else 1
    dropped = brute_force_pairs(48, 48, None, True) - brute_force_pairs(48, 48, 16, True)
    assert dropped == 1176 - 648  # 48*49/2 - (16*17/2 + 32*16)
    assert full.matmul_flops_per_chip - windowed.matmul_flops_per_chip == factor * 4 * 2 * 4 * 16 * dropped


def test_window_at_or_above_the_sequence_changes_nothing():
    """A window no shorter than the sequence is no window."""
    kw = dict(hidden_size=64, num_heads=4, num_kv_heads=2, causal=True)
    for phase in ("prefill", "decode", "training"):
        with_w = sc.GroupedQueryAttentionLayer(window=64, **kw).compute_metrics(
            batch_size=1, seq_len=64, phase=phase, dtype="bf16")
        without = sc.GroupedQueryAttentionLayer(**kw).compute_metrics(batch_size=1, seq_len=64, phase=phase,
                                                                     dtype="bf16")
        assert with_w.flops_per_chip == without.flops_per_chip
        assert with_w.kv_cache_memory_per_chip == without.kv_cache_memory_per_chip


def test_window_must_be_positive():
    """window = 0 is an error naming the field."""
    with pytest.raises(ValueError, match="window must be positive"):
        sc.GroupedQueryAttentionLayer(hidden_size=64, num_heads=4, num_kv_heads=2, window=0)


def test_window_with_ulysses_splits_the_capped_cache():
    """Under a sequence degree of 2 the capped cache is split in two."""
    layer = sc.GroupedQueryAttentionLayer(hidden_size=64, num_heads=4, num_kv_heads=2, window=8,
                                          parallelism={"sequence_parallel": 2})
    m = layer.compute_metrics(batch_size=1, seq_len=32, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 2 * 8 * 2 * 16 * 2 / 2


# -- PyTorch's own counters ------------------------------------------------------------------
# NB: FlopCounterMode counts the whole SDPA (every (query, key) pair) whatever the mask, so it
# checks symcost's causal=False count of a windowed prefill, and the decode step over a
# rolling-buffer cache of `window` keys; it cannot see the pairs causal=True discounts (those
# are checked against the brute-force count above).

def torch_attention_flops(b_, q_len, kv_len, h_, a_, g_, mask):
    """FlopCounterMode's count of q/k/v/o projections over q_len new tokens and an eager core
    (Q K^T, masked softmax, P V as bmms) over kv_len keys (the cache plus the new tokens)."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    d_ = h_ // a_
    q_proj, k_proj, v_proj = nn.Linear(h_, a_ * d_, bias=False), nn.Linear(h_, g_ * d_, bias=False), \
        nn.Linear(h_, g_ * d_, bias=False)
    o_proj = nn.Linear(a_ * d_, h_, bias=False)
    x = torch.randn(b_, q_len, h_)
    cache = torch.randn(b_, g_, kv_len - q_len, d_)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        q = q_proj(x).view(b_, q_len, a_, d_).transpose(1, 2)
        k = torch.cat([cache, k_proj(x).view(b_, q_len, g_, d_).transpose(1, 2)], dim=2)
        v = torch.cat([cache, v_proj(x).view(b_, q_len, g_, d_).transpose(1, 2)], dim=2)
        k, v = k.repeat_interleave(a_ // g_, dim=1), v.repeat_interleave(a_ // g_, dim=1)
        scores = (q @ k.transpose(-2, -1)) * d_ ** -0.5  # the eager core: every pair scored
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        o = scores.softmax(dim=-1) @ v
        o_proj(o.transpose(1, 2).reshape(b_, q_len, a_ * d_))
    return counter.get_total_flops()


def sliding_mask(q_len, kv_len, window):
    torch = pytest.importorskip("torch")
    i = torch.arange(kv_len - q_len, kv_len)[:, None]
    j = torch.arange(kv_len)[None, :]
    return (j <= i) & (j > i - window)


def test_windowed_prefill_matches_flop_counter_mode_without_discount():
    """s = 32, w = 8: torch counts the full masked SDPA, as symcost's causal=False does."""
    flops = torch_attention_flops(2, 32, 32, 64, 4, 2, sliding_mask(32, 32, 8))
    layer = sc.GroupedQueryAttentionLayer(hidden_size=64, num_heads=4, num_kv_heads=2, window=8)
    m = layer.compute_metrics(batch_size=2, seq_len=32, phase="prefill", dtype="fp32")
    assert m.matmul_flops_per_chip == flops


def test_windowed_decode_matches_flop_counter_mode_on_a_rolling_cache():
    """A decode step at s = 40 with w = 8: torch's step over the 8 cached keys (7 + the new one)."""
    flops = torch_attention_flops(2, 1, 8, 64, 4, 2, None)
    for causal in (False, True):
        layer = sc.GroupedQueryAttentionLayer(hidden_size=64, num_heads=4, num_kv_heads=2, window=8, causal=causal)
        m = layer.compute_metrics(batch_size=2, seq_len=40, phase="decode", dtype="fp32")
        assert m.matmul_flops_per_chip == flops


# -- queries after cached keys: a chunk, a verification (issue 20, items 1 and 2) -------------------

def brute_force_keys(q_len: int, kv_len: int, window: int) -> int:
    """Keys some query's window reaches, counted one by one: query i at position
    kv_len - q_len + i reaches keys pos - window + 1 .. pos (those that exist)."""
    seen = set()
    for i in range(q_len):
        pos = kv_len - q_len + i
        seen.update(j for j in range(kv_len) if pos - window < j <= pos)
    return len(seen)


@pytest.mark.parametrize("window", [1, 2, 5, 8])
@pytest.mark.parametrize(("q_len", "kv_len"), [(1, 1), (1, 9), (2, 9), (3, 10), (4, 20), (8, 8), (9, 12)])
def test_windowed_core_reads_only_the_keys_its_windows_reach(q_len, kv_len, window):
    """q queries after kv - q cached keys read min(kv, q + w - 1) keys of K and V (a rolling
    buffer: the first query's window starts w - 1 keys before it), by brute force; without the
    causal discount every query is scored against all of them."""
    keys = brute_force_keys(q_len, kv_len, window)
    for causal in (False, True):
        core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=q_len, kv_len=kv_len, head_dim=1,
                             dtype_bytes=1, causal=causal, window=window)
        assert core.kv_bytes == 2 * keys  # K and V: one byte per element, d = 1
        assert core.pairs == (brute_force_pairs(q_len, kv_len, window, True) if causal else q_len * keys)
        assert core.score_elements == q_len * keys

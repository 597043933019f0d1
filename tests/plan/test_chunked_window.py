"""Chunked prefill of sliding-window models (issue 20, item 2; docs/conventions.md §16, item 17).

Chunk i of a chunked prefill runs its q tokens after k = i*C earlier ones. Each window layer's
attention core then reads the keys some query's window reaches, min(k + q, q + w - 1), and with
``causal=True`` scores the pairs inside each query's window, F(k + q) - F(k) with
F(n) = sum_{j=1..n} min(j, w). Both are piecewise in k, so the chunks' TTFT is checked here
against a chunk-by-chunk count: the pairs and keys counted one by one, each chunk's core timed by
hand as max(compute, memory).
"""

from __future__ import annotations

import pytest
import sympy as sp

from symcost import hardware, models
from symcost.core.ops import VECTOR_FLOPS
from symcost.models.model import Model

H100 = hardware.get("H100_SXM")


def brute_pairs(q: int, k: int, w: int) -> int:
    """Causal (query, key) pairs inside the window, one by one: query i sits at position k + i
    and sees the keys max(0, k + i - w + 1) .. k + i."""
    return sum(1 for i in range(q) for j in range(k + q) if k + i - w < j <= k + i)


def brute_keys(q: int, k: int, w: int) -> int:
    """Keys some query's window reaches, one by one."""
    return len({j for i in range(q) for j in range(k + q) if k + i - w < j <= k + i})


def core_time(chip, q: int, k: int, w: int, *, b: int, heads: int, kv_heads: int, d: int, e: int):
    """One window layer's flash core (prefill, causal) for q queries after k keys, by hand:
    compute 4 b a d pairs at the attention peak plus softmax's 5 FLOPs per pair at the vector rate
    and one exponential per pair at F_exp, at least N min(64 min(k + q, w), b a pairs) / (b a pairs)
    times that (the block of the last 64 queries on one SM; docs/conventions.md §3, §17); memory Q and O (b a q d) plus
    K and V of the keys read (b g keys d), e bytes each, at the streaming kernels' HBM fraction (a
    prefill chunk is context attention, one token or many). Its fixed kernel time and its pass over
    the q new tokens (RoPE, the KV-cache write) are the same for every k and cancel."""
    pairs, keys = brute_pairs(q, k, w), brute_keys(q, k, w)
    compute = (4 * b * heads * pairs * d / chip.attention_peak("bf16")
               + VECTOR_FLOPS["softmax"] * b * heads * pairs / chip.vector_flops)
    if chip.attention_exp_rate is not None:  # one exponential per scored pair
        compute += b * heads * pairs / chip.attention_exp_rate
    if chip.compute_units is not None:
        # at least the longest block's time: 64 queries (kernels.PREFILL_TILE_Q) against the
        # min(k + q, w) keys the last query's window holds, one block on one of the N SMs, against
        # the whole core's b a pairs spread over N; no block holds more than those b a pairs
        block = min(64 * min(k + q, w), b * heads * pairs)
        compute *= sp.Max(1, sp.Rational(chip.compute_units * block, b * heads * pairs))
    bandwidth = chip.effective_hbm_bandwidth
    memory = e * b * (2 * heads * q * d + 2 * kv_heads * keys * d) / bandwidth
    return sp.Max(compute, memory)


def expected_ttft(model: Model, chip, b: int, s: int, C: int, w: int, **dims) -> sp.Expr:
    """The chunks one by one: chunk i of q_i tokens costs an unchunked prefill of q_i tokens (its
    own TTFT, the engine's step included), less its LM head unless it is the last, plus for each
    of the L window layers its core's time after i*C earlier keys less the time after none."""
    layers = model.num_layers
    sizes = [min(C, s - start) for start in range(0, s, C)]
    alone = {q: model.inference_step(chip, b, q) for q in set(sizes)}
    lm_head = {name: m for name, _, m in alone[C].prefill_rows}["lm_head"].latency
    total = sp.Integer(0)
    for i, q in enumerate(sizes):
        extra = core_time(chip, q, i * C, w, b=b, **dims) - core_time(chip, q, 0, w, b=b, **dims)
        total += sp.sympify(alone[q].ttft) + layers * extra
    return total - (len(sizes) - 1) * sp.sympify(lm_head)


def tiny(window: int) -> Model:
    return Model.llama(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=256,
                       intermediate_size=128, window=window)


@pytest.mark.parametrize("chip", [H100.ideal(), H100], ids=["ideal", "realistic"])
@pytest.mark.parametrize(("s", "C", "w"), [
    (100, 8, 24),   # C < w: chunks up to k = w - C grow, then every chunk costs q*w pairs
    (100, 7, 24),   # the chunk at k = 21 falls between w - q = 17 and w - 1 = 23
    (100, 30, 24),  # chunks longer than the window
    (96, 24, 24),   # C = w
    (41, 1, 8),     # one-token chunks: 41 of them
    (200, 16, 200),  # a window as long as the prompt: no clipping at all
])
def test_chunked_ttft_matches_a_chunk_by_chunk_count(chip, s, C, w):
    """TTFT of a windowed prompt in chunks equals the chunks' costs summed one by one, the pairs
    and keys counted one by one (b = 2, h = 64, a = 4, g = 2, d = 16, bf16, 2 layers)."""
    model = tiny(w)
    got = model.inference_step(chip, 2, s, prefill_chunk=C).ttft
    want = expected_ttft(model, chip, 2, s, C, w, heads=4, kv_heads=2, d=16, e=2)
    assert sp.sympify(got) == want


def test_mistral_chunks_past_the_window_by_hand():
    """Mistral-7B (w = 4096), batch 1, 16,384 tokens in 4 chunks of C = 4096, ideal H100. Chunk 0
    alone scores C(C+1)/2 pairs per head; chunks 1..3 sit past the window and score C*w = C^2,
    C(C-1)/2 more each. The cores stay compute-bound (at most 2*8*(C + w - 1)*128*2 = 33.5 MB of
    K and V against 4*32*128*C^2 = 275 GFLOP), so the extra time is those pairs' matmul FLOPs
    4*32*128 and softmax FLOPs 5*32 per pair, in 32 layers, and only the last chunk computes
    logits."""
    model, chip, C = models.get("mistral-7b"), H100.ideal(), 4096
    chunked = model.inference_step(chip, 1, 4 * C, prefill_chunk=C)
    one = model.inference_step(chip, 1, C)
    lm_head = {name: m for name, _, m in one.prefill_rows}["lm_head"].latency
    pairs = 3 * C * (C - 1) // 2
    extra = 32 * (4 * 32 * 128 * pairs / chip.attention_peak("bf16")
                  + VECTOR_FLOPS["softmax"] * 32 * pairs / chip.vector_flops)
    assert chunked.ttft == 4 * one.ttft - 3 * lm_head + extra
    assert chunked.num_prefill_chunks == 4


@pytest.mark.parametrize("name", ["mistral-7b", "phi-3-mini"])
def test_chunks_past_the_window_all_cost_the_same(name):
    """Realistic H100: once the chunks start past the window (k >= w - 1) each costs the same, so
    the TTFT grows by one chunk's cost per chunk (the last chunk's logits in every TTFT)."""
    model = models.get(name)
    C = 2048
    ttft = [sp.sympify(model.inference_step("H100_SXM", 2, n * C, prefill_chunk=C).ttft) for n in (4, 5, 6)]
    assert ttft[2] - ttft[1] == ttft[1] - ttft[0] > 0


def test_hybrid_local_global_model_in_chunks():
    """llama-3-8b with a 4096 window on every other layer (global_every=2): the chunked TTFT lies
    between the model without windows and the model windowed everywhere."""
    base = models.get("llama-3-8b")
    step = {label: sp.sympify(m.inference_step("H100_SXM", 1, 32768, prefill_chunk=8192).ttft)
            for label, m in (("none", base), ("hybrid", base.with_window(4096, global_every=2)),
                             ("all", base.with_window(4096)))}
    assert step["all"] < step["hybrid"] < step["none"]


@pytest.mark.parametrize(("chunk", "window"), [(1000, None), (1000, 512), (1024, None), (1024, 512), (300, 128)])
def test_b200_chunks_after_cached_keys_sum_one_by_one(chunk, window):
    """Review finding: on B200 a chunk's whole 128 x 128 tiles follow its cached keys
    (kernels.whole_tile_pairs), a count affine in them only in steps of 128 and without a window;
    the closed-form sum over chunks (inference.chunk_attention_time) raised for chunks of 1,000
    tokens. Its definition: the six chunks' cores after 0, C, ..., 5C cached keys less six alone."""
    import dataclasses

    from symcost.core.dtypes import DataType
    from symcost.core.ops import AttentionCore
    from symcost.hardware.timing import op_time
    from symcost.plan.inference import chunk_attention_time

    chip, bf16 = hardware.get("B200"), DataType.BF16
    peak = chip.effective_peak(bf16)
    core = AttentionCore("c", batch=1, heads=32, kv_heads=8, q_len=chunk, kv_len=chunk, head_dim=128, causal=True,
                         decode=False, window=window)
    breakdown = type("Metrics", (), {"ops": [(core, 1)]})
    got = chunk_attention_time([("attention", 1, breakdown)], 0, 6, chunk, chip, peak, bf16)
    alone = op_time(core, chip, peak, bf16).time
    want = sp.Add(*(op_time(dataclasses.replace(core, kv_len=chunk + i * chunk), chip, peak, bf16).time - alone
                    for i in range(6)))
    assert sp.sympify(got) == want

"""The kernel classes' own terms (symcost/hardware/kernels.py, docs/conventions.md §17), by hand on
a chip whose fields are round numbers: a GEMM's floor and its quantizing pass, prefill attention's
pass over the new tokens and its floor, decode attention's floor (and the grouped kernel's over an 8-bit
cache), NCCL's low-latency protocol, an
engine's own all-reduce and its one-shot/two-shot switch, engine profiles' chip fields, the wire
format of an FP8 model's TP collectives, and the kernel registry."""

import dataclasses
from fractions import Fraction

import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import symcost as sc
from symcost import hardware
from symcost.core.ops import AttentionCore, Collective, Matmul
from symcost.errors import ConfigError
from symcost.hardware import Hardware, Runtime
from symcost.hardware.kernels import KERNELS, kernel
from symcost.hardware.timing import collective_algorithms, collective_time, op_time

US = Fraction(1, 10**6)

# 100 TFLOP/s bf16, 200 fp8; 1 TB/s HBM; 100 GB/s scale-up; no tiles (compute_units unset).
CHIP = Hardware(
    name="round-kernels", peak_flops={"bf16": 10**14, "fp8_e4m3": 2 * 10**14}, vector_flops=10**13,
    hbm_capacity=10**11, hbm_bandwidth=10**12, scale_up_bandwidth=10**11, scale_up_domain=8,
    scale_out_bandwidth=10**10, collective_latency=US,
    matmul_efficiency=Fraction(1, 2), matmul_efficiency_8bit=Fraction(1, 4), memory_efficiency=Fraction(1, 2),
    kernel_time=US, gemm_time=2 * US, gemm_time_8bit=10 * US, quantize_bytes_8bit=8,
    gemm_memory_efficiency=Fraction(4, 5), attention_efficiency=Fraction(1, 2), attention_time=15 * US,
    attention_io_efficiency=Fraction(1, 4), attention_memory_efficiency=Fraction(1, 2), attention_decode_time=5 * US,
    collective_base_latency=10 * US, ll_base_latency=5 * US, ll_latency=Fraction(1, 2) * US,
    ll_efficiency=Fraction(1, 4), custom_allreduce_latency=3 * US, custom_allreduce_efficiency=Fraction(1, 2),
    runtime=Runtime(name="round-custom", cuda_graphs=True, allreduce="custom"))
BF16, FP8 = sc.DataType.BF16, sc.DataType.FP8_E4M3


def test_bf16_gemm_floor_and_its_own_bandwidth():
    """m = 8, n = k = 4096, bf16: compute 2*8*4096^2 = 268,435,456 FLOPs at 5*10^13 = 5.37 us;
    bytes 2 (8*4096 + 4096^2 + 8*4096) = 33,685,504 at 10^12 * 4/5 = 42.1 us (GEMMs stream their
    weights at gemm_memory_efficiency, not memory_efficiency); + gemm_time 2 us; no quantizing pass."""
    mm = Matmul("w", m=8, n=4096, k=4096, dtype_bytes=2)
    t = op_time(mm, CHIP, CHIP.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(268435456, 5 * 10**13)
    assert t.memory == sp.Rational(33685504 * 5, 4 * 10**12)
    assert t.serial == 0 and t.overhead == 2 * US
    assert t.time == sp.Rational(33685504 * 5, 4 * 10**12) + 2 * US


def test_fp8_gemm_quantizes_its_input_in_a_pass_of_its_own():
    """The same GEMM in FP8 (TensorRT-LLM quantizes the bf16 activation before each FP8 GEMM): 8 bytes
    per input element over HBM, 8 * 8 * 4096 = 262,144 B at 10^12 = 0.262 us, not overlapped; its
    floor gemm_time_8bit 10 us; compute at 2*10^14 * 1/4; bytes 8*4096 + 4096^2 + 8*4096 (1 B each)."""
    mm = Matmul("w", m=8, n=4096, k=4096, dtype_bytes=1)
    t = op_time(mm, CHIP, CHIP.effective_peak(FP8), FP8)
    assert t.serial == sp.Rational(8 * 8 * 4096, 10**12)
    assert t.overhead == 10 * US
    assert t.compute == sp.Rational(268435456, 5 * 10**13)
    assert t.time == sp.Rational(16842752 * 5, 4 * 10**12) + sp.Rational(262144, 10**12) + 10 * US


def test_an_unset_class_floor_is_the_kernel_time():
    """A chip file with only kernel_time (a user's chip) keeps a floor on every kernel class."""
    plain = CHIP.with_efficiency(gemm_time=None, gemm_time_8bit=None, attention_time=None, attention_decode_time=None)
    assert plain.gemm_time_for(BF16) == plain.gemm_time_for(FP8) == US
    assert plain.prefill_attention_time == plain.decode_attention_time == US


def test_prefill_attention_pass_over_the_new_tokens_and_floor():
    """Causal flash prefill, b 1, 8 heads of 128 (8 KV heads), 1024 tokens, bf16:
    pairs 1024*1025/2 = 524,800; compute 4*8*128*524,800 = 2,149,580,800 FLOPs at 10^14 * 1/2 =
    42.99 us, softmax 5 * 8 * 524,800 = 20,992,000 at 10^13 = 2.10 us; bytes Q, K, V, O 4 * 2 * 8 *
    1024 * 128 = 8,388,608 at 0.5 TB/s = 16.8 us; the separate pass over the same 8,388,608 bytes
    at 10^12 * 1/4 = 33.55 us; floor 15 us. After 3072 cached keys the pass still touches only the
    1024 new tokens' Q, K, V, O."""
    core = AttentionCore("c", batch=1, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=128, causal=True,
                         decode=False)
    t = op_time(core, CHIP, CHIP.effective_peak(BF16), BF16)
    assert core.kernel == "attn.prefill"
    assert t.compute == sp.Rational(2149580800, 5 * 10**13) + sp.Rational(20992000, 10**13)
    assert t.serial == sp.Rational(8388608 * 4, 10**12)
    assert t.time == t.compute + t.serial + 15 * US
    later = op_time(dataclasses.replace(core, kv_len=4096), CHIP, CHIP.effective_peak(BF16), BF16)
    assert later.serial == t.serial


def test_prefill_runs_at_least_as_long_as_its_longest_thread_block():
    """On a chip of 148 SMs, a causal prefill of one sequence and one head, 16,383 tokens of 128:
    blocks of 64 queries (kernels.PREFILL_TILE_Q), the last one scores 64 * 16,383 of the 16,383 *
    16,384 / 2 pairs; at least 148 * 64 * 16,383 / (16,383 * 16,384 / 2) = 2 * 148 * 64 / 16,384 =
    37/32 times the even share over the SMs: compute 4 * 128 * 134,209,536 = 68,715,282,432 FLOPs
    at 5 * 10^13 plus softmax 5 * 134,209,536 = 671,047,680 at 10^13, times 37/32. Two sequences of
    4 heads: 2 * 148 * 64 / (8 * 16,384) = 37/256 < 1, the even share (factor 1); without an SM
    count, no factor."""
    chip = CHIP.with_efficiency(compute_units=148)
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=16383, kv_len=16383, head_dim=128, causal=True,
                         decode=False)
    even = sp.Rational(68715282432, 5 * 10**13) + sp.Rational(671047680, 10**13)
    assert op_time(core, chip, chip.effective_peak(BF16), BF16).compute == even * sp.Rational(37, 32)
    wide = dataclasses.replace(core, batch=2, heads=4, kv_heads=4)
    assert op_time(wide, chip, chip.effective_peak(BF16), BF16).compute == 8 * even
    assert op_time(core, CHIP, CHIP.effective_peak(BF16), BF16).compute == even


def test_prefill_longest_block_under_a_window_scores_the_window_only():
    """A causal sliding window of 4,096 keys, one sequence and one head of 128, 148 SMs: the last
    block of 64 queries (kernels.PREFILL_TILE_Q) scores each against the 4,096 keys its window
    holds, 64 * 4,096 = 262,144 pairs on one SM, not against all the keys read. At 32,768 tokens
    the core keeps 4,096 * 4,097 / 2 + (32,768 - 4,096) * 4,096 = 125,831,168 pairs; 148 * 262,144
    = 38,797,312 is less, so the even share (the old rule's 64 * 32,768 gave 2.47 times it). At
    8,192 tokens it keeps 8,390,656 + 4,096 * 4,096 = 25,167,872 pairs, less than 38,797,312: the
    block's time at one SM's rate, 148 * 262,144 / 25,167,872 = 18,944/12,289 times the even share.
    Even share: 4 * 128 * P FLOPs at 5 * 10^13 plus softmax 5 * P at 10^13."""
    chip = CHIP.with_efficiency(compute_units=148)

    def even(pairs):
        return sp.Rational(4 * 128 * pairs, 5 * 10**13) + sp.Rational(5 * pairs, 10**13)

    long = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=32768, kv_len=32768, head_dim=128, causal=True,
                         decode=False, window=4096)
    assert op_time(long, chip, chip.effective_peak(BF16), BF16).compute == even(125831168)
    short = dataclasses.replace(long, q_len=8192, kv_len=8192)
    assert op_time(short, chip, chip.effective_peak(BF16), BF16).compute == even(148 * 64 * 4096)
    assert even(148 * 64 * 4096) == even(25167872) * sp.Rational(18944, 12289)


def test_prefill_longest_block_under_chunked_attention_scores_its_chunk_only():
    """Chunked local attention of 8,192, 16,384 tokens, one sequence and one head of 128, 148 SMs:
    the last 64 queries see the 8,192 keys of their own chunk, 64 * 8,192 = 524,288 pairs; the core
    keeps two chunks' 8,192 * 8,193 / 2, 67,117,056 pairs, less than 148 * 524,288 = 77,594,624:
    the block's time at one SM's rate (the old rule's 64 * 16,384 gave twice that)."""
    chip = CHIP.with_efficiency(compute_units=148)
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=16384, kv_len=16384, head_dim=128, causal=True,
                         decode=False, attention_chunk=8192)
    assert core.pairs == 67117056
    block = 148 * 64 * 8192
    assert op_time(core, chip, chip.effective_peak(BF16), BF16).compute == (sp.Rational(4 * 128 * block, 5 * 10**13)
                                                                            + sp.Rational(5 * block, 10**13))


def test_prefill_of_a_symbolic_batch_bound_to_zero_is_its_fixed_time():
    """A batch symbol bound to 0 after the fact: no sequences, no blocks, compute 0 (the longest
    block's floor is part of the kernel's own work: with none, none), no new tokens to pass over; the
    op's time is the kernel's fixed 15 us, as a prefill without the floor gives (it raised "The
    argument 'zoo' is not comparable" when the floor divided by the pairs). The layer's latency
    through compute_metrics is a number too."""
    chip = CHIP.with_efficiency(compute_units=148)
    batch = sp.Symbol("B", integer=True, positive=True)
    core = AttentionCore("c", batch=batch, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=128, causal=True,
                         decode=False)
    t = op_time(core, chip, chip.effective_peak(BF16), BF16)
    assert t.compute.xreplace({batch: 0}) == 0
    assert t.time.xreplace({batch: 0}) == 15 * US
    layer = sc.AttentionLayer(hidden_size=4096, num_heads=32, causal=True)
    metrics = layer.compute_metrics(batch_size=batch, seq_len=1024, phase="prefill", dtype="bf16",
                                    hardware=hardware.get("B200"))
    assert sp.sympify(metrics.subs({batch: 0}).latency).is_finite


def test_prefill_head_wider_than_256_recomputes_its_scores_per_v_slice():
    """Heads of 512 (d_v 512 > 256, kernels.PREFILL_MAX_DV): two blocks per head, each computing the
    whole Q K^T and its softmax. Causal, b 1, 8 heads, 1024 tokens: pairs 524,800; matmul FLOPs
    4 * 8 * 512 * 524,800 = 8,598,323,200 and once more Q K^T 2 * 8 * 512 * 524,800 = 4,299,161,600,
    at 5 * 10^13; softmax 5 * 8 * 524,800 = 20,992,000 twice at 10^13. Heads of 256: one block."""
    core = AttentionCore("c", batch=1, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=512, causal=True,
                         decode=False)
    t = op_time(core, CHIP, CHIP.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(8598323200 + 4299161600, 5 * 10**13) + sp.Rational(2 * 20992000, 10**13)
    narrow = dataclasses.replace(core, head_dim=256)
    assert op_time(narrow, CHIP, CHIP.effective_peak(BF16), BF16).compute == (sp.Rational(4299161600, 5 * 10**13)
                                                                              + sp.Rational(20992000, 10**13))


def test_attention_exponentials_on_the_special_function_units():
    """attention_exp_rate 10^12 per second: the causal prefill above (b 1, 8 heads, 1024 tokens)
    scores 8 * 1024 * 1025 / 2 = 4,198,400 pairs, one exponential each, 4.1984 us added to its
    compute; its flash backward, 5/2 the forward's matmul FLOPs, spends the forward's time per FLOP
    at eta_abwd (1 on this chip, 4/5 below): 5/2 * 4.1984 = 10.496 us, 13.12 us at 4/5; an eager
    backward reads the stored probabilities (none); a chip without the field adds nothing."""
    from symcost.core.ops import AttentionCoreBackward

    chip = CHIP.with_efficiency(attention_exp_rate=10**12)
    core = AttentionCore("c", batch=1, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=128, causal=True,
                         decode=False)
    slower = chip.with_efficiency(attention_backward_efficiency=Fraction(4, 5))
    for op, c, added in ((core, chip, sp.Rational(4198400, 10**12)),
                         (AttentionCoreBackward("c.bwd", forward=core), chip, sp.Rational(10496, 10**9)),
                         (AttentionCoreBackward("c.bwd", forward=core), slower, sp.Rational(13120, 10**9))):
        plain = op_time(op, c.with_efficiency(attention_exp_rate=None), c.effective_peak(BF16), BF16)
        assert op_time(op, c, c.effective_peak(BF16), BF16).compute - plain.compute == added
    eager = AttentionCoreBackward("c.bwd", forward=dataclasses.replace(core, flash=False))
    assert op_time(eager, chip, chip.effective_peak(BF16), BF16) == op_time(eager, CHIP, CHIP.effective_peak(BF16),
                                                                          BF16)


def test_blackwell_prefill_overlaps_its_matmuls_with_its_exponentials():
    """Compute capability 10.x (kernels.PINGPONG_COMPUTE_CAPABILITY: two 128-row query tiles per
    block, one's softmax during the other's matmuls): the causal prefill above (b 1, 8 heads of 128,
    1024 tokens, 4,198,400 pairs) runs its matmuls, 2,149,580,800 FLOPs at 5 * 10^13 = 42.99 us,
    and its 4,198,400 exponentials side by side, then its softmax's other vector work,
    20,992,000 FLOPs at 10^13 = 2.0992 us. At 10^12 exponentials per second (4.1984 us) the matmuls
    bind: 42.99 + 2.0992 us, where 9.0 adds the 4.1984 us. At 5 * 10^10 per second (83.968 us) the
    exponentials bind: 83.968 + 2.0992 us. Heads of 512 (two V slices, each recomputing Q K^T, its
    softmax and exponentials): matmuls 8,598,323,200 + 4,299,161,600 FLOPs = 257.9 us against
    2 * 4.1984 us of exponentials, plus 2 * 2.0992 us. On 10.x each in whole tiles: 8 query tiles,
    36 tiles of 128 * 128 = 589,824 pairs per head of the 524,800 kept, all times 1152/1025 (one SM,
    compute_units 1, where the longest block's floor does not bind)."""
    core = AttentionCore("c", batch=1, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=128, causal=True,
                         decode=False)
    matmuls, vector = sp.Rational(2149580800, 5 * 10**13), sp.Rational(20992000, 10**13)

    def compute(op, capability, rate):
        chip = CHIP.with_efficiency(attention_exp_rate=rate, compute_units=1).model_copy(
            update={"compute_capability": capability})
        return op_time(op, chip, chip.effective_peak(BF16), BF16).compute

    tiles = sp.Rational(1152, 1025)
    assert compute(core, "10.0", 10**12) == (matmuls + vector) * tiles
    assert compute(core, "10.3", 5 * 10**10) == (sp.Rational(4198400, 5 * 10**10) + vector) * tiles
    assert compute(core, "9.0", 10**12) == matmuls + vector + sp.Rational(4198400, 10**12)
    assert compute(core, None, 10**12) == compute(core, "9.0", 10**12)
    wide = dataclasses.replace(core, head_dim=512)
    assert compute(wide, "10.0", 10**12) == (sp.Rational(8598323200 + 4299161600, 5 * 10**13) + 2 * vector) * tiles


def test_blackwell_prefill_computes_whole_tiles_of_128_by_128():
    """Compute capability 10.x (kernels.PINGPONG_TILE: 128 queries by 128 keys per tile): a causal
    prefill of 300 tokens, one head of 128, has 3 query tiles scoring 1 + 2 + 3 = 6 whole tiles,
    6 * 16,384 = 98,304 pairs where the mask keeps 300 * 301 / 2 = 45,150; a window of 128 over 512
    tokens 1 + 2 + 2 + 2 = 7 tiles, 114,688 pairs (it keeps 128 * 129 / 2 + 384 * 128 = 57,408).
    Each computed pair costs its 4 * 128 matmul FLOPs at 5 * 10^13 (above its exponential at
    10^12 per second) plus 5 vector FLOPs at 10^13: 537 / (5 * 10^13) s. After 212 cached keys the
    300 queries' tiles sit at an offset: the core's own 300 * 212 + 45,150 pairs. On 9.0, no tiles.
    One SM (compute_units 1: tiles need an SM count; the longest block's floor, at most the whole
    work on one SM, does not bind). The ideal chip (no SM count) stays the roofline: 4 * 128 *
    45,150 FLOPs at the bf16 peak plus the softmax on the vector units, no tiles."""
    chip = CHIP.with_efficiency(attention_exp_rate=10**12, compute_units=1).model_copy(
        update={"compute_capability": "10.0"})
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=300, kv_len=300, head_dim=128, causal=True,
                         decode=False)
    pair = sp.Rational(537, 5 * 10**13)

    def compute(op, on=chip):
        return op_time(op, on, on.effective_peak(BF16), BF16).compute

    assert compute(core) == 98304 * pair
    assert compute(dataclasses.replace(core, q_len=512, kv_len=512, window=128)) == 114688 * pair
    # after 212 cached keys the tiles sit at an offset: tile 0 (positions 212..339) runs key tiles 0..2,
    # tile 1 (340..467) 0..3, tile 2 (468..511) 0..3: 3 + 4 + 4 = 11 tiles, 180,224 pairs
    assert compute(dataclasses.replace(core, kv_len=512)) == 180224 * pair
    # and a window of 128 there: tile 0's first row (212) reaches key 85 (tile 0): tiles 0..2; tile 1's
    # (340) key 213: tiles 1..3; tile 2's (468) key 341: tiles 2..3: 3 + 3 + 2 = 8 tiles, 131,072 pairs
    assert compute(dataclasses.replace(core, kv_len=512, window=128)) == 131072 * pair
    hopper = chip.model_copy(update={"compute_capability": "9.0"})
    assert compute(core, hopper) == 45150 * (pair + sp.Rational(1, 10**12))
    # the ideal chip (no SM count) is the roofline: no tiles, no exponentials
    ideal = hardware.get("B200").ideal()
    assert ideal.attention_pingpong
    assert compute(core, ideal) == sp.Rational(4 * 128 * 45150) / ideal.peak_flops_expr(BF16) + sp.Rational(
        5 * 45150) / ideal.vector_flops


def _tiles_by_enumeration(s, cached, window=None, tile=128):
    """Whole tiles counted row by row: each query tile runs every key tile one of its rows sees."""
    count = 0
    for first in range(0, s, tile):
        seen = set()
        for row in range(cached + first, cached + min(first + tile, s)):
            lowest = 0 if window is None else max(0, row - window + 1)
            seen.update(range(lowest // tile, row // tile + 1))
        count += len(seen)
    return count * tile * tile


@pytest.mark.parametrize("window", [None, 1, 100, 128, 129, 300])
def test_whole_tiles_after_cached_keys_match_a_count_by_enumeration(window):
    """Review finding: whole tiles applied only without cached keys, so one cached key made B200's
    prefill faster (the core's own pairs). The closed form follows the offset: checked against the
    tiles counted row by row; at no cached keys n (n + 1) / 2 tiles causally (300 tokens: 6)."""
    from symcost.hardware.kernels import whole_tile_pairs

    for s, cached in [(1, 0), (1, 1), (127, 5), (128, 128), (129, 1), (300, 0), (300, 212), (385, 1000)]:
        core = AttentionCore("c", q_len=s, kv_len=s + cached, causal=True, decode=False, window=window)
        assert whole_tile_pairs(core) == _tiles_by_enumeration(s, cached, window), (s, cached)
    assert whole_tile_pairs(AttentionCore("c", q_len=300, kv_len=300, causal=True, decode=False)) == 6 * 128**2


def test_b200_prefill_never_gets_faster_with_a_cached_key():
    """Review finding: s = 2048, 32 query / 8 KV heads of 128 on B200 took 74.8 us at no cached keys,
    73.0 us after one (whole tiles dropped). More keys, never less time."""
    chip = hardware.get("B200")
    times = [op_time(AttentionCore("c", batch=1, q_len=2048, kv_len=2048 + cached, heads=32, kv_heads=8, head_dim=128,
                                   causal=True, decode=False), chip, chip.effective_peak(BF16), BF16).time
             for cached in (0, 1, 128, 129)]
    assert all(a <= b for a, b in zip(times, times[1:])), times


def test_eager_prefill_is_not_tiled_or_overlapped_on_blackwell():
    """Review finding: the overlap and whole tiles are the fused (flash) kernel's; an eager core
    (flash False: FasterTransformer, tensorrt-llm-0.x) sums its matmuls and exponentials over its
    own pairs on 10.x as on 9.0: the core of the overlap test above, 42.99 + 2.0992 + 4.1984 us."""
    core = AttentionCore("c", batch=1, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=128, causal=True,
                         decode=False, flash=False)
    chip = CHIP.with_efficiency(attention_exp_rate=10**12, compute_units=1).model_copy(
        update={"compute_capability": "10.0"})
    expected = sp.Rational(2149580800, 5 * 10**13) + sp.Rational(20992000, 10**13) + sp.Rational(4198400, 10**12)
    assert op_time(core, chip, chip.effective_peak(BF16), BF16).compute == expected


def test_pingpong_without_an_exponential_rate_has_no_max():
    """Review finding: a 10.x chip without an exponential rate (the ideal one) kept an unevaluated
    Max(0, matmuls): the matmuls alone."""
    chip = hardware.get("B200").ideal()
    s = sp.Symbol("s", positive=True, integer=True)
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, head_dim=128, q_len=s, kv_len=s, causal=True,
                         decode=False)
    assert chip.attention_pingpong and chip.attention_exp_rate is None
    assert not op_time(core, chip, chip.effective_peak(BF16), BF16).compute.has(sp.Max)


def test_binding_a_blackwell_chip_refuses_a_symbolic_chip_without_its_capability():
    """Review finding: a layer timed on the realistic symbolic chip built without a compute
    capability (summed exponentials, no tiles) bound to B200 gave 709.4 us against B200's own
    531.7 us, silently: refused, naming the capability to build it with."""
    from symcost.errors import HardwareError

    layer = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8, causal=True)
    symbolic = Hardware.symbolic(realistic=True, matmul_stream_k=True, matmul_tile_4bit=(128, 256))
    metrics = layer.compute_metrics(phase="prefill", dtype="bf16", hardware=symbolic)
    with pytest.raises(HardwareError, match=r"^subs: compute_capability: .*compute_capability='10\.0'"):
        metrics.subs(batch_size=1, seq_len=2048, hardware="B200", dtype="bf16")


@pytest.mark.parametrize("capability", ["10.0", "9.0"])
@pytest.mark.parametrize(("tokens", "cached"), [(777, 0), (1, 0), (777, 1), (300, 212)])
def test_prefill_overlap_binds_on_the_symbolic_chip(capability, tokens, cached):
    """A prefill core timed on the realistic symbolic chip built with the bound chip's compute
    capability equals the numeric time (exponentials overlapped on 10.x, summed on 9.0); the
    capability is part of a 10.x chip's structure (of a 9.0 one too where NCCL's ring rule reads
    it: LL terms), so binding one built without it is refused.
    Review findings: one token (the longest block's core, untiled) and cached keys (a symbol bound
    to 0 or more: whole tiles at an offset) agreed numerically only, not bound."""
    s, c = sp.Symbol("s", positive=True, integer=True), sp.Symbol("c", nonnegative=True, integer=True)
    chip = CHIP.with_efficiency(compute_units=132, attention_exp_rate=10**12).model_copy(
        update={"compute_capability": capability})
    symbolic = Hardware.symbolic(realistic=True, compute_capability=capability)
    core = AttentionCore("c", batch=2, heads=8, kv_heads=2, q_len=s, kv_len=s + c, head_dim=128, causal=True,
                         decode=False)
    numeric = op_time(dataclasses.replace(core, q_len=tokens, kv_len=tokens + cached), chip,
                      chip.effective_peak(BF16), BF16).time
    values = {**chip.symbol_values(BF16), s: tokens, c: cached}
    bound = op_time(core, symbolic, symbolic.effective_peak(None), None).time.xreplace(values)
    assert bound == numeric
    # the attention kernels read it on 10.x only; NCCL's ring rule on a chip with LL terms (the
    # round chip has them) on both
    assert ("compute_capability" in chip.model_copy(update={"ll_base_latency": None}).structure) == (
        capability == "10.0")
    assert "compute_capability" in chip.structure


def test_decode_attention_floor_and_kernel_by_phase():
    """One query per sequence over 4096 keys, b 8, 8 heads of 128: K and V 2 * 8 * 8 * 4096 * 128 *
    2 = 134,217,728 B plus Q and O 2 * 8 * 8 * 128 * 2 = 32,768 B at 10^12 * 1/2 = 268.5 us; + 5 us.
    A prefill core of one token is context attention (its kernel by phase, not by q_len)."""
    core = AttentionCore("c", batch=8, heads=8, kv_heads=8, q_len=1, kv_len=4096, head_dim=128, decode=True)
    t = op_time(core, CHIP, CHIP.effective_peak(BF16), BF16)
    assert t.time == sp.Rational(134217728 + 32768, 5 * 10**11) + 5 * US
    assert dataclasses.replace(core, decode=False).kernel == "attn.prefill"
    assert dataclasses.replace(core, decode=None).kernel == "attn.decode"  # unset: one query means decode


def test_grouped_decode_over_an_8bit_cache_has_its_own_floor():
    """grouped_decode_time_8bit 2 us: a grouped-query decode core (32 query heads over 8 KV heads)
    over an FP8 cache pays 2 us, over a bf16 cache attention_decode_time's 5 us, and a multi-head
    core (8 over 8) over an FP8 cache 5 us too; unset, every decode kernel pays 5 us."""
    chip = CHIP.with_efficiency(grouped_decode_time_8bit=2 * US)
    core = AttentionCore("c", batch=8, heads=32, kv_heads=8, q_len=1, kv_len=4096, head_dim=128, decode=True)
    fp8 = dataclasses.replace(core, kv_dtype_bytes=1)
    mha_fp8 = dataclasses.replace(fp8, heads=8)
    assert [op_time(c, chip, chip.effective_peak(BF16), BF16).overhead for c in (fp8, core, mha_fp8)] == [
        2 * US, 5 * US, 5 * US]
    assert op_time(fp8, CHIP, CHIP.effective_peak(BF16), BF16).overhead == 5 * US


def test_multi_head_decode_at_its_kernels_element_rate():
    """mha_decode_rate 10^11 KV elements per second: a multi-head decode core (8 query heads over 8
    KV heads, b 8, 4096 keys of 128) over an FP8 cache reads 2 * 8 * 8 * 4096 * 128 = 67,108,864 K
    and V elements, 1 byte each: at 10^12 * 1/2 that is 134.2 us of streaming plus Q and O
    (2 * 8 * 8 * 128 * 2 = 32,768 B, 0.066 us), but at 10^11 elements per second 671.1 us of the
    kernel's own work (TensorRT-LLM's masked multi-head kernel converts and multiplies every element on
    the CUDA cores), which wins the max; + 5 us. The matmuls (4 * 8 * 8 * 4096 * 128 FLOPs at 5 * 10^13)
    and the softmax (5 FLOPs per pair, 8 * 8 * 4096 pairs, at 10^13) add 2.7 us to that compute term.
    A grouped core (32 over 8) pays no such term: the same K and V plus its Q and O (2 * 8 * 32 * 128
    * 2 = 131,072 B) stream in 134.4 us, + 5 us. Unset (None), the multi-head core streams: 134.2 us + 5 us."""
    chip = CHIP.with_efficiency(mha_decode_rate=10**11)
    mha = AttentionCore("c", batch=8, heads=8, kv_heads=8, q_len=1, kv_len=4096, head_dim=128, kv_dtype_bytes=1,
                        decode=True)
    gqa = dataclasses.replace(mha, heads=32)
    elements = 2 * 8 * 8 * 4096 * 128
    core_work = sp.Rational(4 * 8 * 8 * 4096 * 128, 5 * 10**13) + sp.Rational(5 * 8 * 8 * 4096, 10**13)
    t = op_time(mha, chip, chip.effective_peak(BF16), BF16)
    assert t.compute == core_work + sp.Rational(elements, 10**11)
    assert t.time == core_work + sp.Rational(elements, 10**11) + 5 * US
    assert op_time(gqa, chip, chip.effective_peak(BF16), BF16).time == sp.Rational(elements + 131072,
                                                                                   5 * 10**11) + 5 * US
    assert op_time(mha, CHIP, CHIP.effective_peak(BF16), BF16).time == sp.Rational(elements + 32768,
                                                                                   5 * 10**11) + 5 * US


@pytest.mark.parametrize("batch,heads,head_dim,keys,blocks_time", [
    # 2 heads on 10 SMs: split T = min(ceil(10/2), ceil(1001/128)) = min(5, 8) = 5 blocks per head of
    # ceil(1001/5) = 201 keys, 10 blocks in one wave: 1 * 10 * 201 * 256 elements / 10^11 = 5.1456 us
    (1, 2, 128, 1001, Fraction(10 * 201 * 256, 10**11)),
    # 12 heads on 10 SMs: no split (ceil(10/12) = 1), 12 blocks in ceil(12/10) = 2 waves of 1001 keys:
    # 2 * 10 * 1001 * 256 / 10^11 = 51.25 us, not the 12 * 1001 * 256 / 10^11 = 30.75 us of even waves
    (3, 4, 128, 1001, Fraction(2 * 10 * 1001 * 256, 10**11)),
    # 200 keys: at most ceil(200/128) = 2 blocks per head, 4 blocks in one wave of 100 keys each:
    # 10 * 100 * 256 / 10^11 = 2.56 us
    (1, 2, 128, 200, Fraction(10 * 100 * 256, 10**11)),
    # review finding, head_dim 64: 8 threads per value (64 * 2 / 16), a key loop of 8 ceil(256/8) = 256
    # keys: T = min(5, ceil(1001/256)) = 4 blocks of ceil(1001/4) = 251 keys, 8 blocks in one wave, 128
    # elements a key: 10 * 251 * 128 / 10^11 = 3.2128 us (128 keys a loop: T = 5, 201 keys, 2.5728 us)
    (1, 2, 64, 1001, Fraction(10 * 251 * 128, 10**11)),
    # head_dim 256: 32 threads per value, 8 ceil(256/32) = 64 keys a loop: T = min(5, ceil(200/64)) = 4
    # blocks of 50 keys, 512 elements a key: 10 * 50 * 512 / 10^11 = 2.56 us (128 keys a loop: 5.12 us)
    (1, 2, 256, 200, Fraction(10 * 50 * 512, 10**11)),
])
def test_multi_head_decode_blocks_run_in_waves_over_the_sms(batch, heads, head_dim, keys, blocks_time):
    """With 10 SMs (compute_units) the multi-head kernel's blocks (one per sequence and head, split
    over the keys below one block per SM, each at least one key loop: 8 ceil(256 / threads per value)
    keys, threads per value = next_power_of_two(d) * 2 / 16, TensorRT-LLM's multi_block_grid_setup)
    run in waves of one block per SM, each SM at 10^11 / 10 elements per second, 2 d elements per
    key (K and V). The compute term is that plus the matmuls (4 b h s d FLOPs at 5 * 10^13) and the
    softmax (5 b h s at 10^13)."""
    chip = CHIP.with_efficiency(mha_decode_rate=10**11, compute_units=10)
    core = AttentionCore("c", batch=batch, heads=heads, kv_heads=heads, q_len=1, kv_len=keys, head_dim=head_dim,
                         kv_dtype_bytes=1, decode=True)
    core_work = (sp.Rational(4 * batch * heads * keys * head_dim, 5 * 10**13)
                 + sp.Rational(5 * batch * heads * keys, 10**13))
    assert op_time(core, chip, chip.effective_peak(BF16), BF16).compute == core_work + blocks_time


@pytest.mark.parametrize("keys,ramp", [
    # K and V 2 * 8 * 8 * 1024 * 128 * 2 = 33,554,432 B plus Q and O 32,768 B = 33,587,200 B, below
    # the 10^8-byte ramp: 3 us * 33,587,200 / 10^8 = 1.0076 us
    (1024, Fraction(3, 10**6) * Fraction(33587200, 10**8)),
    # 8,192 keys: 268,468,224 B, past the ramp: the whole 3 us
    (8192, Fraction(3, 10**6)),
])
def test_decode_streaming_ramps_up_to_its_rate(keys, ramp):
    """decode_ramp_time 3 us over decode_ramp_bytes 10^8: a decode kernel that moves fewer bytes
    than that loses 3 us * bytes / 10^8 to the ramp of its loads (its first bytes stream below
    the full rate), a larger one the whole 3 us: memory = bytes / (10^12 * 1/2) + 3 us * Min(1,
    bytes / 10^8); + attention_decode_time 5 us (8 heads over 8, a bf16 cache, no mha_decode_rate)."""
    chip = CHIP.with_efficiency(decode_ramp_time=3 * US, decode_ramp_bytes=10**8)
    core = AttentionCore("c", batch=8, heads=8, kv_heads=8, q_len=1, kv_len=keys, head_dim=128, decode=True)
    streamed = 2 * 8 * 8 * keys * 128 * 2 + 32768
    t = op_time(core, chip, chip.effective_peak(BF16), BF16)
    assert t.memory == sp.Rational(streamed, 5 * 10**11) + ramp
    assert t.time == sp.Rational(streamed, 5 * 10**11) + ramp + 5 * US


def test_wrapped_attention_cores_take_their_cores_heads():
    """(bug found by the suite) MLA's absorbed decode core wraps an AttentionCore (``.core``): 128
    query heads over the one cached latent, grouped, so over an FP8 cache it pays
    grouped_decode_time_8bit's 2 us, over bf16 attention_decode_time's 5 us. An op of an attention
    class with no core is refused in one line, naming the op."""
    from symcost.layers.mla import _LatentCore

    chip = CHIP.with_efficiency(grouped_decode_time_8bit=2 * US)
    core = AttentionCore("c", batch=4, heads=128, kv_heads=1, q_len=1, kv_len=4096, head_dim=576, v_head_dim=512,
                         decode=True)
    for kv_bytes, floor in ((1, 2 * US), (2, 5 * US)):
        latent = _LatentCore("latent", core=dataclasses.replace(core, kv_dtype_bytes=kv_bytes))
        assert op_time(latent, chip, chip.effective_peak(BF16), BF16).overhead == floor

    @dataclasses.dataclass(frozen=True)
    class Bare(Matmul):
        @property
        def kernel(self) -> str:
            return "attn.decode"

    with pytest.raises(ConfigError, match="op 'bare': kernel class 'attn.decode' needs an AttentionCore"):
        op_time(Bare("bare", m=1, n=1, k=1), chip, chip.effective_peak(BF16), BF16)


@pytest.mark.parametrize("heads,kv_bytes", [(8, 1), (8, 2), (32, 1), (32, 2)])
@pytest.mark.parametrize("fields", [{}, {"grouped_decode_time_8bit": 2 * US, "attention_exp_rate": 10**12,
                                          "decode_ramp_time": 3 * US, "decode_ramp_bytes": 10**8}])
def test_decode_terms_bind_on_the_symbolic_chip(heads, kv_bytes, fields):
    """The realistic symbolic chip's decode time, bound to a chip's values (symbol_values), equals
    the numeric time on that chip, with and without the grouped kernel's floor (unset: t_dec8 = t_dec),
    and a prefill core's time with and without its exponentials (unset: F_exp = oo), on 132 SMs (the
    prefill's longest thread block binds at 8 heads: 132 * 64 * 64 / (8 * 8 * 2080) > 1; N_cu binds
    only to a chip's SM count, as for GEMM tiles)."""
    chip = CHIP.with_efficiency(compute_units=132, **fields)
    symbolic = Hardware.symbolic(realistic=True)
    core = AttentionCore("c", batch=8, heads=heads, kv_heads=8, q_len=1, kv_len=4096, head_dim=128,
                         kv_dtype_bytes=kv_bytes, decode=True)
    for op in (core, dataclasses.replace(core, q_len=64, kv_len=64, causal=True, decode=False)):
        numeric = op_time(op, chip, chip.effective_peak(BF16), BF16).time
        bound = op_time(op, symbolic, symbolic.effective_peak(None), None).time.xreplace(chip.symbol_values(BF16))
        assert bound == numeric


def test_nccl_low_latency_protocol_wins_small_messages():
    """An all-reduce of 1 KB over 8 chips, NCCL only (the neutral runtime): ring 10 + 14 * 1 = 24 us
    + 1750 B at 100 GB/s; LL 5 + 14 * 0.5 = 12 us + 1750 B at 100 GB/s * 1/4 = 12.07 us; at 100 MB
    the ring's bandwidth wins: 10 + 14 + 1.75e8/1e11 = 1774 us against LL's 12 + 7000 us."""
    nccl = CHIP.with_runtime(Runtime(name="n", cuda_graphs=True))
    small = collective_algorithms(Collective("all_reduce", "tp", 8, 1000), nccl)
    assert small["ll"] == 12 * US + Fraction(1750, 25 * 10**9)
    assert collective_time(Collective("all_reduce", "tp", 8, 1000), nccl) == small["ll"]
    assert collective_time(Collective("all_reduce", "tp", 8, 10**8), nccl) == 24 * US + Fraction(175, 10**5)


def test_nccl_picks_the_ring_protocol_by_its_own_estimate():
    """NCCL runs the protocol its own estimate picks (src/graph/tuning.cc at v2.27.3-1: baseLat Ring
    LL 6.6, LL128 14.0, Simple 8.4 us, hwLat NVLink Ring .6, 1.9, 3.4 us per step; busBw Simple B,
    LL min(87.7 GB/s, B/2) on Ampere, LL128 min(0.92 B, 12 * 20 GB/s); time lat + M / (busBw n/steps)),
    not the one that is then fastest. The round chip as an Ampere part (B_up 100 GB/s, so NCCL's
    B = 4/5 * 100 = 80 GB/s), its Simple ring 30 us + 1 us per step, LL 5 us + 0.5 us per step at
    1/4 of the link, no engine all-reduce.

    All-gather over 2 chips (1 step, bus-to-algorithm factor 2): LL estimate 7.2 us + M / 80 GB/s,
    LL128 15.9 us + M / 147.2 GB/s, Simple 11.8 us + M / 160 GB/s; LL meets Simple at
    4.6 us = M (1/80 - 1/160) / 10^9, M = 736,000 B (LL128 never wins on 2 chips). At 700,000 B NCCL
    runs LL: 5.5 us + 350,000 B / 25 GB/s = 19.5 us. At 800,000 B it runs Simple: 31 us + 400,000 B /
    100 GB/s = 35 us, though LL would take 5.5 + 16 = 21.5 us (the fastest-form model's answer).

    All-reduce over 8 chips (14 steps, factor 8/14): LL 15.0 us + M / 22.857 GB/s, LL128 40.6 us +
    M / 42.057 GB/s (73.6 * 8/14), Simple 56.0 us + M / 45.714 GB/s; LL to LL128 at M = 25.6 us /
    (43.75 - 23.777) ps/B = 1.28 MB, LL128 to Simple at 15.4 us / (23.777 - 21.875) ps/B = 8.10 MB. At
    4 MB NCCL runs LL128, whose own time is NCCL's latency 14 + 14 * 1.9 = 40.6 us plus the
    7,000,000 B sent at 120/128 of the link: 7e6 * 128 / (120 * 10^11) s = 74.67 us."""
    nccl = CHIP.with_efficiency(compute_capability="8.0", collective_base_latency=30 * US).with_runtime(
        Runtime(name="n", cuda_graphs=True))
    gather = [collective_time(Collective("all_gather", "tp", 2, m), nccl) for m in (700_000, 800_000)]
    assert gather == [Fraction(195, 10) * US, 35 * US]
    reduce = collective_time(Collective("all_reduce", "tp", 8, 4 * 10**6), nccl)
    assert reduce == Fraction(406, 10) * US + Fraction(7 * 10**6 * 128, 120 * 10**11)
    # past 8.10 MB the Simple ring: 30 + 14 * 1 us + 2 * 7/8 * 10^7 B / 100 GB/s = 219 us; below
    # 1.28 MB LL: 5 + 7 us + 1.75 MB / 25 GB/s = 82 us
    assert collective_time(Collective("all_reduce", "tp", 8, 10**7), nccl) == 219 * US
    assert collective_time(Collective("all_reduce", "tp", 8, 10**6), nccl) == 82 * US


def test_nccl_protocol_switch_on_a100_sits_where_nccl_puts_it():
    """On 2 A100s (NVLink 300 GB/s: NCCL's ring B = 12 links * 20 GB/s = 240 GB/s) an all-reduce's
    LL estimate 6.6 + 2 * 0.6 = 7.8 us + M / 87.7 GB/s (min(87.7, 240/2), factor 2/2) meets Simple's
    8.4 + 2 * 3.4 = 15.2 us + M / 240 GB/s at 7.4 us / (1/87.7 - 1/240) ns/B = 1,022,700 B: 1,000,000 B
    runs LL, 2^20 = 1,048,576 B Simple (the measured table jumps from 19.4 to 40.8 us there,
    aiconfigurator-core 0.12.0 a100_sxm nccl 2.27.3 all_reduce). The chip's own LL and Simple forms
    give the time."""
    a100 = hardware.get("A100_SXM_80GB")
    n, steps = 2, 2
    for m, proto in ((10**6, "ll"), (2**20, "simple")):
        sent = Fraction(2 * m * (n - 1), n)
        if proto == "ll":
            want = a100.ll_base_latency + steps * a100.ll_latency + sent / (
                a100.scale_up_bandwidth * a100.network_efficiency * a100.ll_efficiency)
        else:
            want = a100.collective_base_latency + steps * a100.collective_latency + sent / (
                a100.scale_up_bandwidth * a100.network_efficiency)
        assert collective_time(Collective("all_reduce", "tp", n, m), a100) == want, m


def test_custom_all_reduce_one_shot_two_shot_switch():
    """The engine's own all-reduce over 8 chips at 100 GB/s * 1/2: one-shot 3 us + 7 M / 5e10,
    two-shot 6 us + 2 * 7/8 M / 5e10. They cross where 3 us = (7 - 7/4) M / 5e10: M = 28,571 B.
    At 16 KB the one-shot wins (5.29 us), at 1 MB the two-shot (41 us against 143 us), beating
    NCCL's ring there too (24 us + 1.75 MB / 100 GB/s = 41.5 us)."""
    small, large = Collective("all_reduce", "tp", 8, 16384), Collective("all_reduce", "tp", 8, 10**6)
    assert collective_time(small, CHIP) == 3 * US + Fraction(7 * 16384, 5 * 10**10)
    assert collective_time(large, CHIP) == 6 * US + Fraction(2 * 7 * 10**6, 8 * 5 * 10**10)
    algorithms = collective_algorithms(large, CHIP)
    assert algorithms["ring"] == 24 * US + Fraction(175, 10**7) > algorithms["custom_two_shot"]
    # the engine's own time per call (t_coll) is around its all-reduce as around NCCL's
    slow = CHIP.with_runtime(Runtime(name="round-custom-slow", cuda_graphs=True, allreduce="custom",
                                     collective_overhead=2 * US))
    assert collective_time(small, slow) == 5 * US + Fraction(7 * 16384, 5 * 10**10)
    # across scale-up domains the engine falls back to NCCL: no custom branch
    assert "custom" not in collective_algorithms(Collective("all_reduce", "tp", 16, 10**6, span=16), CHIP)


def test_custom_all_reduce_per_peer_latency_and_two_shot_synchronisation():
    """Each peer adds 0.5 us to both forms (one flag per peer), the two-shot has its own 10 us
    (two barriers and the second phase) instead of 2 * 3 us. Over 8 chips at 100 GB/s * 1/2:
    one-shot 3 + 7 * 0.5 = 6.5 us + 7 M / 5e10; two-shot 10 + 3.5 = 13.5 us + 1.75 M / 5e10; NCCL's
    ring 24 us + 1.75 M / 1e11, LL 12 us + 1.75 M / 2.5e10. At 16 KB the one-shot wins (6.5 + 2.29 =
    8.79 us); at 400 kB the two-shot (13.5 + 14 = 27.5 us, one-shot 62.5, ring 31); they cross at
    7 us = 5.25 M / 5e10, M = 66,667 B. Over 2 chips one peer: 3.5 us + M / 5e10."""
    chip = CHIP.with_efficiency(custom_allreduce_peer_latency=US / 2, custom_allreduce_two_shot_latency=10 * US)
    small, mid = Collective("all_reduce", "tp", 8, 16384), Collective("all_reduce", "tp", 8, 400000)
    assert collective_time(small, chip) == Fraction(13, 2) * US + Fraction(7 * 16384, 5 * 10**10)
    assert collective_time(mid, chip) == Fraction(27, 2) * US + Fraction(7 * 400000, 4 * 5 * 10**10)
    algorithms = collective_algorithms(mid, chip)
    assert algorithms["custom"] == Fraction(125, 2) * US and algorithms["ring"] == 31 * US
    pair = Collective("all_reduce", "tp", 2, 16384)
    assert collective_time(pair, chip) == Fraction(7, 2) * US + Fraction(16384, 5 * 10**10)
    # unset, the two-shot synchronises twice the one-shot's (the earlier form), no per-peer time
    assert CHIP.custom_allreduce_peer_latency == 0 and CHIP.custom_allreduce_two_shot_latency is None


def test_engine_profiles_set_their_own_chip_fields():
    """A profile's per-chip fields apply under it and leave with it (tensorrt-llm's custom
    all-reduce terms on the H100, fitted on its 1.3.0rc20 table; the neutral profile has none)."""
    h100 = hardware.get("H100_SXM")
    trt = h100.with_runtime("tensorrt-llm")
    assert h100.custom_allreduce_latency is None and trt.custom_allreduce_latency is not None
    assert trt.runtime.allreduce == "custom" and trt.runtime.version == "1.3.0rc20"
    assert trt.with_runtime("neutral") == h100
    mine = Runtime(name="mine", cuda_graphs=True, overrides={"H100_SXM": {"gemm_time": "0.000003"}})
    assert h100.with_runtime(mine).gemm_time == 3 * US and h100.with_runtime(mine).with_runtime("neutral") == h100
    # the old 2023 engines: their launch time and FP8 GEMM efficiency on every chip ("*")
    old = h100.with_runtime("tensorrt-llm-0.x")
    assert old.launch_time == old.runtime.overrides_for("H100_SXM")["launch_time"] != h100.launch_time


def test_fp8_models_send_tp_activations_in_bf16():
    """An MLP (h 4096) under TP 2 in FP8: its all-reduce carries 4 * 128 tokens * 4096 * 2 bytes
    (bf16), as in bf16; fp32 sends 4 bytes per element."""
    layer = sc.MLPLayer(hidden_size=4096, intermediate_size=16384, parallelism={"tensor_parallel": 2})
    for dtype, size in (("fp8_e4m3", 2), ("bf16", 2), ("fp32", 4)):
        m = layer.compute_metrics(batch_size=4, seq_len=128, phase="prefill", dtype=dtype, hardware="H100_SXM")
        assert [(c.kind, c.payload_bytes) for c in m.collectives] == [("all_reduce", 4 * 128 * 4096 * size)]


def test_kernel_registry_refuses_a_second_definition():
    """One source of truth per kernel class: registering ``gemm`` again is one line."""
    with pytest.raises(ConfigError, match="kernel class 'gemm' is registered already"):
        kernel("gemm")(KERNELS["gemm"])


def test_point_to_point_sends_inside_a_mesh_take_one_link():
    """MI300X (issue 20, item 8): eight GPUs fully connected by seven Infinity Fabric links, 64 GB/s
    per direction each ([MI300-PP]); a send between two of them crosses one link, not the 448 GB/s
    aggregate. 100 MB: alpha_0 + alpha + 1e8 / (64e9 * eta_net). An NVSwitch gives each H100 its full
    450 GB/s to any peer; TPU tori one of their 4 (2D) or 6 (3D) neighbour links."""
    mi = hardware.get("MI300X")
    send = Collective("p2p", "pp", 2, 10**8)
    assert mi.scale_up_peer_bandwidth == 64 * 10**9
    want = mi.collective_base_latency + mi.collective_latency + Fraction(10**8) / (64 * 10**9 * mi.network_efficiency)
    assert collective_time(send, mi) == want
    h100 = hardware.get("H100_SXM")
    assert h100.scale_up_peer_bandwidth is None and h100.peer_bandwidth == h100.scale_up_bandwidth
    assert hardware.get("TPU_V5E").peer_bandwidth == 50 * 10**9  # 200 GB/s over 4 links
    assert hardware.get("TPU_V5P").peer_bandwidth == 100 * 10**9  # 600 GB/s over 6 links
    # the ring and the all-to-all use every link: the aggregate stays theirs
    assert collective_time(Collective("all_to_all", "ep", 8, 10**8), mi) < collective_time(
        Collective("all_to_all", "ep", 8, 10**8), mi.with_efficiency(scale_up_bandwidth=64 * 10**9))


def test_grouped_gemm_of_moe_experts_by_hand():
    """8 local experts, 4 tokens each, h 4096 -> 1024, bf16, on CHIP with grouped terms: compute the
    dense GEMM's (2 * 8 * 4 * 1024 * 4096 = 268,435,456 FLOPs at 5e13, no tiles) at 1/2 of it;
    bytes 2 * 8 * (4*4096 + 4096*1024 + 4*1024) = 67,436,544 at 1e12 * 3/4; + 4 us. The MoE layer's
    expert GEMMs are of this class whatever the local expert count (one expert included)."""
    chip = CHIP.with_efficiency(grouped_gemm_efficiency=Fraction(1, 2), grouped_gemm_memory_efficiency=Fraction(3, 4),
                                grouped_gemm_time=4 * US)
    mm = Matmul("experts.up", m=4, n=1024, k=4096, dtype_bytes=2, batch=8, grouped=True)
    t = op_time(mm, chip, chip.effective_peak(BF16), BF16)
    assert mm.kernel == "gemm.grouped"
    assert t.compute == sp.Rational(268435456, 5 * 10**13) * 2
    assert t.memory == sp.Rational(67436544 * 4, 3 * 10**12)
    assert t.time == t.memory + 4 * US
    moe = sc.MoELayer(hidden_size=4096, num_experts=8, top_k=2, expert_intermediate_size=1024,
                      parallelism={"expert_parallel": 8})
    m = moe.compute_metrics(batch_size=1, seq_len=4, phase="prefill", dtype="bf16", hardware="H100_SXM")
    kinds = {op.name: op.kernel for op, _ in m.ops if isinstance(op, Matmul)}
    assert kinds["experts.up"] == kinds["experts.down"] == "gemm.grouped" and kinds["router"] == "gemm"


def test_grouped_second_projection_writes_its_output_after_its_main_loop():
    """CHIP with 100 compute units (tiles 64 x 128, stream-K) and grouped terms eta_gg 5/4, eta_ggmem 3/4,
    eta_ggout 1/5, t_gg 4 us. The experts' down projection, 8 experts x 4 tokens, k 1024 -> n 4096, bf16:
    compute: 8 * ceil(4/64) * ceil(4096/128) = 256 tiles, 2.56 waves of 100 (stream-K) ->
    2 * 1024 * 64 * 128 * 100 * 2.56 = 4,294,967,296 FLOPs at 5e13, / (5/4) = 68.72 us;
    bytes without the output: 2 * 8 * (4*1024 + 1024*4096) = 67,174,400 at 1e12 * 3/4 = 89.57 us;
    its output, 8 * 4 * 4096 = 131,072 bf16 elements = 262,144 bytes at 1e12 / 5 = 1.31 us after
    the main loop; + 4 us. The up projection's output stays in the roofline (a tiled store); the
    chip without tiles (compute_units unset) keeps every grouped output there."""
    chip = CHIP.with_efficiency(compute_units=100, matmul_tile=(64, 128), matmul_stream_k=True,
                                grouped_gemm_efficiency=Fraction(5, 4), grouped_gemm_memory_efficiency=Fraction(3, 4),
                                grouped_gemm_output_efficiency=Fraction(1, 5), grouped_gemm_time=4 * US)
    down = Matmul("experts.down", m=4, n=4096, k=1024, dtype_bytes=2, batch=8, grouped=True)
    t = op_time(down, chip, chip.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(4294967296, 5 * 10**13) * sp.Rational(4, 5)
    assert t.memory == sp.Rational(67174400 * 4, 3 * 10**12)
    assert t.serial == sp.Rational(262144 * 5, 10**12)
    assert t.time == t.memory + t.serial + 4 * US
    up = Matmul("experts.up", m=4, n=4096, k=1024, dtype_bytes=2, batch=8, grouped=True)
    assert op_time(up, chip, chip.effective_peak(BF16), BF16).serial == 0
    assert op_time(down, CHIP.with_efficiency(grouped_gemm_output_efficiency=Fraction(1, 5)),
                   CHIP.effective_peak(BF16), BF16).serial == 0
    # unset eta_ggout (A100's SM80 MoE GEMMs store tiles into the expanded buffer, the finalize
    # kernel, costed as the combine, scatters): the roofline's overlap, every output byte in the
    # memory term, 2 * 8 * (4*1024 + 1024*4096 + 4*4096) = 67,436,544 at 1e12 * 3/4
    unset = op_time(down, chip.with_efficiency(grouped_gemm_output_efficiency=None), chip.effective_peak(BF16), BF16)
    assert unset.serial == 0 and unset.memory == sp.Rational(67436544 * 4, 3 * 10**12)


def test_grouped_second_projection_writes_bf16_whatever_its_format():
    """The scattered write is bf16 or the op's own format where wider, Max(2, e) bytes per output,
    and the output leaves the memory term once (its e bytes). The chip above (eta_ggmem 3/4, eta_ggout
    1/5, 8-bit quantizing pass 8 bytes per input element), down 8 x 4 x 4096 from k 1024:
    fp32 (e 4): memory 4 * 8 * (4*1024 + 1024*4096) = 134,348,800 at 7.5e11, written 4 * 131,072 =
    524,288 bytes at 2e11;
    fp8 (e 1): memory 8 * (4096 + 4,194,304) = 33,587,200 at 7.5e11; serial the bf16 write 262,144
    bytes at 2e11 (a forward grouped GEMM under the fused engine has no quantizing pass of its own:
    the MoE layer's experts_quantize casts the tokens once, grouped_input_quantize);
    nvfp4 (e 9/16, whole 128 x 256 tiles without split-K): memory 9/16 * 33,587,200 = 18,892,800 at
    7.5e11; serial the scattered write 262,144 bytes at 2e11, which replaces the dense 4-bit
    epilogue's (262,144 bytes at 8e11), not added to it."""
    peaks = {BF16: 10**14, FP8: 2 * 10**14, sc.DataType.FP32: 10**14, sc.DataType.NVFP4: 4 * 10**14}
    chip = TILED.model_copy(update={"peak_flops": peaks}).with_efficiency(
        compute_units=100, matmul_tile=(64, 128), matmul_stream_k=True, grouped_gemm_efficiency=Fraction(5, 4),
        grouped_gemm_memory_efficiency=Fraction(3, 4),
        grouped_gemm_output_efficiency=Fraction(1, 5), grouped_gemm_time=4 * US)
    cases = {sc.DataType.FP32: (134348800, 524288 * 5),
             FP8: (33587200, 262144 * 5),
             sc.DataType.NVFP4: (18892800, 262144 * 5)}
    for dtype, (memory, serial) in cases.items():
        down = Matmul("experts.down", m=4, n=4096, k=1024, dtype_bytes=dtype.bytes, batch=8, grouped=True)
        t = op_time(down, chip, chip.effective_peak(dtype), dtype)
        assert (t.memory, t.serial) == (sp.Rational(memory * 4, 3 * 10**12), sp.Rational(serial, 10**12)), dtype


def test_grouped_gemm_efficiency_may_exceed_one_but_not_the_peak():
    """eta_gg is the grouped GEMMs' rate over the dense ones': 5/4 on CHIP (matmul_efficiency 1/2,
    8-bit 1/4) puts them at 5/8 of the peak; 3 would put the 16-bit ones at 3/2 of it: refused."""
    assert CHIP.with_efficiency(grouped_gemm_efficiency=Fraction(5, 4)).grouped_gemm_efficiency == Fraction(5, 4)
    with pytest.raises(ValidationError, match="above the peak"):
        CHIP.with_efficiency(grouped_gemm_efficiency=3)


def test_profile_fields_leave_with_the_profile_after_edits_and_files(tmp_path):
    """(review) with_efficiency on a chip under a profile changes the chip before the profile
    too, so switching to neutral drops the profile's fields and keeps the edit; a profiled chip
    written to a file and read back is the same profiled chip, and switching profiles works there."""
    h100 = hardware.get("H100_SXM")
    old = h100.with_runtime("tensorrt-llm-0.x")
    edited = old.with_efficiency(memory=Fraction(9, 10))
    back = edited.with_runtime("neutral")
    assert back == h100.with_efficiency(memory=Fraction(9, 10))
    assert back.launch_time == h100.launch_time and back.quantize_bytes_8bit == h100.quantize_bytes_8bit
    path = tmp_path / "chip.json"
    old.to_file(path)
    loaded = Hardware.from_file(path)
    assert loaded == old and loaded.with_runtime("neutral") == h100


def test_pipeline_sends_of_an_fp8_model_travel_in_bf16():
    """(review) Llama-3-70B prefill at TP 4 x PP 2: the one stage-to-stage send (what the TTFT
    holds beyond its layers and the engine's step) is the same in FP8 as in bf16: 4096 tokens x
    8192 x 2 bytes / 4 ranks per chip, not 1 byte per element."""
    model = sc.models.get("llama-3-70b")
    h100 = hardware.get("H100_SXM")
    par = {"tensor_parallel": 4, "pipeline_parallel": 2}

    def send(dtype):
        step = model.inference_step(h100, 1, 4096, dtype=dtype, parallelism=par)
        layers = sp.Add(*(sp.sympify(m.latency) * n for _, n, m in step.prefill_rows))
        return sp.sympify(step.ttft) - layers - h100.runtime.step_overhead

    assert send("fp8_e4m3") == send("bf16") > 0
    alone = collective_time(Collective("p2p", "pp", 2, 4096 * 8192 * 2 // 4, span=8), h100)
    assert send("bf16") == alone


def test_attention_backward_runs_at_its_own_fraction_of_the_forward_rate():
    """Flash attention's backward reaches a lower rate than its forward: FlashAttention-2 (Dao 2023,
    A100) up to 73 % of the peak forward and 63 % backward; FlashAttention-3 (Shah et al. 2024, H100
    SXM5, BF16, head dim 128, sequence 8k) 646 TFLOP/s forward and 559 backward (cuDNN: 600 and 518):
    0.86 of the forward in each. One core, b 1, 8 heads of 128, s = 1024, causal: pairs 1024*1025/2 =
    524,800; forward 4*8*524,800*128 = 2,149,580,800 FLOPs, backward 5/2 of it, 5,373,952,000,
    at 10^14 * 1/2 (attention_efficiency) * 43/50 (the backward's own): 124.976 us."""
    core = AttentionCore("core", batch=1, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=128,
                         causal=True, flash=True, dtype_bytes=2)
    (bwd,) = core.backward()
    assert bwd.matmul_flops == 5_373_952_000
    chip = CHIP.model_copy(update={"attention_backward_efficiency": Fraction(43, 50)})
    t = op_time(bwd, chip, chip.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(5_373_952_000, 10**14 // 2 * Fraction(43, 50)) + sp.sympify(
        bwd.vector_flops) / chip.vector_flops
    # the forward is untouched; without the field the backward runs at the forward's rate
    assert op_time(core, chip, chip.effective_peak(BF16), BF16) == op_time(core, CHIP, CHIP.effective_peak(BF16),
                                                                          BF16)
    plain = op_time(bwd, CHIP, CHIP.effective_peak(BF16), BF16)
    assert plain.compute == sp.Rational(5_373_952_000, 10**14 // 2) + sp.sympify(bwd.vector_flops) / CHIP.vector_flops


def test_flash_backward_sums_on_hopper_and_takes_one_share_on_blackwell():
    """Review finding: the flash backward took its forward's overlap on compute capability 10.x and
    charged Max(matmuls, 5/2 exponentials), which no SM100 backward kernel's source shows (cuDNN's,
    which Transformer Engine runs). On 9.0 it sums them: the core above (b 1, 8 heads of 128, 1024
    tokens, causal: 4,198,400 pairs): matmuls 5,373,952,000 FLOPs at 5 * 10^13 * 43/50 = 124.976
    us; exponentials 5/2 of the forward's 4,198,400 at 10^12 per second over 43/50: 12.2047 us; the
    vector work adds. On 10.0 (issue 22) the whole kernel runs at one share of the peak, its
    exponentials inside it (here set to 43/100 = eta_attn eta_abwd, so the matmul term is the same
    124.976 us): neither a Max nor a sum, the exponential rate no term of its own."""
    core = AttentionCore("core", batch=1, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=128,
                         causal=True, flash=True, dtype_bytes=2)
    (bwd,) = core.backward()
    vector = sp.sympify(bwd.vector_flops) / CHIP.vector_flops
    eta = Fraction(43, 50)
    matmuls = sp.Rational(5_373_952_000) / (5 * 10**13 * eta)

    def compute(capability, rate):
        share = Fraction(43, 100) if capability == "10.0" else None
        chip = CHIP.model_copy(update={"attention_backward_efficiency": eta, "attention_exp_rate": rate,
                                       "compute_capability": capability,
                                       "attention_backward_peak_efficiency": share})
        return op_time(bwd, chip, chip.effective_peak(BF16), BF16).compute

    exps = sp.Rational(5, 2) * sp.Rational(4198400, 10**12) / eta
    assert compute("10.0", 10**12) == compute("10.0", 5 * 10**10) == matmuls
    assert compute("9.0", 10**12) == matmuls + exps + vector
    assert compute("9.0", 5 * 10**10) == matmuls + exps * 20 + vector


def test_nvidia_presets_take_the_papers_backward_fraction():
    """The A100, H100, H200 and B200 presets: 43/50 (0.86, [FA2] and [FA3]); the ideal chip 1."""
    for name in ("A100_SXM_80GB", "H100_SXM", "H200_SXM", "B200"):
        assert hardware.get(name).attention_backward_efficiency == Fraction(43, 50)
        assert hardware.get(name).ideal().attention_backward_efficiency == 1


SM100_CORE = AttentionCore("core", batch=1, heads=8, kv_heads=8, q_len=1024, kv_len=1024, head_dim=128,
                           causal=True, flash=True, dtype_bytes=2)


def test_sm100_flash_backward_runs_at_its_cited_share_of_the_peak():
    """Issue 22, item 1: on a 10.x chip the flash backward runs at its own cited share of the 16-bit
    peak, ``attention_backward_peak_efficiency``, the whole kernel (exponentials and softmax
    included) in that rate, not the forward's fitted rate times the FlashAttention-3 ratio with the
    exponentials summed. The core above (b 1, 8 heads of 128, 1024 tokens, causal): 5,373,952,000
    matmul FLOPs at 10^14 * 533/1000 = 5.33 * 10^13 FLOP/s: 100.8246 us, no exponential or vector
    term; not the prefill floor attention_time 15 us: a 10.x flash backward's fixed time is its own
    attention_backward_time per (sequence, query head), unset here (none). On 9.0 the summed,
    forward-relative form stays."""
    (bwd,) = SM100_CORE.backward()
    eta = Fraction(533, 1000)
    chip = CHIP.with_efficiency(attention_exp_rate=10**12).model_copy(
        update={"attention_backward_peak_efficiency": eta, "compute_capability": "10.0"})
    t = op_time(bwd, chip, chip.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(5_373_952_000, 10**14) / eta
    assert t.overhead == 0
    hopper = chip.model_copy(update={"compute_capability": "9.0"})
    exps = sp.Rational(5, 2) * sp.Rational(4198400, 10**12)
    assert op_time(bwd, hopper, hopper.effective_peak(BF16), BF16).compute == (
        sp.Rational(5_373_952_000, 5 * 10**13) + exps + sp.sympify(bwd.vector_flops) / CHIP.vector_flops)


def test_ideal_sm100_backward_is_the_roofline():
    """The ideal chip of a 10.x preset (its compute capability kept) is a roofline, not a measured
    kernel: the core above at 10^14 (5,373,952,000 FLOPs: 53.73952 us) plus its vector work at
    10^13, as the ideal symbolic chip (no compute capability) times it; the share form would drop
    the vector work and bind to another number (test_properties' symbolic = numeric)."""
    (bwd,) = SM100_CORE.backward()
    ideal = CHIP.model_copy(update={"attention_backward_peak_efficiency": Fraction(533, 1000),
                                    "compute_capability": "10.0"}).ideal()
    assert ideal.attention_pingpong and ideal.is_ideal
    t = op_time(bwd, ideal, ideal.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(5_373_952_000, 10**14) + sp.sympify(bwd.vector_flops) / CHIP.vector_flops


def test_sm100_backward_without_its_own_share_is_refused():
    """Review of issue 22: a non-ideal 10.x chip without ``attention_backward_peak_efficiency`` fell
    back to eta_attn eta_abwd and silently dropped the vector work and ``attention_exp_rate``: a
    flash backward there is refused, naming the field."""
    (bwd,) = SM100_CORE.backward()
    chip = CHIP.with_efficiency(attention_exp_rate=10**12).model_copy(
        update={"attention_backward_efficiency": Fraction(43, 50), "compute_capability": "10.0"})
    assert chip.attention_backward_peak_efficiency is None
    with pytest.raises(ConfigError, match="attention_backward_peak_efficiency"):
        op_time(bwd, chip, chip.effective_peak(BF16), BF16)


def test_backward_share_below_10x_is_refused():
    """Review of issue 22: the share set on a chip below compute capability 10.x was silently
    ignored; the validator refuses it in one line naming the field."""
    with pytest.raises(ValidationError, match="attention_backward_peak_efficiency"):
        hardware.get("H100_SXM").with_efficiency(attention_backward_peak_efficiency=Fraction(1, 2))
    assert hardware.get("B200").with_efficiency(attention_backward_peak_efficiency=Fraction(1, 2)) is not None


def test_backward_share_without_a_capability_is_refused():
    """Final review of issue 22: the validator ran on compute_capability only, and pydantic skips a
    field left at its default, so a chip built without a capability kept a share it never uses."""
    fields = {k: v for k, v in hardware.get("H100_SXM").model_dump().items()
              if k not in ("compute_capability", "attention_backward_peak_efficiency")}
    fields["nvls_arch_efficiency"] = Fraction(17, 20)  # without a capability, NVLS needs its factor stated
    with pytest.raises(ValidationError, match="attention_backward_peak_efficiency is used on compute capability"):
        Hardware(**fields, attention_backward_peak_efficiency=Fraction(1, 2))
    assert Hardware(**fields).attention_backward_peak_efficiency is None


def test_binding_a_10x_chip_without_its_share_is_refused():
    """Final review of issue 22: the numeric 10.x chip without its backward share refuses a flash
    backward, but binding metrics timed on the symbolic chip gave eta_attn * eta_abwd in its place (a
    number, where none is cited). The training metrics (backward included) are refused in one line;
    the prefill's (no backward) still bind, and with the share they equal the numeric chip's."""
    b200 = hardware.get("B200")
    bare = b200.model_copy(update={"attention_backward_peak_efficiency": None})
    symbolic = Hardware.symbolic(realistic=True, **b200.structure)
    layer = sc.AttentionLayer(hidden_size=1024, num_heads=8)
    training = layer.compute_metrics(batch_size=2, seq_len=1024, phase="training", hardware=symbolic)
    with pytest.raises(ConfigError, match="^B200: attention_backward_peak_efficiency must be set") as err:
        training.subs(hardware=bare, dtype="bf16")
    assert "\n" not in str(err.value)
    prefill = layer.compute_metrics(batch_size=2, seq_len=1024, hardware=symbolic)
    assert prefill.subs(hardware=bare, dtype="bf16").latency == prefill.subs(hardware=b200, dtype="bf16").latency
    numeric = layer.compute_metrics(batch_size=2, seq_len=1024, phase="training", dtype="bf16", hardware=b200)
    assert training.subs(hardware=b200, dtype="bf16").latency == numeric.latency


def test_sm100_backward_adds_dropouts_vector_work():
    """Review of issue 22: the cited rate has dropout off (cudnn-frontend benchmark_single_sdpa.py),
    so a core with dropout adds the dropout's vector work as on H100: 2 (backward factor) * 2 FLOPs
    (mask multiply, scale) per pair * 8 heads * 524,800 pairs (1024 * 1025 / 2) = 16,793,600 FLOPs
    at F_vec 10^13: 1.67936 us on top of the share's 100.863 us (5,373,952,000 / (10^14 * 333/625))."""
    (bwd,) = dataclasses.replace(SM100_CORE, dropout=True).backward()
    eta = Fraction(333, 625)
    chip = CHIP.model_copy(update={"attention_backward_peak_efficiency": eta, "compute_capability": "10.0"})
    t = op_time(bwd, chip, chip.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(5_373_952_000, 10**14) / eta + sp.Rational(16_793_600, 10**13)


def test_b200_backward_at_cudnn_llama_shape():
    """The B200 preset on the 8k row of the release its values are fitted on (cuDNN 9.22 on GB200,
    NVIDIA/cudnn-frontend benchmark/sdpa_benchmark_training/results/llama3.1/gb200: b 2, 64 query
    heads over 8 KV heads of 128, 8192 tokens, causal, BF16, 1332 TFLOP/s): pairs 8192 * 8193 / 2 =
    33,558,528 per head; backward FLOPs 2 * 2 * 64 * 33,558,528 * (3 * 128 + 2 * 128) =
    5,498,229,227,520, at 2250 * 10^12 * 263/500 = 1183.5 TFLOP/s: 4.64574 ms, plus the fitted
    1.046 us per sequence and query head (tests/hardware/test_cudnn.py), 2 * 64 * 1.046 us = 133.888 us:
    4.77962 ms, 1150.3 TFLOP/s, the cited 1332 scaled by 2250/2500 (1198.8) less 4.0 % (the fit's
    residual at 8k). The summed form gave 9.18 ms."""
    b200 = hardware.get("B200")
    core = AttentionCore("core", batch=2, heads=64, kv_heads=8, q_len=8192, kv_len=8192, head_dim=128,
                         causal=True, flash=True, dtype_bytes=2, decode=False)
    (bwd,) = core.backward()
    assert bwd.matmul_flops == 5_498_229_227_520
    t = op_time(bwd, b200, b200.effective_peak(BF16), BF16)
    assert t.compute == sp.Rational(5_498_229_227_520, 2250 * 10**12) / Fraction(263, 500)
    assert t.overhead == 2 * 64 * Fraction(1046, 10**9)
    assert 4.7796e-3 < float(t.compute + t.overhead) < 4.7797e-3


def test_sm100_presets_take_cudnns_backward_share():
    """B200 and GB200 (compute capability 10.0): 263/500 (cuDNN 9.22's rows on GB200, fitted with
    the time per sequence and head: tests/hardware/test_cudnn.py); B300 (10.3) 1499/2500 (GB300's rows); the Hopper
    and Ampere presets none (their forward-relative 0.86); the ideal chip none."""
    assert hardware.get("B300").attention_backward_peak_efficiency == Fraction(1499, 2500)
    for name in ("B200", "B300", "GB200"):
        if name != "B300":
            assert hardware.get(name).attention_backward_peak_efficiency == Fraction(263, 500)
        assert hardware.get(name).ideal().attention_backward_peak_efficiency is None
    for name in ("A100_SXM_80GB", "H100_SXM", "H200_SXM"):
        assert hardware.get(name).attention_backward_peak_efficiency is None


@pytest.mark.parametrize(("capability", "share"), [("10.0", Fraction(333, 625)), ("9.0", None)])
def test_backward_share_binds_on_the_symbolic_chip(capability, share):
    """The flash backward timed on the realistic symbolic chip built with the bound chip's compute
    capability equals the numeric time: on 10.x with the cited share and the time per (sequence,
    query head) of a call (t_abwd), on 9.0 without them (where they may not be set)."""
    s = sp.Symbol("s", positive=True, integer=True)
    # NB: on 10.x the time per (sequence, query head) too (t_abwd, 1 us), which the symbolic chip binds
    chip = CHIP.with_efficiency(compute_units=132, attention_exp_rate=10**12).model_copy(
        update={"compute_capability": capability, "attention_backward_peak_efficiency": share,
                "attention_backward_time": None if share is None else US,
                "attention_backward_efficiency": Fraction(43, 50)})
    symbolic = Hardware.symbolic(realistic=True, compute_capability=capability)
    core = AttentionCore("c", batch=2, heads=8, kv_heads=2, q_len=s, kv_len=s, head_dim=128, causal=True,
                         flash=True, decode=False)
    (bwd,) = core.backward()
    (numeric_bwd,) = dataclasses.replace(core, q_len=777, kv_len=777).backward()
    numeric = op_time(numeric_bwd, chip, chip.effective_peak(BF16), BF16).time
    bound = op_time(bwd, symbolic, symbolic.effective_peak(None), None).time.xreplace(
        {**chip.symbol_values(BF16), s: 777})
    assert bound == numeric


def test_grouped_gemm_per_expert_pays_each_experts_floor():
    """Transformer Engine runs an FP8 grouped GEMM as one cuBLAS GEMM per expert, spread over its
    compute streams (transformer_engine/common/gemm/cublaslt_gemm.cu: ``multi_stream_cublas_gemm``;
    its CUTLASS grouped GEMM takes only FP16/BF16): an engine with ``grouped_gemm="per_expert"``
    pays the FP8 floor (10 us here) and the input's quantizing pass once per expert. 16 experts
    of 128 tokens, 1024 x 768, FP8: 16 floors, 160 us, where one fused grouped kernel pays one; the
    per-expert GEMMs quantize their 16 * 128 * 1024 = 2,097,152 input elements at 8 bytes each
    (16,777,216 bytes at 1e12: 16.78 us), the fused kernel takes its input quantized (the MoE layer's
    ``experts_quantize``, TensorRT-LLM's cast before the permutation)."""
    mm = Matmul("experts.gate", m=128, n=768, k=1024, dtype_bytes=1, batch=16, grouped=True)
    fused = op_time(mm, CHIP, CHIP.effective_peak(FP8), FP8)
    per_expert_chip = CHIP.with_runtime(Runtime(name="te", grouped_gemm="per_expert"))
    per_expert = op_time(mm, per_expert_chip, per_expert_chip.effective_peak(FP8), FP8)
    assert fused.overhead == 10 * US and per_expert.overhead == 16 * 10 * US
    assert per_expert.compute == fused.compute and fused.serial == 0
    assert per_expert.serial == sp.Rational(16777216, 10**12)
    # gate and up run as one fused fc1 (its "up" half adds no kernel), as TE's GroupedLinear does
    up = Matmul("experts.up.dgrad", m=128, n=1024, k=768, dtype_bytes=1, batch=16, grouped=True)
    assert op_time(up, per_expert_chip, per_expert_chip.effective_peak(FP8), FP8).overhead == 0


# NCCL's all-to-all is grouped point-to-point sends, one to each peer at once (NVIDIA/nccl v2.30.7,
# src/enqueue.cc addP2pToPlan): the low-latency protocol for a peer's message of at most
# P2P_LL_THRESHOLD = 16384 bytes per channel (one channel below 64 KiB), the Simple one above.
A2A = Hardware(**{**{f: getattr(CHIP, f) for f in type(CHIP).model_fields},
                  **dict(all_to_all_latency=12 * US, all_to_all_peer_latency=US / 4, all_to_all_ll_latency=6 * US,
                         all_to_all_ll_efficiency=Fraction(1, 20), all_to_all_efficiency=Fraction(1, 2))})


def test_all_to_all_switches_protocol_at_16_kib_per_peer():
    """8 chips, 100 GB/s link (eta_net 1), t_coll 0 (the round engine). A buffer of 8 * 16384 bytes:
    16384 per peer, NCCL's LL: 6 us + 7 peers * 0.25 us + 16384 / (10^11 * 1/20) = 6 + 1.75 +
    3.2768 = 11.0268 us (the Simple form, 12 + 1.75 + 7/8 * 131072 / (10^11 * 1/2) = 16.04376 us, is
    slower). One byte more per peer (8 * 16385): Simple, eta_A2A = 1/2 of the link, 13.75 us +
    7/8 * 131080 / (5 * 10^10) = 16.0439 us."""
    at = Collective("all_to_all", "ep", 8, 8 * 16384)
    assert collective_time(at, A2A) == Fraction(110268, 10**10)
    above = Collective("all_to_all", "ep", 8, 8 * 16385)
    assert collective_time(above, A2A) == Fraction(1375, 10**8) + Fraction(7 * 131080, 8 * 5 * 10**10)
    # two calls: twice each per-call latency and twice the bytes
    assert collective_time(Collective("all_to_all", "ep", 8, 8 * 16384, count=2), A2A) == 2 * Fraction(110268, 10**10)


def test_all_to_all_without_its_own_terms_is_the_ring():
    """A chip without all-to-all terms (CHIP: none set) times an all-to-all as NCCL's Simple ring
    figures: alpha_0 10 us + 7 hops * 1 us + 7/8 * 10^6 bytes / 10^11 = 25.75 us, and no LL branch
    (its LL ring, 5 + 3.5 us + 875000 / (10^11 / 4) = 43.5 us, is slower anyway)."""
    c = Collective("all_to_all", "ep", 8, 10**6)
    assert collective_time(c, CHIP) == Fraction(2575, 10**8)


def test_all_to_all_symbolic_by_hand():
    """The realistic symbolic chip, M bytes over 8 chips in one domain: Simple alpha_A2A + t_coll +
    7 alpha_A2A,p + 7/8 M / (B_up eta_net eta_A2A); LL, where M/8 <= 16384, alpha_A2A,LL + t_coll + 7
    alpha_A2A,p + M/8 / (B_up eta_net eta_A2A,LL)."""
    from symcost import symbols as S

    M = sp.Symbol("M", positive=True)
    got = {k: v.xreplace({S.scale_up_domain: 8}) for k, v in
           collective_algorithms(Collective("all_to_all", "ep", 8, M), Hardware.symbolic(realistic=True)).items()}
    link = S.scale_up_bandwidth * S.network_efficiency
    simple = (S.all_to_all_latency + S.collective_overhead + 7 * S.all_to_all_peer_latency
              + sp.Rational(7, 8) * M / (link * S.all_to_all_efficiency))
    ll = (S.all_to_all_ll_latency + S.collective_overhead + 7 * S.all_to_all_peer_latency
          + M / 8 / (link * S.all_to_all_ll_efficiency))
    assert sp.expand(got["ring"] - simple) == 0
    assert got["ll"].xreplace({M: 8 * 16384}) == ll.xreplace({M: 8 * 16384})
    assert got["ll"].xreplace({M: 8 * 16385}) == got["ring"].xreplace({M: 8 * 16385})  # NCCL sends Simple there


# 148 units, 100 TFLOP/s bf16 at 1/2, 400 TFLOP/s NVFP4 at 1/2; sub-byte GEMMs run 128 x 256 tiles.
TILED = CHIP.model_copy(update={"peak_flops": {BF16: 10**14, sc.DataType.NVFP4: 4 * 10**14},
                                "matmul_efficiency_4bit": Fraction(1, 2), "compute_units": 148,
                                "matmul_tile_4bit": (128, 256)})


def test_sub_byte_gemm_runs_its_own_tile_over_the_whole_k():
    """NVFP4 GEMMs on a chip with matmul_tile_4bit: one 128 x 256 tile per unit over the whole k,
    no split-K. m = 1, n = 1024, k = 4096: ceil(1/128) ceil(1024/256) = 4 tiles < 148 units, one wave
    in which every unit computes its tile: 2 * 4096 * 128 * 256 * 148 = 39,728,447,488 FLOPs at
    4*10^14 / 2. n = 40,000: ceil(40000/256) = 157 tiles, two waves, twice that. The same GEMM in
    bf16 keeps matmul_tile (64 x 128) with split-K: 8 tiles spread over every unit, 8/148 of a wave:
    2 * 4096 * 64 * 128 * 8 = 536,870,912 FLOPs at 10^14 / 2."""
    nvfp4 = sc.DataType.NVFP4
    mm = Matmul("w", m=1, n=1024, k=4096, dtype_bytes=nvfp4.bytes)
    assert op_time(mm, TILED, TILED.effective_peak(nvfp4), nvfp4).compute == sp.Rational(39728447488, 2 * 10**14)
    wide = dataclasses.replace(mm, n=40000)
    assert op_time(wide, TILED, TILED.effective_peak(nvfp4), nvfp4).compute == sp.Rational(2 * 39728447488,
                                                                                          2 * 10**14)
    bf16 = dataclasses.replace(mm, dtype_bytes=2)
    assert op_time(bf16, TILED, TILED.effective_peak(BF16), BF16).compute == sp.Rational(536870912, 5 * 10**13)


def test_sub_byte_gemm_writes_its_bf16_output_after_its_main_loop():
    """A 4-bit GEMM (whole waves of 128 x 256 tiles, no split-K) stores each tile in bf16 after its
    main loop: m = n = 8192, k = 1024 in NVFP4 writes 2 * 8192 * 8192 = 134,217,728 bytes at
    10^12 * 4/5 (gemm_memory_efficiency) = 167.8 us, serial, next to its quantizing pass (8 bytes,
    the 8-bit value, per input element: 8 * 8192 * 1024 = 67,108,864 bytes at 10^12); its roofline
    memory term keeps the inputs only, 9/16 byte per element (4 bits and one 8-bit scale per 16):
    9/16 * (8192 * 1024 + 1024 * 8192) = 9,437,184 bytes at 8 * 10^11. The same GEMM in bf16
    (split-K, its write overlapped) has no serial term and counts its output in the memory term:
    2 * (2 * 8192 * 1024 + 8192^2) = 167,772,160 bytes."""
    nvfp4 = sc.DataType.NVFP4
    mm = Matmul("w", m=8192, n=8192, k=1024, dtype_bytes=nvfp4.bytes)
    t = op_time(mm, TILED, TILED.effective_peak(nvfp4), nvfp4)
    assert t.serial == sp.Rational(134217728 * 5, 4 * 10**12) + sp.Rational(67108864, 10**12)
    assert t.memory == sp.Rational(9437184 * 5, 4 * 10**12)
    bf16 = op_time(dataclasses.replace(mm, dtype_bytes=2), TILED, TILED.effective_peak(BF16), BF16)
    assert bf16.serial == 0 and bf16.memory == sp.Rational(167772160 * 5, 4 * 10**12)


def test_stream_k_spreads_the_last_wave_over_every_unit():
    """m = 1024, n = 4096, k = 4096 bf16 on 10 units with 64 x 128 tiles: 16 * 32 = 512 tiles, 51.2
    waves. With wave quantization (A100's GEMMs) the last 2 tiles take a whole wave: 52 waves, 2 *
    4096 * 64 * 128 * 10 * 52 FLOPs; a stream-K scheduler (matmul_stream_k, Hopper's and Blackwell's
    persistent GEMMs) splits their k loop over every unit: 51.2 waves, exactly the 512 tiles' 2 *
    4096 * 64 * 128 * 512 FLOPs. Below one wave both split k: 8 tiles are 8/10 of a wave either way."""
    from symcost.hardware.kernels import matmul_compute_flops

    waves = CHIP.with_efficiency(compute_units=10)
    stream = CHIP.with_efficiency(compute_units=10, matmul_stream_k=True)
    mm = Matmul("w", m=1024, n=4096, k=4096, dtype_bytes=2)
    assert matmul_compute_flops(mm, waves, BF16) == 2 * 4096 * 64 * 128 * 10 * 52
    assert matmul_compute_flops(mm, stream, BF16) == 2 * 4096 * 64 * 128 * 512
    small = Matmul("w", m=64, n=1024, k=4096, dtype_bytes=2)
    one_wave = 2 * 4096 * 64 * 128 * 8
    assert matmul_compute_flops(small, waves, BF16) == matmul_compute_flops(small, stream, BF16) == one_wave
    assert [hardware.get(n).matmul_stream_k for n in ("H100_SXM", "H200_SXM", "B200", "A100_SXM_80GB")] == [
        True, True, True, False]


def test_2023_engine_profiles_keep_their_own_kernel_terms():
    """The tensorrt-llm-0.x and fastertransformer profiles (the 2023 whole runs) price GEMMs with whole
    waves and have no multi-head element rate on every chip (their kernels predate TensorRT-LLM 1.x's
    multi-block launch and CUTLASS 3's stream-K scheduler); TensorRT-LLM 1.3's profile keeps the
    H100's own (stream-K, R_mha 2.54 * 10^12 per second from the per-op fit). A flag that is not
    true or false is refused, naming the field (from a chip file: one line)."""
    h100 = hardware.get("H100_SXM")
    for engine in ("tensorrt-llm-0.x", "fastertransformer"):
        old = h100.with_runtime(engine)
        assert old.matmul_stream_k is False and old.mha_decode_rate is None
    modern = h100.with_runtime("tensorrt-llm")
    assert modern.matmul_stream_k is True and modern.mha_decode_rate == Fraction(254, 100) * 10**12
    with pytest.raises(ValidationError, match="matmul_stream_k must be true or false"):
        CHIP.with_efficiency(matmul_stream_k=1)


def test_b200_nvfp4_tile_is_cutlass_default():
    """B200's NVFP4 GEMMs: TensorRT-LLM's default CUTLASS config on SM100, CtaShape128x256x128B with a
    1x1x1 cluster (cpp/tensorrt_llm/thop/fp4Gemm.cpp, getDefaultGemmConfig); chips without NVFP4
    tables keep matmul_tile for every format."""
    assert hardware.get("B200").matmul_tile_4bit == (128, 256)
    assert hardware.get("H100_SXM").matmul_tile_4bit is None


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 20000), n=st.integers(1, 70000), k=st.integers(1, 70000),
       pair=st.sampled_from([("B200", "bf16"), ("B200", "fp8_e4m3"), ("B200", "nvfp4"), ("H100_SXM", "bf16"),
                             ("H100_SXM", "fp8_e4m3"), ("A100_SXM_80GB", "bf16")]))
def test_gemm_tiles_bind_on_the_symbolic_chip(m, n, k, pair):
    """A GEMM timed on the realistic symbolic chip that carries the chip's sub-byte tile and tile
    scheduler, bound to the chip's values for the dtype (symbol_values), equals the numeric time:
    tiles, waves (stream-K or not) and split-K per format class, floors and the quantizing pass."""
    chip, dt = hardware.get(pair[0]), sc.DataType.parse(pair[1])
    symbolic = Hardware.symbolic(realistic=True, matmul_tile_4bit=chip.matmul_tile_4bit,
                                 matmul_stream_k=chip.matmul_stream_k)
    mm = Matmul("w", m=m, n=n, k=k, dtype_bytes=dt.bytes)
    numeric = op_time(mm, chip, chip.effective_peak(dt), dt).time
    bound = op_time(mm, symbolic, symbolic.effective_peak(None), dt).time.xreplace(chip.symbol_values(dt))
    assert bound == numeric


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 512), kv_heads=st.integers(1, 64), group=st.sampled_from([1, 2, 4, 8]),
       kv_len=st.integers(1, 131072), kv_bytes=st.sampled_from([1, 2]),
       name=st.sampled_from(["A100_SXM_80GB", "H100_SXM", "H200_SXM", "B200"]),
       rate=st.sampled_from([None, 10**11, Fraction(221, 100) * 10**12]),
       ramp=st.sampled_from([None, (3 * US, 10**8), (3 * US, None)]))
def test_decode_terms_bind_on_the_symbolic_chip_for_any_shape(b, kv_heads, group, kv_len, kv_bytes, name, rate, ramp):
    """A decode core of any shape timed on the realistic symbolic chip, bound to a preset's values
    (symbol_values), equals the numeric time on that preset: the multi-head kernel's element rate
    (set or unset: R_mha = oo), the grouped kernel's 8-bit floor and the streaming term with its
    ramp (the preset's, or set here, or a ramp time without its bytes: the whole t_ramp on both,
    a review finding: the symbolic chip bound M_ramp to oo and dropped it)."""
    chip = hardware.get(name).with_efficiency(mha_decode_rate=rate)
    if ramp is not None:
        chip = chip.with_efficiency(decode_ramp_time=ramp[0], decode_ramp_bytes=ramp[1])
    symbolic = Hardware.symbolic(realistic=True)
    core = AttentionCore("c", batch=b, heads=kv_heads * group, kv_heads=kv_heads, q_len=1, kv_len=kv_len,
                         head_dim=128, kv_dtype_bytes=kv_bytes, decode=True)
    numeric = op_time(core, chip, chip.effective_peak(BF16), BF16).time
    bound = op_time(core, symbolic, symbolic.effective_peak(None), None).time.xreplace(chip.symbol_values(BF16))
    assert bound == numeric


def test_fp8_backward_gemms_run_at_their_own_fraction_with_split_accumulation():
    """Transformer Engine runs an FP8 GEMM's dgrad and wgrad with split accumulation (promoted to
    fp32 every few k-steps; transformer_engine/common/recipe/__init__.py, commit d0067d0:
    fp8_gemm_fprop use_split_accumulator=False, fp8_gemm_dgrad and fp8_gemm_wgrad True), which
    Hopper's fast-accumulation mode skips in the forward: the backward runs at
    gemm_backward_efficiency_8bit of the forward's rate. m = n = k = 4096 on the round chip:
    2*4096^3 = 137,438,953,472 FLOPs at 2*10^14 * 1/4 (fp8) = 2.749 ms; a dgrad or wgrad at 4/5
    of that rate: 137,438,953,472 / (5*10^13 * 4/5) = 3.436 ms. The forward, the bf16 backward
    (16-bit GEMMs accumulate in fp32 anyway) and a chip without the field are untouched."""
    chip = CHIP.model_copy(update={"gemm_backward_efficiency_8bit": Fraction(4, 5)})
    flops = 2 * 4096**3
    for name, dtype, rate in (("w", FP8, Fraction(5 * 10**13)), ("w.dgrad", FP8, Fraction(4 * 10**13)),
                              ("w.wgrad", FP8, Fraction(4 * 10**13)), ("w.dgrad", BF16, Fraction(5 * 10**13))):
        mm = Matmul(name, m=4096, n=4096, k=4096, dtype_bytes=dtype.bytes)
        assert op_time(mm, chip, chip.effective_peak(dtype), dtype).compute == sp.Rational(flops) / rate
    plain = Matmul("w.dgrad", m=4096, n=4096, k=4096, dtype_bytes=1)
    assert op_time(plain, CHIP, CHIP.effective_peak(FP8), FP8).compute == sp.Rational(flops, 5 * 10**13)


def test_megatron_core_runs_hopper_fp8_backward_gemms_with_split_accumulation():
    """The megatron-core profile sets the Hopper chips' FP8 backward fraction (pytorch/ao issue
    #2377: fast accumulation speeds H100 FP8 GEMMs 1.1x to 1.2x; 1/1.15 = 0.87); Blackwell has no
    fast-accumulation mode to lose (NVIDIA/TransformerEngine PR #2748: "there is no fastAccuMode for
    sm100"), the other profiles and the ideal chip none."""
    for name in ("H100_SXM", "H200_SXM"):
        assert hardware.get(name).with_runtime("megatron-core").gemm_backward_efficiency_8bit == Fraction(87, 100)
        assert hardware.get(name).gemm_backward_efficiency_8bit == 1
        assert hardware.get(name).with_runtime("megatron-core").ideal().gemm_backward_efficiency_8bit == 1
    assert hardware.get("B200").with_runtime("megatron-core").gemm_backward_efficiency_8bit == 1


def test_fp8_grouped_gemm_at_its_own_rate_without_its_own_quantizing_pass():
    """CHIP (fp8 peak 2e14, eta_mm8 1/4, q 8 bytes) with grouped terms eta_gg 5/4, eta_gg8 2,
    eta_ggmem 3/4, t_gg 4 us. 8 FP8 experts x 4 tokens, h 4096 -> 1024: compute
    2 * 8 * 4 * 1024 * 4096 = 268,435,456 FLOPs at 2e14 * 1/4 = 5e13, / 2 (eta_gg8, not 5/4);
    bytes 1 * 8 * (4*4096 + 4096*1024 + 4*1024) = 33,718,272 at 1e12 * 3/4; no serial pass, where
    the dense FP8 GEMM quantizes its 8 * 4 * 4096 = 131,072 input elements at 8 bytes each
    (1,048,576 bytes at 1e12: 1.05 us). The bf16 one keeps 5/4; unset eta_gg8 is eta_gg; 5 * 1/4 > 1:
    refused."""
    chip = CHIP.with_efficiency(grouped_gemm_efficiency=Fraction(5, 4), grouped_gemm_efficiency_8bit=2,
                                grouped_gemm_memory_efficiency=Fraction(3, 4), grouped_gemm_time=4 * US)
    up = Matmul("experts.up", m=4, n=1024, k=4096, dtype_bytes=1, batch=8, grouped=True)
    t = op_time(up, chip, chip.effective_peak(FP8), FP8)
    assert t.compute == sp.Rational(268435456, 5 * 10**13) / 2
    assert t.memory == sp.Rational(33718272 * 4, 3 * 10**12)
    assert t.serial == 0
    dense = Matmul("fc1", m=4, n=1024, k=4096, dtype_bytes=1, batch=8)
    assert op_time(dense, chip, chip.effective_peak(FP8), FP8).serial == sp.Rational(1048576, 10**12)
    wide = Matmul("experts.up", m=4, n=1024, k=4096, dtype_bytes=2, batch=8, grouped=True)
    assert op_time(wide, chip, chip.effective_peak(BF16), BF16).compute == sp.Rational(268435456, 5 * 10**13) * 4 / 5
    unset = chip.with_efficiency(grouped_gemm_efficiency_8bit=None)
    assert op_time(up, unset, chip.effective_peak(FP8), FP8).compute == sp.Rational(268435456, 5 * 10**13) * 4 / 5
    with pytest.raises(ValidationError, match="above the peak"):
        CHIP.with_efficiency(grouped_gemm_efficiency_8bit=5)


def test_fused_moe_quantizes_its_tokens_once_before_the_permutation():
    """The FP8 MoE's input, T = 4 tokens x h = 4096 = 16,384 elements, cast once (read 2, write 1
    byte: 49,152 bytes) at 1e12 * 1/2 (memory_efficiency) = 98.304 ns, + kernel_time 1 us; nothing
    at bf16 and nothing under a per-expert engine (its GEMMs quantize their own rows). The MoE layer
    carries it at FP8 (one op, T*h elements), not at bf16."""
    from symcost.core.ops import GroupedInputQuantize

    x = GroupedInputQuantize("experts_quantize", elements=16384, read_bytes=32768, write_bytes=16384)
    assert x.kernel == "gemm.grouped.quantize"
    assert op_time(x, CHIP, CHIP.effective_peak(FP8), FP8).time == sp.Rational(49152 * 2, 10**12) + US
    assert op_time(x, CHIP, CHIP.effective_peak(BF16), BF16).time == 0
    per_expert = CHIP.with_efficiency(runtime=Runtime(name="per-expert", cuda_graphs=True, grouped_gemm="per_expert"))
    assert op_time(x, per_expert, per_expert.effective_peak(FP8), FP8).time == 0
    moe = sc.MoELayer(hidden_size=4096, num_experts=8, top_k=2, expert_intermediate_size=1024)
    for dtype, expected in (("fp8_e4m3", [16384]), ("bf16", [])):
        m = moe.compute_metrics(batch_size=1, seq_len=4, phase="prefill", dtype=dtype, hardware="H100_SXM")
        assert [op.elements for op, _ in m.ops if op.kernel == "gemm.grouped.quantize"] == expected


def test_fused_moe_sorts_its_tokens_in_one_kernel_up_to_256_tokens_and_in_three_above():
    """TensorRT-LLM's fused MoE builds its expert maps in one kernel for at most 256 tokens
    (fusedBuildExpertMapsSortFirstTokenKernel, one CTA: ``num_tokens > 256`` "is not supported for fused
    moe prologues") and in three above (blockExpertPrefixSum, globalExpertPrefixSum, mergeExpertPrefixSum:
    threeStepBuildExpertMapsSortFirstToken, cpp/tensorrt_llm/kernels/cutlass_kernels/moe_gemm/moe_kernels.cu),
    as it does at any count for a top-k outside {1, 2, 4, 6, 8} or 511 and more experts per rank (the
    single CTA's radix rank takes at most 9 bits: floor(log2(E/ep + 1)) + 1 <= 9, E/ep <= 510). On
    CHIP (kernel_time 1 us): 256 tokens 1 us, 257 and 320 tokens 3 us; never fused, 1 token 3 us;
    nothing under a per-expert engine; a symbolic token count bound to 300 gives the 3 us."""
    from symcost.core.ops import ExpertMapSort
    from symcost.layers.moe import fused_sort_limit

    def sort(tokens, limit=256):
        return ExpertMapSort("expert_map_sort", tokens=tokens, fused_limit=limit)

    assert sort(256).kernel == "gemm.grouped.prologue"
    at = {t: op_time(sort(t), CHIP, CHIP.effective_peak(BF16), BF16).time for t in (1, 256, 257, 320)}
    assert at == {1: US, 256: US, 257: 3 * US, 320: 3 * US}
    assert op_time(sort(1, 0), CHIP, CHIP.effective_peak(FP8), FP8).time == 3 * US
    per_expert = CHIP.with_efficiency(runtime=Runtime(name="per-expert", cuda_graphs=True, grouped_gemm="per_expert"))
    assert op_time(sort(320), per_expert, per_expert.effective_peak(BF16), BF16).time == 0
    T = sp.Symbol("T", positive=True, integer=True)
    assert op_time(sort(T), CHIP, CHIP.effective_peak(BF16), BF16).time.xreplace({T: 300}) == 3 * US
    # the fused kernel's limits: top-k 1, 2, 4, 6, 8 and at most 510 experts per rank
    assert [fused_sort_limit(k, 16) for k in (1, 2, 3, 4, 6, 8, 10)] == [256, 256, 0, 256, 256, 256, 0]
    assert [fused_sort_limit(8, n) for n in (256, 510, 511, 512)] == [256, 256, 0, 0]


@pytest.mark.parametrize("top_k, experts, ep, tokens, kernels", [
    (2, 8, 1, 256, 1), (2, 8, 1, 320, 3),  # Mixtral-shaped: the 256 -> 320 token step
    (10, 512, 1, 4, 3),  # 512 experts, top-10: never the fused kernel
    (8, 512, 1, 4, 3), (8, 512, 2, 4, 1),  # 512 experts per rank at EP 1, 256 at EP 2 (8 rows)
    (8, 256, 2, 128, 1), (8, 256, 2, 129, 3),  # EP 2: 2 * 128 = 256 gathered rows fused, 258 not
])
def test_moe_layer_carries_one_expert_map_sort(top_k, experts, ep, tokens, kernels):
    """The MoE layer carries one expert-map sort over the ``ep * T`` rows its EP rank receives
    (TensorRT-LLM runs runMoe on every EP rank's tokens: all-gathered under attention DP, or the rows
    dispatched to it, about ep * T), timed as 1 kernel on the fused path and 3 on the three-step one
    (hand count above) at the chip's kernel_time."""
    moe = sc.MoELayer(hidden_size=1024, num_experts=experts, top_k=top_k, expert_intermediate_size=512,
                      parallelism={"expert_parallel": ep})
    m = moe.compute_metrics(batch_size=1, seq_len=tokens, phase="prefill", dtype="bf16", hardware=CHIP)
    sorts = [op for op, _ in m.ops if op.kernel == "gemm.grouped.prologue"]
    assert len(sorts) == 1 and sorts[0].tokens == ep * tokens
    assert op_time(sorts[0], CHIP, CHIP.effective_peak(BF16), BF16).time == kernels * US


def test_decode_under_ep8_sorts_every_ranks_tokens():
    """Decode at EP 8 with 64 tokens per rank (DeepSeek-V3-shaped: 256 experts, top-8, 32 per rank):
    each rank's runMoe sorts the 8 * 64 = 512 gathered rows (tensorrt_llm/_torch/modules/fused_moe/
    fused_moe_cutlass.py: under attention DP the inputs and token_selected_experts are all-gathered
    over the EP ranks before torch.ops.trtllm.fused_moe), 512 > 256: the three-step path, 3 kernels
    = 3 us on CHIP (64 rows alone would have been 1 kernel)."""
    moe = sc.MoELayer(hidden_size=1024, num_experts=256, top_k=8, expert_intermediate_size=512,
                      parallelism={"expert_parallel": 8})
    m = moe.compute_metrics(batch_size=64, seq_len=128, phase="decode", dtype="bf16", hardware=CHIP)
    sort, = [op for op, _ in m.ops if op.kernel == "gemm.grouped.prologue"]
    assert sort.tokens == 512
    assert op_time(sort, CHIP, CHIP.effective_peak(BF16), BF16).time == 3 * US


def test_fused_sort_limit_is_the_numeric_rule_on_substitution():
    """A symbolic top-k or EP degree keeps the rule and collapses to the numeric answer: 512 experts,
    top-8 at EP 1 (512 per rank > 510: 0), EP 2 (256: 256 tokens); top-10 never (0); 513 experts at
    EP 2: floor(513/2) = 256 per rank (TensorRT-LLM's experts per rank, num_experts / ep_size, is an
    integer division): 256; a non-integer top-k is refused."""
    from symcost.layers.moe import fused_sort_limit
    ep, k = sp.Symbol("ep", positive=True, integer=True), sp.Symbol("k", positive=True, integer=True)
    assert fused_sort_limit(8, 512 / ep).xreplace({ep: 1}) == 0
    assert fused_sort_limit(8, 512 / ep).xreplace({ep: 2}) == 256
    assert fused_sort_limit(k, 16).xreplace({k: 10}) == 0 and fused_sort_limit(k, 16).xreplace({k: 6}) == 256
    assert fused_sort_limit(8, sp.Rational(513, 2)) == 256
    with pytest.raises(sc.errors.ConfigError, match="top_k"):
        fused_sort_limit(sp.Rational(5, 2), 16)
    # the layer: expert_parallel symbolic, bound to 1 -> 0 (3 kernels at any T), to 2 -> 256
    from symcost import symbols as S
    sym = sc.MoELayer(hidden_size=1024, num_experts=512, top_k=8, expert_intermediate_size=512,
                      parallelism={"expert_parallel": S.ep}).compute_metrics(batch_size=1, seq_len=4, phase="prefill")
    sort, = [op for op, _ in sym.ops if op.kernel == "gemm.grouped.prologue"]
    limit = sp.sympify(sort.fused_limit)
    assert limit.xreplace({S.ep: 1}) == 0 and limit.xreplace({S.ep: 2}) == 256


@pytest.mark.parametrize("rule, tokens, top_k, experts, kernels", [
    # vLLM's moe_align_block_size (csrc/moe/moe_align_sum_kernels.cu): one small-batch kernel while
    # topk_ids.numel() = T k < 1024 and E <= 64, else two (align + count_and_sort)
    ("moe-align", 127, 8, 64, 1),   # 1016 pairs < 1024, 64 experts: small batch
    ("moe-align", 128, 8, 64, 2),   # 1024 pairs: general path
    ("moe-align", 1, 8, 65, 2),     # 65 experts: general path at any T
    ("moe-align", 500, 2, 8, 1),    # 1000 pairs, 8 experts: small batch (TensorRT-LLM would take 3)
    # TensorRT-LLM's 1-or-3 rule: 300 rows > 256 -> 3; 200 -> 1
    ("tensorrt-llm", 300, 2, 8, 3), ("tensorrt-llm", 200, 2, 8, 1),
    ("none", 300, 2, 8, 0),
])
def test_expert_map_sort_follows_the_engines_rule(rule, tokens, top_k, experts, kernels):
    """The sort's kernel count is the engine's (Runtime.moe_sort), at CHIP's kernel_time 1 us; a
    symbolic row count bound afterwards gives the same."""
    from symcost.layers.moe import expert_map_sort as sort_op
    chip = CHIP.with_efficiency(runtime=Runtime(name=f"sort-{rule}", cuda_graphs=True, moe_sort=rule))
    peak = chip.effective_peak(BF16)
    assert op_time(sort_op(sp.Integer(tokens), top_k, experts, 1), chip, peak, BF16).time == kernels * US
    T = sp.Symbol("T", positive=True, integer=True)
    assert op_time(sort_op(T, top_k, experts, 1), chip, peak, BF16).time.xreplace({T: tokens}) == kernels * US


def test_engine_profiles_carry_their_sort_rule():
    """vLLM and SGLang run moe_align_block_size (the same small-batch condition in both); TensorRT-LLM
    and the neutral profile (fitted on TensorRT-LLM's MoE tables) its 1-or-3 rule; Megatron-Core's
    per-expert GEMMs none. Under vLLM on H100 at 200 rows, top-2, 8 experts (400 pairs < 1024): 1
    kernel; 600 rows (1200 pairs): 2; TensorRT-LLM at 600 rows: 3."""
    from symcost.layers.moe import expert_map_sort as sort_op
    rules = {name: hardware.runtime(name).moe_sort for name in ("vllm", "sglang", "tensorrt-llm", "neutral")}
    assert rules == {"vllm": "moe-align", "sglang": "moe-align", "tensorrt-llm": "tensorrt-llm",
                     "neutral": "tensorrt-llm"}
    assert hardware.runtime("megatron-core").grouped_gemm == "per_expert"
    for engine, rows, kernels in (("vllm", 200, 1), ("vllm", 600, 2), ("tensorrt-llm", 600, 3)):
        chip = hardware.get("H100_SXM").with_runtime(engine)
        t = op_time(sort_op(sp.Integer(rows), 2, 8, 1), chip, chip.effective_peak(BF16), BF16)
        assert t.time == kernels * chip.kernel_time, engine


TRT = Runtime(name="round-trt", cuda_graphs=True, allreduce="trtllm-1.0")
ONE_SHOT = 3 * US  # alpha_c + t_coll + (n - 1) alpha_c,p on CHIP: 3 us + 0 + 0


def test_custom_all_reduce_one_shot_pushes_each_token_from_its_own_block():
    """TensorRT-LLM 1.0's Lamport one-shot below SM 90 runs one thread block per token (cluster size 1,
    grid = min(SMs, tokens): allreduce_fusion_kernel_launcher, allReduceFusionKernels.cu), each
    block storing its token's row into all n chips' buffers and polling the n copies back: n * M/T
    bytes per block at R_cb. Over 8 chips at 100 GB/s * 1/2, R_cb = 10^10 B/s, 4 tokens of 4 KB
    (M = 16 KB): one-shot 3 us + 7 M / 5e10 + 8 * 4096 / 1e10 = 3 + 2.29376 + 3.2768 us. The
    same 16 KB as one token: 8 * 16384 / 1e10 = 13.1072 us for the block. R_cb unset, or another
    all-reduce rule than "trtllm-1.0" (SM >= 90 spreads a token over a cluster of 8 blocks): no term."""
    chip = CHIP.with_efficiency(custom_allreduce_block_rate=10**10, runtime=TRT)
    link = Fraction(7 * 16384, 5 * 10**10)  # (n - 1) M / (B_up eta_c) = 7 * 16384 / (1e11 / 2)
    four = Collective("all_reduce", "tp", 8, 16384, tokens=4)
    assert collective_algorithms(four, chip)["custom"] == ONE_SHOT + link + Fraction(8 * 4096, 10**10)
    one = Collective("all_reduce", "tp", 8, 16384, tokens=1)
    assert collective_algorithms(one, chip)["custom"] == ONE_SHOT + link + Fraction(8 * 16384, 10**10)
    # max(1, T): half a token's row still runs one block carrying all M bytes: 8 * 16384 / 1e10
    half = Collective("all_reduce", "tp", 8, 16384, tokens=sp.Rational(1, 2))
    assert collective_algorithms(half, chip)["custom"] == ONE_SHOT + link + Fraction(8 * 16384, 10**10)
    # the two-shot has no such term; on a chip without R_cb, or under the "custom" rule, the one-shot neither
    assert collective_algorithms(four, chip)["custom_two_shot"] == collective_algorithms(four, CHIP)["custom_two_shot"]
    assert collective_algorithms(four, CHIP)["custom"] == ONE_SHOT + link
    other_rule = CHIP.with_efficiency(custom_allreduce_block_rate=10**10)
    assert collective_algorithms(four, other_rule)["custom"] == ONE_SHOT + link


def test_custom_all_reduce_one_shot_without_tokens_is_one_block():
    """Without ``tokens`` the block count is unknown: the whole message is taken as one block's
    (T = 1, the slowest the one-shot can be), never dropped (a collective without tokens must not
    come out faster than the same with them): 3 + 2.29376 + 8 * 16384 / 1e10 = 3 + 2.29376 + 13.1072 us."""
    chip = CHIP.with_efficiency(custom_allreduce_block_rate=10**10, runtime=TRT)
    bare = Collective("all_reduce", "tp", 8, 16384)
    assert collective_algorithms(bare, chip)["custom"] == ONE_SHOT + Fraction(7 * 16384, 5 * 10**10) \
        + Fraction(8 * 16384, 10**10)


def test_custom_all_reduce_one_shot_blocks_loop_past_the_sm_count():
    """The grid is min(SMs, tokens) blocks and each loops over tokens with stride gridDim.x
    (IndexHelper token_stride), so with S = 108 SMs (A100) and T = 128 tokens of 4096 bytes the
    slowest block carries ceil(128/108) = 2 rows: 8 * 4096 * 2 / 1e10 = 6.5536 us, plus the one-shot's
    3 us + 7 * 128 * 4096 / 5e10 = 73.40032 us. At 108 tokens each block carries one row: 3.2768 us."""
    chip = CHIP.with_efficiency(custom_allreduce_block_rate=10**10, runtime=TRT, compute_units=108)
    full = Collective("all_reduce", "tp", 8, 128 * 4096, tokens=128)
    assert collective_algorithms(full, chip)["custom"] == ONE_SHOT + Fraction(7 * 128 * 4096, 5 * 10**10) \
        + Fraction(8 * 4096 * 2, 10**10)
    fits = Collective("all_reduce", "tp", 8, 108 * 4096, tokens=108)
    assert collective_algorithms(fits, chip)["custom"] == ONE_SHOT + Fraction(7 * 108 * 4096, 5 * 10**10) \
        + Fraction(8 * 4096, 10**10)


def test_nccl_ties_go_to_the_earlier_protocol():
    """NCCL keeps the first least estimate in the order LL, LL128, Simple (enqueue.cc
    ``topoGetAlgoInfo``: a later protocol replaces the best only on a strictly smaller time). On
    the round Ampere chip (NCCL's B = 80 GB/s) an all-gather over 2 chips has LL's estimate 7.2 us +
    M / 80 GB/s and Simple's 11.8 us + M / 160 GB/s: equal at M = 4.6 us * 160 GB/s = 736,000 B
    (both 16.4 us; LL128's 15.9 + 5.0 = 20.9 us above). NCCL runs LL there: 5 + 0.5 us + the
    368,000 B sent at 1/4 of 100 GB/s = 14.72 us, 20.22 us in all (Simple would take 31 + 3.68)."""
    nccl = CHIP.with_efficiency(compute_capability="8.0", collective_base_latency=30 * US).with_runtime(
        Runtime(name="n", cuda_graphs=True))
    assert collective_time(Collective("all_gather", "tp", 2, 736_000), nccl) == Fraction(2022, 100) * US


def test_nccl_picks_the_reduce_scatter_protocol_by_its_own_estimate():
    """A reduce-scatter over 8 chips (7 steps, bus-to-algorithm factor 8/7) on the round Ampere
    chip (NCCL's B = 80 GB/s; LL 40, LL128 min(73.6, 240) = 73.6, Simple 80 GB/s of bus bandwidth):
    estimates LL 6.6 + 7 * 0.6 = 10.8 us + M / 45.714 GB/s, LL128 14 + 7 * 1.9 = 27.3 us + M / 84.114
    GB/s, Simple 8.4 + 7 * 3.4 = 32.2 us + M / 91.429 GB/s. At M = 2 MB: LL 54.55, LL128 27.3 + 23.78
    = 51.08, Simple 32.2 + 21.875 = 54.075 us: LL128, whose own time is 27.3 us plus the 1.75 MB sent
    (7/8 of M) at 120/128 of 100 GB/s = 18.67 us. At 100 kB: LL 12.99, LL128 28.49, Simple 33.29 us:
    LL, 5 + 7 * 0.5 = 8.5 us + 87,500 B / 25 GB/s = 3.5 us, 12 us."""
    nccl = CHIP.with_efficiency(compute_capability="8.0", collective_base_latency=30 * US).with_runtime(
        Runtime(name="n", cuda_graphs=True))
    big = collective_time(Collective("reduce_scatter", "tp", 8, 2 * 10**6), nccl)
    assert big == Fraction(273, 10) * US + Fraction(175 * 10**4 * 128, 120 * 10**11)
    assert collective_time(Collective("reduce_scatter", "tp", 8, 10**5), nccl) == 12 * US


def test_nccl_ring_rule_only_on_the_data_centre_capabilities():
    """NCCL's NVLink tables describe the data-centre parts (8.0, 9.0, 10.0, 10.3); an 8.6 or 8.9 GPU
    (A40/A6000 on an NVLink bridge, L40S/L4 on PCIe) has PCI latencies there (hwLat {1.0, 2.5, 5.7})
    and LL128 only over NVLink (typeIntra <= PATH_NVB): symcost keeps the fastest of the Simple and
    LL forms there. The A100 preset at 8.0 runs LL128 for 4 MB over 8 (estimates LL 15 + 79.8, LL128
    40.6 + 31.7, Simple 56 + 29.2 us); set to 8.9 it takes the faster of its Simple and LL forms."""
    from symcost.hardware.timing import nccl_ring_tuning

    a100 = hardware.get("A100_SXM_80GB")
    c = Collective("all_reduce", "tp", 8, 4 * 10**6)
    sent, steps = Fraction(2 * 7 * 4 * 10**6, 8), 14
    ll128 = Fraction(14, 10**6) + steps * Fraction(19, 10**7) + sent * 128 / (
        120 * a100.scale_up_bandwidth * a100.network_efficiency)
    assert collective_time(c, a100) == ll128
    ada = a100.with_efficiency(compute_capability="8.9")
    simple = ada.collective_base_latency + steps * ada.collective_latency + sent / (
        ada.scale_up_bandwidth * ada.network_efficiency)
    ll = ada.ll_base_latency + steps * ada.ll_latency + sent / (
        ada.scale_up_bandwidth * ada.network_efficiency * ada.ll_efficiency)
    assert collective_time(c, ada) == min(simple, ll) != ll128
    assert [nccl_ring_tuning(a100.with_efficiency(compute_capability=v)) is None
            for v in ("8.0", "8.6", "8.9", "9.0", "10.0", "10.3", "12.0")] == [
        False, True, True, False, False, False, True]


def test_ll_base_latency_of_a_second_or_more_is_refused():
    """The symbolic chip tells a chip without LL terms (alpha_LL0 bound to oo) by alpha_LL0 < 1 s; a
    chip whose LL call takes a second or more would read as one without them: refused in one line."""
    with pytest.raises(ValidationError, match="ll_base_latency must be under 1 s"):
        CHIP.with_efficiency(ll_base_latency=1)
    assert CHIP.with_efficiency(ll_base_latency=Fraction(999, 1000)).ll_base_latency == Fraction(999, 1000)


def test_symbolic_chip_of_the_structure_binds_to_nccls_protocol():
    """Review of op-nccl, item 1: the ring's protocol depends on the compute capability, so a chip
    with LL terms and a capability NCCL's rule covers has it in its structure, and the symbolic chip
    built from it (``**chip.structure``) binds to the numeric time: H100's MLP (8192, 28672) at TP 8,
    prefill b = 1, s = 256 (one 4 MiB all-reduce, LL128 under NCCL's rule) and A100's 1 MiB
    all-reduce over 2 (Simple). A symbolic chip of another capability is refused."""
    from symcost import MLPLayer

    h100, a100 = hardware.get("H100_SXM"), hardware.get("A100_SXM_80GB")
    assert (h100.structure["compute_capability"], a100.structure["compute_capability"]) == ("9.0", "8.0")
    mlp = MLPLayer(hidden_size=8192, intermediate_size=28672, parallelism={"tensor_parallel": 8})
    symbolic = mlp.compute_metrics(batch_size=1, seq_len=256, phase="prefill",
                                   hardware=Hardware.symbolic(realistic=True, **h100.structure))
    numeric = mlp.compute_metrics(batch_size=1, seq_len=256, phase="prefill", dtype="bf16", hardware=h100)
    assert symbolic.evaluate(dtype="bf16", hardware=h100).latency == numeric.latency
    pair = Collective("all_reduce", "tp", 2, 2**20)
    twin = Hardware.symbolic(realistic=True, **a100.structure)
    assert collective_time(pair, twin).xreplace(a100.symbol_values("bf16")) == collective_time(pair, a100)
    hopper = mlp.compute_metrics(batch_size=1, seq_len=256, phase="prefill",
                                 hardware=Hardware.symbolic(realistic=True, compute_capability="9.0"))
    for chip in (a100, hardware.get("MI300X")):
        with pytest.raises(sc.errors.HardwareError, match="compute_capability"):
            hopper.evaluate(dtype="bf16", hardware=chip)

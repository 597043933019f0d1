"""Context parallelism (docs/conventions.md §3b): hand derivations at small round shapes, the
exact causal load balance counted pair by pair, cp = 1 reproducing today's numbers, MLA, the
steps (memory, DP group over dp*cp) and bad input.

Shapes of the hand derivations: b = 2 sequences, s = 16 tokens, h = 32, a = 4 query heads of
d = 8, g = 2 KV heads, bf16 (e = 2), flash attention, causal, cp = 2 (so each chip holds
T = b*s/cp = 16 tokens).
"""

from __future__ import annotations

import itertools

import pytest
import sympy as sp

import symcost as sc
from symcost import symbols as S
from symcost.core.metrics import METRIC_FIELDS
from symcost.core.ops import AttentionCore
from symcost.errors import ConfigError
from symcost.hardware.timing import collective_time

B, SEQ, H, A, G, D, E = 2, 16, 32, 4, 2, 8, 2


def _gqa(cp=1, comm="p2p", causal=True, **par):
    return sc.GroupedQueryAttentionLayer(hidden_size=H, num_heads=A, num_kv_heads=G, causal=causal,
                                         parallelism={"context_parallel": cp, "cp_comm_type": comm, **par})


def _records(m) -> dict:
    return {(c.kind, c.axis, int(c.group_size), int(c.payload_bytes)): int(c.count) for c in m.collectives}


# -- the load balance ------------------------------------------------------------------------------


def _chip_pairs(s: int, cp: int, rank: int) -> int:
    """Causal (query, key) pairs of chip ``rank`` under Megatron's chunking, counted one by one:
    2*cp chunks of s/(2cp) tokens, the chip keeps chunks rank and 2cp-1-rank; query q sees keys 0..q."""
    m = s // (2 * cp)
    queries = [q for chunk in (rank, 2 * cp - 1 - rank) for q in range(chunk * m, (chunk + 1) * m)]
    return sum(1 for q in queries for k in range(s) if k <= q)


@pytest.mark.parametrize("s, cp", [(8, 2), (16, 2), (16, 4), (24, 3), (64, 8)])
def test_causal_load_balance_is_exactly_total_over_cp(s, cp):
    """Every chip scores exactly s(s+1)/2 / cp causal pairs, and AttentionCore's share says so."""
    total = s * (s + 1) // 2
    per_chip = [_chip_pairs(s, cp, r) for r in range(cp)]
    assert per_chip == [total // cp] * cp and total % cp == 0
    core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=s, kv_len=s, head_dim=1, causal=True,
                         context_parallel=cp)
    assert core.pairs == total // cp


def test_unbalanced_contiguous_split_is_not_even():
    """Why the chunking matters: a contiguous split (chip i keeps tokens i*s/cp..) gives the last
    chip 3x the first's pairs at cp = 2, s = 8: 10 against 26."""
    s, cp = 8, 2
    pairs = [sum(1 for q in range(r * s // cp, (r + 1) * s // cp) for k in range(s) if k <= q) for r in range(cp)]
    assert pairs == [10, 26]


def test_symbolic_share_is_whole_over_cp():
    """Symbolically, the causal share is s(s+1)/(2 cp) and a non-causal one s^2/cp."""
    s, c = S.seq_len, S.cp
    causal = AttentionCore("c", q_len=s, kv_len=s, causal=True, context_parallel=c)
    full = AttentionCore("c", q_len=s, kv_len=s, context_parallel=c)
    assert sp.cancel(causal.pairs - s * (s + 1) / (2 * c)) == 0
    assert sp.cancel(full.pairs - s ** 2 / c) == 0


# -- one GQA layer by hand -------------------------------------------------------------------------


def test_prefill_flops_by_hand():
    """T = 16 tokens per chip. qkv 2*T*(a+2g)*d*h = 2*16*8*8*32 = 65,536; core 4*b*a*pairs*d with
    pairs = 16*17/2/2 = 68: 4*2*4*68*8 = 17,408; out 2*T*h*(a*d) = 2*16*32*32 = 32,768.
    Total 115,712, exactly half of the cp = 1 layer's 231,424."""
    m = _gqa(2).compute_metrics(batch_size=B, seq_len=SEQ, phase="prefill", dtype="bf16")
    assert m.matmul_flops_per_chip == 65_536 + 17_408 + 32_768 == 115_712
    whole = _gqa(1).compute_metrics(batch_size=B, seq_len=SEQ, phase="prefill", dtype="bf16")
    assert whole.matmul_flops_per_chip == 231_424 == 2 * m.matmul_flops_per_chip


def test_training_flops_by_hand():
    """Projections 3x (forward, dgrad, wgrad): 3*(65,536 + 32,768) = 294,912; the flash core
    forward 17,408 and backward 5/2 of it, 43,520: 355,840."""
    m = _gqa(2).compute_metrics(batch_size=B, seq_len=SEQ, phase="training", dtype="bf16")
    assert m.matmul_flops_per_chip == 294_912 + 17_408 + 43_520 == 355_840


def test_ring_communication_by_hand():
    """p2p: the KV chunk M = b*(s/cp)*g*2*d*e = 2*8*2*2*8*2 = 1,024 bytes. Prefill: cp-1 = 1 send.
    Training: K, V forward (1) and again in the backward (1), dK, dV cp = 2 times: 4 sends, 4,096
    bytes sent."""
    prefill = _gqa(2).compute_metrics(batch_size=B, seq_len=SEQ, phase="prefill", dtype="bf16")
    assert _records(prefill) == {("p2p", "cp", 2, 1024): 1}
    assert prefill.comm_bytes_per_chip == 1024
    training = _gqa(2).compute_metrics(batch_size=B, seq_len=SEQ, phase="training", dtype="bf16")
    assert _records(training) == {("p2p", "cp", 2, 1024): 4}
    assert training.comm_bytes_per_chip == 4096


def test_ring_communication_cp4():
    """cp = 4, s = 16: s/cp = 4 tokens, M = b*4*g*2*d*e = 2*4*2*2*8*2 = 512 bytes over 3 hops;
    training 3 + 3 + 4 = 10 sends."""
    training = _gqa(4).compute_metrics(batch_size=B, seq_len=SEQ, phase="training", dtype="bf16")
    assert _records(training) == {("p2p", "cp", 4, 512): 10}


def test_all_gather_communication_by_hand():
    """all_gather: forward one all-gather of the whole K, V, b*s*g*2*d*e = 2,048 bytes ((cp-1)/cp of
    it sent: 1,024); training adds the backward's re-gather and the reduce-scatter of dK, dV."""
    prefill = _gqa(2, "all_gather").compute_metrics(batch_size=B, seq_len=SEQ, phase="prefill", dtype="bf16")
    assert _records(prefill) == {("all_gather", "cp", 2, 2048): 1}
    assert prefill.comm_bytes_per_chip == 1024
    training = _gqa(2, "all_gather").compute_metrics(batch_size=B, seq_len=SEQ, phase="training", dtype="bf16")
    assert _records(training) == {("all_gather", "cp", 2, 2048): 2, ("reduce_scatter", "cp", 2, 2048): 1}
    assert training.comm_bytes_per_chip == 3 * 1024


def test_memory_by_hand():
    """Prefill KV cache 2*b*(s/cp)*g*d*e = 2*2*8*2*8*2 = 1,024 (half of cp = 1's 2,048). Peak
    activations: 2*T*h + T*(2a+2g)*d = 1,024 + 1,536 elements = 5,120 bytes, plus the other
    rank's KV chunk (1,024; Min(2, cp-1) = 1 chunk in flight at cp = 2). Training saves the input
    T*h*e = 1,024, Q, K, V, O T*(2a+2g)*d*e = 3,072
    and the fp32 log-sum-exp 4*b*a*(s/cp) = 256: 4,352, half of cp = 1's."""
    prefill = _gqa(2).compute_metrics(batch_size=B, seq_len=SEQ, phase="prefill", dtype="bf16")
    assert prefill.kv_cache_memory_per_chip == 1024
    assert prefill.activation_memory_per_chip == 5120 + 1024
    training = _gqa(2).compute_metrics(batch_size=B, seq_len=SEQ, phase="training", dtype="bf16")
    whole = _gqa(1).compute_metrics(batch_size=B, seq_len=SEQ, phase="training", dtype="bf16")
    assert training.activation_memory_per_chip == 4352 and whole.activation_memory_per_chip == 8704


def test_decode_by_hand():
    """Decode over s = 16 cached keys at cp = 2: each chip keeps and reads 8 of them (cache
    2*b*8*g*d*e = 1,024), the core 4*b*a*1*8*d = 2,048 FLOPs, and one all-reduce of the core's
    output b*a*d*e = 128 bytes over the 2 CP ranks combines the partial results."""
    m = _gqa(2).compute_metrics(batch_size=B, seq_len=SEQ, phase="decode", dtype="bf16")
    whole = _gqa(1).compute_metrics(batch_size=B, seq_len=SEQ, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 1024
    assert whole.matmul_flops_per_chip - m.matmul_flops_per_chip == 4 * B * A * 8 * D == 2048
    assert _records(m) == {("all_reduce", "cp", 2, 128): 1}


def test_selective_recompute_reruns_the_ring():
    """Selective recomputation re-runs the core, so its forward KV exchange: one more send."""
    m = _gqa(2).compute_metrics(batch_size=B, seq_len=SEQ, phase="training", dtype="bf16", recompute="selective")
    assert _records(m) == {("p2p", "cp", 2, 1024): 5}


def test_with_tensor_and_ulysses_parallelism():
    """t = 2, Ulysses sp = 2, cp = 2 (8 chips): T = b*s/(sp*cp) = 8 tokens; after the Ulysses
    all-to-all the core has a/(t*sp) = 1 head and g/(t*sp) = 1 KV head... of g = 2, so 2/Min(2, 4)
    = one whole KV head per chip; the KV chunk b*(s/cp)*1*2*d*e = 2*8*2*8*2 = 512 bytes."""
    m = _gqa(2, tensor_parallel=2, sequence_parallel=2).compute_metrics(
        batch_size=B, seq_len=SEQ, phase="prefill", dtype="bf16")
    p2p = [c for c in m.collectives if c.kind == "p2p"]
    assert [(c.axis, c.group_size, c.payload_bytes, c.count, c.span) for c in p2p] == [("cp", 2, 512, 1, 8)]
    # core: 4*b*1*pairs*d with pairs 68: 4*2*68*8 = 4,352
    core = [op for op, _ in m.ops if isinstance(op, AttentionCore)][0]
    assert core.matmul_flops == 4352


# -- cp = 1 is today's layer -----------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["prefill", "decode", "training"])
def test_symbolic_cp_at_one_is_the_plain_layer(phase):
    """A symbolic cp takes the context-parallel path; at cp = 1 every field equals the plain layer's
    (the ring's sends vanish: count cp - 1, and a p2p in a group of one costs nothing)."""
    chip = sc.hardware.H100_SXM
    plain = _gqa(1).compute_metrics(batch_size=B, seq_len=SEQ, phase=phase, dtype="bf16", hardware=chip)
    symbolic = _gqa(S.cp).compute_metrics(batch_size=B, seq_len=SEQ, phase=phase, dtype="bf16", hardware=chip)
    for field in ("matmul_flops_per_chip", "flops_per_chip", "hbm_bytes_per_chip", "activation_memory_per_chip",
                  "kv_cache_memory_per_chip", "comm_bytes_per_chip", "latency"):
        got = sp.sympify(getattr(symbolic, field)).xreplace({S.cp: sp.Integer(1)})
        assert got == getattr(plain, field), field


@pytest.mark.parametrize("comm", ["p2p", "all_gather"])
@pytest.mark.parametrize("phase", ["prefill", "decode", "training"])
def test_symbolic_cp_subs_one_is_the_numeric_build(phase, comm):
    """`.subs(cp=1)` and `.evaluate(cp=1)` of metrics built with cp = S.cp give the values of the
    numeric cp = 1 build, field by field, and no collective: the ring's cp - 1 sends are none and a
    group of one sends nothing (it raised "Collective.count must be a positive integer, got 0")."""
    chip = sc.hardware.H100_SXM
    plain = _gqa(1, comm).compute_metrics(batch_size=B, seq_len=SEQ, phase=phase, dtype="bf16", hardware=chip)
    symbolic = _gqa(S.cp, comm).compute_metrics(batch_size=B, seq_len=SEQ, phase=phase, dtype="bf16",
                                                hardware=chip)
    for at_one in (symbolic.subs(cp=1), symbolic.evaluate(cp=1)):
        assert {f: getattr(at_one, f) for f in METRIC_FIELDS} == {f: getattr(plain, f) for f in METRIC_FIELDS}
        assert at_one.collectives == plain.collectives == ()
        assert at_one.bound == plain.bound


def test_symbolic_cp_subs_one_on_a_model(tiny):
    """The same for a whole model's metrics (2 layers, TP 2): subs(cp=1) is the numeric cp = 1
    build, its TP all-reduces kept and nothing on the cp axis."""
    chip = sc.hardware.H100_SXM
    kw = dict(batch_size=1, seq_len=1024, phase="prefill", dtype="bf16", hardware=chip)
    plain = tiny.with_parallelism({"tensor_parallel": 2}).compute_metrics(**kw)
    symbolic = tiny.with_parallelism({"tensor_parallel": 2, "context_parallel": S.cp}).compute_metrics(**kw)
    at_one = symbolic.subs(cp=1)
    assert {f: getattr(at_one, f) for f in METRIC_FIELDS} == {f: getattr(plain, f) for f in METRIC_FIELDS}
    assert at_one.collectives == plain.collectives and {c.axis for c in plain.collectives} == {"tp"}


def test_default_parallelism_has_no_cp():
    """Parallelism() has cp = 1 and the p2p ring: chips per replica t*sp as before."""
    p = sc.Parallelism(tensor_parallel=4, sequence_parallel=2)
    assert (p.cp, p.cp_comm_type, p.chips_per_replica) == (1, "p2p", 8)
    assert sc.Parallelism(tensor_parallel=4, context_parallel=2).chips_per_replica == 8


def test_symbolic_layer_flops_divide_by_cp():
    """Symbolic GQA, causal, prefill: matmul FLOPs with cp are the plain ones over cp."""
    plain = sc.GroupedQueryAttentionLayer(causal=True).compute_metrics(phase="prefill")
    split = sc.GroupedQueryAttentionLayer(causal=True, parallelism={"context_parallel": S.cp}).compute_metrics(
        phase="prefill")
    assert sp.cancel(split.matmul_flops_per_chip - plain.matmul_flops_per_chip / S.cp) == 0
    (ring,) = split.collectives
    # b*(s/cp)*g*(d + d)*e with d = h/a
    assert sp.cancel(ring.payload_bytes - S.batch_size * S.seq_len / S.cp * S.num_kv_heads * 2 * S.hidden_size
                     / S.num_heads * S.dtype_bytes) == 0
    assert sp.cancel(ring.count - (S.cp - 1)) == 0


def test_latex_prints_cp():
    """The canonical symbol prints as n_cp."""
    assert sp.latex(S.cp, symbol_names=S.latex_names()) == r"n_{\mathrm{cp}}"
    assert S.cp.is_integer and S.cp.is_positive
    m = sc.GroupedQueryAttentionLayer(causal=True, parallelism={"context_parallel": S.cp}).compute_metrics(
        phase="prefill")
    assert r"2 n_{\mathrm{cp}}" in m.to_latex()  # the causal core's s(s+1)/(2 cp)


# -- MLA -------------------------------------------------------------------------------------------


def _mla(cp):
    return sc.MLALayer(hidden_size=64, num_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=8,
                       qk_rope_head_dim=4, v_head_dim=8, causal=True, parallelism={"context_parallel": cp})


def test_mla_context_parallel():
    """MLA, b = 2, s = 16, cp = 2: the core scores 16*17/2/2 = 68 pairs per head and sequence,
    2*b*a*68*(d_qk + d_v) = 2*2*4*68*20 = 21,760 FLOPs; the ring carries the expanded per-head K
    (d_qk = 12) and V (d_v = 8) of s/cp tokens: 2*8*4*20*2 = 2,560 bytes; decode keeps s/cp
    latents: 2*8*(16 + 4)*2 = 640 bytes."""
    m = _mla(2).compute_metrics(batch_size=2, seq_len=16, phase="prefill", dtype="bf16")
    core = [op for op, _ in m.ops if isinstance(op, AttentionCore)][0]
    assert core.matmul_flops == 21_760
    assert _records(m) == {("p2p", "cp", 2, 2560): 1}
    decode = _mla(2).compute_metrics(batch_size=2, seq_len=16, phase="decode", dtype="bf16")
    assert decode.kv_cache_memory_per_chip == 640
    assert _records(decode) == {("all_reduce", "cp", 2, 2 * 4 * 16 * 2): 1}


# -- steps -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return sc.Model.llama(hidden_size=256, num_heads=8, num_kv_heads=4, num_layers=2, vocab_size=1024,
                                 intermediate_size=512)


def test_training_step_dp_group_spans_dp_times_cp(tiny):
    """CP ranks hold the same weights: with cp = 2, dp = 1 the gradient reduction, ZeRO shards and
    weights per chip are those of dp = 2, cp = 1 (a group of 2 ranks, stride t); the chips are
    t*cp*dp; the micro-batches per replica B/(dp*b)."""
    kw = dict(seq_len=1024, global_batch=4, micro_batch=1, zero_stage=1)
    cp = tiny.training_step("H100_SXM", parallelism={"tensor_parallel": 2, "context_parallel": 2}, **kw)
    dp = tiny.training_step("H100_SXM", parallelism={"tensor_parallel": 2, "data_parallel": 2}, **kw)
    assert cp.num_chips == dp.num_chips == 4
    assert cp.dp_comm_time == dp.dp_comm_time
    assert (cp.weight_memory, cp.gradient_memory, cp.optimizer_memory) == \
        (dp.weight_memory, dp.gradient_memory, dp.optimizer_memory)
    assert cp.num_microbatches == 4 and dp.num_microbatches == 2


def test_training_step_activations_halve(tiny):
    """Every activation holds s/cp tokens (flash attention: nothing grows with s^2), so the
    activation memory per chip at cp = 2 is exactly half of cp = 1's."""
    kw = dict(seq_len=1024, global_batch=4, micro_batch=1)
    one = tiny.training_step("H100_SXM", **kw)
    two = tiny.training_step("H100_SXM", parallelism={"context_parallel": 2}, **kw)
    assert 2 * two.activation_memory == one.activation_memory


def test_inference_step_kv_cache_halves(tiny):
    """The KV cache per chip is KV/cp: 2 layers * 2*b*s*g*d*e = 2*2*1*4096*4*32*2 = 4,194,304 at
    cp = 1, 2,097,152 at cp = 2."""
    one = tiny.inference_step("H100_SXM", 1, 4096)
    two = tiny.inference_step("H100_SXM", 1, 4096, parallelism={"context_parallel": 2})
    assert one.kv_cache_memory == 4_194_304 and two.kv_cache_memory == 2_097_152


def test_ring_time_is_nccl_p2p(tiny):
    """The ring's time is the existing p2p model: per send alpha_0 + one hop + M / link (NCCL)."""
    chip = sc.hardware.H100_SXM.ideal()
    m = _gqa(2).compute_metrics(batch_size=B, seq_len=SEQ, phase="prefill", dtype="bf16", hardware=chip)
    (ring,) = m.collectives
    expected = chip.collective_base_latency + chip.runtime.collective_overhead + chip.collective_latency \
        + sp.Rational(1024) / (chip.scale_up_bandwidth * chip.network_efficiency)
    assert collective_time(ring, chip) == expected


# -- bad input -------------------------------------------------------------------------------------


def test_seq_len_must_split_into_2cp_chunks():
    """Prefill at s = 12 with cp = 4 (8 chunks) is refused naming the rule."""
    with pytest.raises(ValueError, match="2 \\* context_parallel"):
        _gqa(4).compute_metrics(batch_size=1, seq_len=12, phase="prefill", dtype="bf16")


def _megatron_sp_cp(cp=4, **kw):
    # t = 8 with Megatron sequence parallelism (sequence_parallel="tp"); 8 query heads, 2 KV heads
    return sc.GroupedQueryAttentionLayer(hidden_size=256, num_heads=8, num_kv_heads=2, causal=True, parallelism={
        "tensor_parallel": 8, "sequence_parallel": "tp", "context_parallel": cp, **kw})


@pytest.mark.parametrize("phase", ["prefill", "training"])
def test_megatron_sp_with_cp_needs_2cp_t_to_divide_seq_len(phase):
    """TP 8 with sequence_parallel="tp" and cp 4: each of the 2*cp = 8 load-balanced chunks is split
    over the 8 TP ranks, so s must be a multiple of 2*4*8 = 64 (NVIDIA NeMo-RL pads packed
    sequences to cp_size * 2 * tp_size when both are on). s = 40 would give 40/(4*8) = 5/4 tokens
    per chip: refused in one line naming the rule and the numbers; s = 64 gives 2 tokens per chip."""
    with pytest.raises(ValueError, match=r'2 \* context_parallel \* tensor_parallel under sequence_parallel="tp"'
                                         r".*\(got 40 and 64\)$"):
        _megatron_sp_cp().compute_metrics(batch_size=1, seq_len=40, phase=phase, dtype="bf16")
    with pytest.raises(ValueError, match=r"\(got 96 and 64\)$"):  # 96 = 12 * 8: divisible by 2*cp and by cp*t
        _megatron_sp_cp().compute_metrics(batch_size=1, seq_len=96, phase=phase, dtype="bf16")
    ok = _megatron_sp_cp().compute_metrics(batch_size=1, seq_len=64, phase="prefill", dtype="bf16")
    # the sequence-sharded output all-gather: b * (s/cp) * h * e = 1 * 16 * 256 * 2 bytes, 2 tokens per chip
    assert ("all_gather", "tp", 8, 16 * 256 * 2) in _records(ok)


def test_megatron_sp_with_symbolic_cp_carries_the_rule():
    """With cp and s symbols the rule is an assumption of the metrics: subs(cp=4, seq_len=40)
    raises it, seq_len=64 satisfies it; decode (no token split under Megatron SP) does not need it."""
    m = _megatron_sp_cp(S.cp).compute_metrics(batch_size=1, phase="prefill", dtype="bf16")
    rules = [a for a in m.assumptions if "2 * context_parallel * tensor_parallel" in a.rule]
    assert [a.pairs for a in rules] == [((S.seq_len, 16 * S.cp),)]
    with pytest.raises(ValueError, match=r"tensor_parallel under sequence_parallel=\"tp\".*\(got 40 and 64\)$"):
        m.subs(cp=4, seq_len=40)
    assert m.subs(cp=4, seq_len=64).matmul_flops_per_chip == _megatron_sp_cp().compute_metrics(
        batch_size=1, seq_len=64, phase="prefill", dtype="bf16").matmul_flops_per_chip
    decode = _megatron_sp_cp(S.cp).compute_metrics(batch_size=1, phase="decode", dtype="bf16")
    assert not [a for a in decode.assumptions if "tensor_parallel under" in a.rule]


def test_bad_cp_comm_type():
    """An unknown exchange is one line; Megatron's a2a points to the Ulysses degree."""
    with pytest.raises(ValueError, match="use sequence_parallel"):
        sc.Parallelism(cp_comm_type="a2a")
    with pytest.raises(ValueError, match="context_parallel"):
        sc.Parallelism(context_parallel=0)


def test_chunked_prefill_with_cp_is_refused(tiny):
    with pytest.raises(ConfigError, match="context_parallel"):
        tiny.inference_step("H100_SXM", 1, 4096, parallelism={"context_parallel": 2}, prefill_chunk=1024)


def test_all_combinations_of_small_degrees_divide_flops():
    """Per-chip matmul FLOPs x chips = whole, for t, sp, cp in {1, 2} (a = 4, g = 2 divide t*sp)."""
    whole = _gqa(1).compute_metrics(batch_size=B, seq_len=SEQ, phase="prefill", dtype="bf16").matmul_flops_per_chip
    for t, u, c in itertools.product((1, 2), repeat=3):
        m = _gqa(c, tensor_parallel=t, sequence_parallel=u).compute_metrics(
            batch_size=B, seq_len=SEQ, phase="prefill", dtype="bf16")
        assert m.matmul_flops_per_chip * t * u * c == whole, (t, u, c)


def test_core_hbm_bytes_by_hand():
    """The flash core's traffic at cp = 2 (prefill): Q and O of the chip's s/cp = 8 queries,
    e*b*a*8*d = 2*2*4*8*8 = 1,024 bytes each, and K, V of all s = 16 keys it streams (its own
    and the received chunk), 2*(e*b*g*16*d) = 2*(2*2*2*16*8) = 2,048: 4,096 (cp = 1: 6,144)."""
    def core(cp):
        m = _gqa(cp).compute_metrics(batch_size=B, seq_len=SEQ, phase="prefill", dtype="bf16")
        return [op for op, _ in m.ops if isinstance(op, AttentionCore)][0]

    assert core(2).hbm_bytes == 1024 + 1024 + 2048
    assert core(1).hbm_bytes == 2048 + 2048 + 2048


def test_symbolic_kv_cache_and_training_activations():
    """Symbolic GQA: the prefill KV cache 2*b*s*g*d*e/cp with d = h/a, and the flash training
    activations the plain layer's over cp (every saved tensor holds s/cp tokens)."""
    b, s, h, a, g, e, c = S.batch_size, S.seq_len, S.hidden_size, S.num_heads, S.num_kv_heads, S.dtype_bytes, S.cp
    split = sc.GroupedQueryAttentionLayer(causal=True, parallelism={"context_parallel": c})
    plain = sc.GroupedQueryAttentionLayer(causal=True)
    kv = split.compute_metrics(phase="prefill").kv_cache_memory_per_chip
    assert sp.cancel(kv - 2 * b * s * g * (h / a) * e / c) == 0
    saved = split.compute_metrics(phase="training").activation_memory_per_chip
    assert sp.cancel(saved - plain.compute_metrics(phase="training").activation_memory_per_chip / c) == 0


@pytest.mark.parametrize(("cp", "multiple"), [(4, 64), (1, 8)])
def test_longest_context_under_megatron_sp_splits(cp, multiple):
    """llama-3-8b, TP 8 with sequence_parallel="tp": the longest context is a prefill length the
    layout can split, a multiple of 2*cp*t = 64 with cp = 4 (of t = 8 without CP), verified at n
    (fits) and n + multiple (does not)."""
    model = sc.models.get("llama-3-8b")
    par = {"tensor_parallel": 8, "sequence_parallel": "tp", "context_parallel": cp}
    n = model.max_context("H100_SXM", parallelism=par).value
    assert n % multiple == 0
    assert model.inference_step("H100_SXM", 1, n, parallelism=par).memory_per_chip <= 80 * 2**30
    assert model.inference_step("H100_SXM", 1, n + multiple, parallelism=par).memory_per_chip > 80 * 2**30


def test_longest_context_needs_a_numeric_tp_under_megatron_sp():
    """A symbolic t under Megatron SP leaves the prompt's split unknown: one line naming the field."""
    with pytest.raises(ConfigError, match='tensor_parallel must be a number under sequence_parallel="tp"'):
        sc.models.get("llama-3-8b").max_context("H100_SXM", parallelism={"tensor_parallel": S.tp,
                                                                         "sequence_parallel": "tp"})

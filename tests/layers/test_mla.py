"""MLALayer (multi-head latent attention): hand derivations, PyTorch cross-checks, TP, symbols."""

from __future__ import annotations

import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from symcost import symbols as S
from symcost.core.metrics import METRIC_FIELDS
from symcost.layers.mla import MLALayer
from symcost.testing import assert_expr_equal

b, s, h, a, t, e = S.batch_size, S.seq_len, S.hidden_size, S.num_heads, S.tp, S.dtype_bytes

# DeepSeek-V3 (config.json): h = 7168, a = 128, r_q = 1536, r_kv = 512, d_n = 128, d_R = 64, d_v = 128
V3 = dict(hidden_size=7168, num_heads=128, q_lora_rank=1536, kv_lora_rank=512,
          qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
# DeepSeek-V2-Lite: no query compression
V2_LITE = dict(hidden_size=2048, num_heads=16, q_lora_rank=None, kv_lora_rank=512,
               qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)

# A small configuration: every number below is checked by hand and by torch in milliseconds.
B, SEQ, H, A, RQ, RKV, DN, DR, DV = 2, 16, 64, 4, 32, 16, 8, 4, 8
DQK = DN + DR  # 12
SMALL = dict(hidden_size=H, num_heads=A, q_lora_rank=RQ, kv_lora_rank=RKV,
             qk_nope_head_dim=DN, qk_rope_head_dim=DR, v_head_dim=DV)


def mla(shape=None, **kw) -> MLALayer:
    """An MLALayer of ``shape`` (the small one by default) with options ``kw``."""
    return MLALayer(**{**(shape or SMALL), **kw})


def metrics(layer, phase, bs=B, sl=SEQ, dtype="bf16", **kw):
    return layer.compute_metrics(batch_size=bs, seq_len=sl, phase=phase, dtype=dtype, **kw)


def op(m, name):
    """The op called ``name`` in metrics ``m``."""
    (found,) = [o for o, _ in m.ops if o.name == name]
    return found


# -- parameters and KV cache -------------------------------------------------------------------

def test_deepseek_v3_num_params_by_hand():
    """DeepSeek-V3 attention, one layer: 187,107,328 parameters."""
    # q_a_proj 7168*1536 = 11,010,048; q_a_layernorm 1,536; q_b_proj 1536*128*192 = 37,748,736;
    # kv_a_proj_with_mqa 7168*576 = 4,128,768; kv_a_layernorm 512; kv_b_proj 512*128*256 = 16,777,216;
    # o_proj 128*128*7168 = 117,440,512
    by_hand = (7168 * 1536 + 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 + 512 * 128 * 256
               + 128 * 128 * 7168)
    assert by_hand == 11_010_048 + 1_536 + 37_748_736 + 4_128_768 + 512 + 16_777_216 + 117_440_512
    assert MLALayer(**V3).num_params == by_hand == 187_107_328


def test_deepseek_v2_lite_num_params_without_query_compression():
    """q_lora_rank=None: one q_proj h*a*d_qk replaces q_a_proj, q_a_layernorm and q_b_proj."""
    # q_proj 2048*16*192 = 6,291,456; kv_a 2048*576 = 1,179,648; norm 512; kv_b 512*16*256 =
    # 2,097,152; o_proj 16*128*2048 = 4,194,304
    assert MLALayer(**V2_LITE).num_params == 6_291_456 + 1_179_648 + 512 + 2_097_152 + 4_194_304
    assert MLALayer(**V2_LITE).num_params == MLALayer(**{**V2_LITE, "q_lora_rank": None}).num_params


@pytest.mark.parametrize("tp", [1, 8, 128])
def test_kv_cache_per_token_is_1152_bytes_and_tp_independent(tp):
    """DeepSeek-V3 bf16: (512 + 64) * 2 = 1152 bytes per token and layer, on every TP rank."""
    layer = MLALayer(**V3, parallelism={"tensor_parallel": tp})
    assert metrics(layer, "decode", bs=1, sl=1).kv_cache_memory_per_chip == (512 + 64) * 2 == 1152
    # b * s * (r_kv + d_R) * e; an MHA cache of 128 heads x (192 + 128) would be 71.1x larger
    assert metrics(layer, "prefill", bs=3, sl=4096).kv_cache_memory_per_chip == 3 * 4096 * 1152
    assert metrics(layer, "decode", bs=1, sl=1, dtype="fp8_e4m3").kv_cache_memory_per_chip == 576
    assert metrics(layer, "training", bs=1, sl=4096).kv_cache_memory_per_chip == 0


def test_symbolic_kv_cache_has_no_heads_and_no_tp():
    """Symbolic: the cache is b*s*(r_kv + d_R)*e whatever a and t."""
    m = MLALayer(**{**V3, "num_heads": a}, parallelism={"tensor_parallel": t}).compute_metrics(
        phase="decode")
    assert_expr_equal(m.kv_cache_memory_per_chip, 576 * b * s * e)


# -- FLOPs by hand -----------------------------------------------------------------------------

def test_prefill_matmul_flops_by_hand():
    """Naive prefill, T = b*s = 32 tokens: five projections and the core with d_qk = 12, d_v = 8."""
    m = metrics(mla(), "prefill")
    q_down = 2 * 32 * 64 * 32  # (T x h) @ (h x r_q) = 131,072
    q_up = 2 * 32 * 32 * (4 * 12)  # (T x r_q) @ (r_q x a*d_qk) = 98,304
    kv_down = 2 * 32 * 64 * (16 + 4)  # (T x h) @ (h x (r_kv + d_R)) = 81,920
    kv_up = 2 * 32 * 16 * (4 * (8 + 8))  # (T x r_kv) @ (r_kv x a*(d_n + d_v)) = 65,536
    core = 2 * 2 * 4 * 16 * 16 * 12 + 2 * 2 * 4 * 16 * 16 * 8  # Q K^T 49,152 + P V 32,768
    out = 2 * 32 * (4 * 8) * 64  # (T x a*d_v) @ (a*d_v x h) = 131,072
    assert m.matmul_flops_per_chip == q_down + q_up + kv_down + kv_up + core + out == 589_824
    # vector: RMSNorm 4 FLOPs per latent element (T*r_q + T*r_kv), softmax 5 per score
    assert m.flops_per_chip - m.matmul_flops_per_chip == 4 * 32 * (32 + 16) + 5 * 2 * 4 * 16 * 16


def test_decode_matmul_flops_by_hand_absorbed():
    """Absorbed decode: b = 2 new tokens over s = 16 cached latents; the core works at width
    r_kv + d_R = 20 (Q K^T) and r_kv = 16 (P V); no K/V up-projection of the cache."""
    m = metrics(mla(), "decode")
    q_down = 2 * 2 * 64 * 32  # 8,192
    q_up = 2 * 2 * 32 * 48  # 6,144
    kv_down = 2 * 2 * 64 * 20  # the new token's latent: 5,120
    k_absorb = 2 * 4 * 2 * 8 * 16  # a x (b x d_n) @ (d_n x r_kv) = 2,048
    core = 2 * 2 * 4 * 16 * 20 + 2 * 2 * 4 * 16 * 16  # 2*b*a*s*(r_kv + d_R) + 2*b*a*s*r_kv = 9,216
    v_absorb = 2 * 4 * 2 * 16 * 8  # a x (b x r_kv) @ (r_kv x d_v) = 2,048
    out = 2 * 2 * 32 * 64  # 8,192
    assert m.matmul_flops_per_chip == (q_down + q_up + kv_down + k_absorb + core + v_absorb
                                       + out) == 40_960
    assert m.flops_per_chip - m.matmul_flops_per_chip == 4 * 2 * (32 + 16) + 5 * 2 * 4 * 16


def test_symbolic_decode_core_formula():
    """Decode core per chip: 2*b*(a/t)*s*(r_kv + d_R) + 2*b*(a/t)*s*r_kv; the rest has no s."""
    m = MLALayer(**{**V3, "num_heads": a}, parallelism={"tensor_parallel": t}).compute_metrics(
        phase="decode")
    core = 2 * b * (a / t) * s * (512 + 64) + 2 * b * (a / t) * s * 512
    assert_expr_equal(sp.diff(m.matmul_flops_per_chip, s), sp.diff(core, s))
    # the projections of one token: q_down, kv_down replicated; q_up, absorbs, out split by t
    rest = (2 * b * 7168 * 1536 + 2 * b * 1536 * (a / t) * 192 + 2 * b * 7168 * 576
            + 2 * b * (a / t) * 128 * 512 * 2 + 2 * b * (a / t) * 128 * 7168)
    assert_expr_equal(m.matmul_flops_per_chip, core + rest)


def test_decode_reads_the_latent_cache_once():
    """The absorbed core reads q, the cache b*s*(r_kv + d_R) once (V is inside K), writes o."""
    m = metrics(mla(), "decode")
    core = op(m, "latent_attention_core")
    # e * (b*a*(r_kv + d_R) + b*a*r_kv + b*s*(r_kv + d_R)) = 2 * (160 + 128 + 640)
    assert core.hbm_bytes == 2 * (2 * 4 * 20 + 2 * 4 * 16 + 2 * 16 * 20) == 1856
    assert m.hbm_bytes_per_chip > m.weight_memory_per_chip + m.kv_cache_memory_per_chip


# -- training ----------------------------------------------------------------------------------

def test_training_is_forward_plus_backward():
    """Training matmul FLOPs: projections 3x forward; the core 1 + 2 (eager) or 1 + 2 + Q K^T
    recompute (flash), which is 1 + 5/2 only when d_v = d_qk."""
    projections = 589_824 - 81_920  # the prefill total less its core
    core, qk = 81_920, 49_152
    eager = metrics(mla(flash_attention=False), "training")
    flash = metrics(mla(flash_attention=True), "training")
    assert eager.matmul_flops_per_chip == 3 * projections + 3 * core
    assert flash.matmul_flops_per_chip == 3 * projections + 3 * core + qk
    # with d_v = d_qk = 12 the flash backward is exactly 5/2 x its forward (docs/conventions.md §4)
    square = mla(v_head_dim=DQK)
    core_sq = 4 * B * A * SEQ * SEQ * DQK
    gap = (metrics(square, "training").matmul_flops_per_chip
           - metrics(square.model_copy(update={"flash_attention": False}), "training")
           .matmul_flops_per_chip)
    assert gap == core_sq // 2


def test_symbolic_training_structure():
    """Symbolic: training - 3 x prefill = the extra flash recompute, 2*b*a*s^2*d_qk / t."""
    layer = MLALayer(**{**V3, "hidden_size": h, "num_heads": a}, parallelism={"tensor_parallel": t})
    train = layer.compute_metrics(phase="training").matmul_flops_per_chip
    prefill = layer.compute_metrics(phase="prefill").matmul_flops_per_chip
    assert_expr_equal(train - 3 * prefill, 2 * b * (a / t) * s**2 * 192)


def test_saved_activations_by_hand():
    """Training bf16, T = 32: input, both latents twice, Q/K/V/O, then LSE (flash) or scores."""
    inp = 32 * 64 * 2  # 4,096
    latents = 2 * 32 * (32 + 16) * 2  # norm input and up-projection input of c_q, c_kv: 6,144
    qkvo = 32 * 4 * (2 * 12 + 2 * 8) * 2  # Q, K at d_qk; V, O at d_v: 10,240
    lse = 4 * 2 * 4 * 16  # fp32 log-sum-exp, b*a*s: 512
    scores = 2 * 4 * 16 * 16 * 2  # eager softmax output b*a*s^2*e: 4,096
    layer = mla()
    assert metrics(layer, "training").activation_memory_per_chip == inp + latents + qkvo + lse
    assert metrics(layer, "training", recompute="selective").activation_memory_per_chip == (
        inp + latents + qkvo)
    assert metrics(layer, "training", recompute="full").activation_memory_per_chip == inp
    eager = mla(flash_attention=False)
    assert metrics(eager, "training").activation_memory_per_chip == inp + latents + qkvo + scores
    # dropout: + a 1-byte mask of the output, and the dropped-out probabilities with their mask
    drop = mla(flash_attention=False, dropout=True)
    assert metrics(drop, "training").activation_memory_per_chip == (
        inp + latents + qkvo + 32 * 64 + 2 * 4 * 16 * 16 * (2 * 2 + 1))


def test_peak_activations_by_hand():
    """Inference peak: input, output, latents (with the rope key), per-head tensors."""
    # prefill: 2*T*h + T*(r_q + r_kv + d_R) + T*a*(2*d_qk + 2*d_v), T = 32
    assert metrics(mla(), "prefill").activation_memory_per_chip == (
        2 * 32 * 64 + 32 * 52 + 32 * 4 * 40) * 2 == 21_760
    # decode, T = 2: q (d_qk), absorbed q (r_kv + d_R), latent output (r_kv), O (d_v) per head
    assert metrics(mla(), "decode").activation_memory_per_chip == (
        2 * 2 * 64 + 2 * 52 + 2 * 4 * (12 + 20 + 16 + 8)) * 2 == 1616


# -- tensor parallelism ------------------------------------------------------------------------

def test_tp_splits_up_and_out_projections_and_replicates_down():
    """t = 4: q_up, kv_up, out and the core split 4 ways; q_down, kv_down and norms replicated."""
    one = metrics(mla(), "prefill")
    four = metrics(mla(parallelism={"tensor_parallel": 4}), "prefill")
    down = 2 * 32 * 64 * 32 + 2 * 32 * 64 * 20  # q_down + kv_down, whole on every rank
    split = one.matmul_flops_per_chip - down
    assert four.matmul_flops_per_chip == down + split // 4
    assert 4 * four.matmul_flops_per_chip - one.matmul_flops_per_chip == 3 * down
    for name in ("q_down", "kv_down"):
        assert op(four, name) == op(one, name)
    # weights: down-projections and norms whole, the rest / 4
    whole = 64 * 32 + 32 + 64 * 20 + 16
    shard = (32 * 48 + 16 * 64 + 32 * 64) // 4
    assert four.weight_memory_per_chip == (whole + shard) * 2


def test_tp_collectives():
    """TP t = 2, training bf16, T = b*s = 32 tokens, as Megatron-Core's MLA runs it (core_v0.14.0
    megatron/core/transformer/multi_latent_attention.py:525-570 with the TE layer spec,
    models/gpt/gpt_layer_specs.py:125-149: the down-projections ``TELinear`` with
    ``parallel_mode="duplicated"``, the up-projections column-parallel ``TELayerNormColumnParallelLinear``
    on the latents). Without SP: the out projection's all-reduce forward (T*h*e = 4096) and the
    up-projections' input-gradient all-reduces (Megatron's f on the latents, not on the block input):
    c_q 32*32*2 = 2048 and c_kv 32*16*2 = 1024."""
    m = metrics(mla(parallelism={"tensor_parallel": 2}), "training")
    assert sorted((c.kind, c.payload_bytes, c.count) for c in m.collectives) == [
        ("all_reduce", 1024, 1), ("all_reduce", 2048, 1), ("all_reduce", 4096, 1)]


def test_sp_gathers_and_regathers_the_latents_not_the_input():
    """TP 2 + Megatron SP, training bf16, T = 32: the down-projections run on the rank's T/t = 16
    tokens (hidden_states is [s/TP, b, h]); the up-projections (TE column-parallel linears) all-gather
    the normalized latents, c_q (32*32*2 = 2048 bytes) and c_kv (32*16*2 = 1024), and re-gather them
    in the backward (bulk beside dgrad), their input gradients reduce-scattered (bulk beside wgrad);
    the rope key is gathered by Megatron's ``gather_from_sequence_parallel_region`` (32*4*2 = 256,
    plain NCCL, reduce-scattered back). The out projection: reduce-scatter of T*h*e = 4096 forward,
    all-gather of its output gradient backward. The block input is gathered nowhere."""
    msp = metrics(mla(parallelism={"tensor_parallel": 2, "sequence_parallel": "tp"}), "training")
    kinds = sorted((c.kind, c.payload_bytes, c.count, c.bulk) for c in msp.collectives)
    assert kinds == [("all_gather", 256, 1, False), ("all_gather", 1024, 1, False), ("all_gather", 1024, 1, True),
                     ("all_gather", 2048, 1, False), ("all_gather", 2048, 1, True), ("all_gather", 4096, 1, False),
                     ("reduce_scatter", 256, 1, False), ("reduce_scatter", 1024, 1, True),
                     ("reduce_scatter", 2048, 1, True), ("reduce_scatter", 4096, 1, False)]


def test_sp_runs_the_down_projections_on_the_sequence_shard():
    """Prefill TP 2: without SP the down-projections run on all T = 32 tokens on every rank, with SP
    on T/t = 16: q_down 2*16*64*32 + kv_down 2*16*64*(16 + 4) = 106,496 FLOPs fewer per chip."""
    plain = metrics(mla(parallelism={"tensor_parallel": 2}), "prefill")
    msp = metrics(mla(parallelism={"tensor_parallel": 2, "sequence_parallel": "tp"}), "prefill")
    assert plain.matmul_flops_per_chip - msp.matmul_flops_per_chip == 2 * 16 * 64 * (32 + 20) == 106_496


def test_sp_saves_the_latents_sharded():
    """Training TP 2: under SP the input (32*64*2/2 = 2048 bytes less) and both copies of each
    latent (the fused norm's input and its output, which TE saves as the shard it re-gathers:
    2*32*(32 + 16)*2/2 = 3072 bytes less) are saved sequence-sharded: 5120 bytes less."""
    m = metrics(mla(parallelism={"tensor_parallel": 2}), "training")
    msp = metrics(mla(parallelism={"tensor_parallel": 2, "sequence_parallel": "tp"}), "training")
    assert m.activation_memory_per_chip - msp.activation_memory_per_chip == 2048 + 3072


@pytest.mark.parametrize("tp", [3, 8])
def test_heads_not_divisible_by_tp_is_refused(tp):
    """a = 4 heads on 3 or 8 ranks: a ValidationError naming num_heads and tensor_parallel."""
    with pytest.raises(ValidationError, match="num_heads must be divisible by tensor_parallel"):
        mla(parallelism={"tensor_parallel": tp})


@pytest.mark.parametrize("degree", [2, S.sp])
def test_ulysses_is_refused(degree):
    """An integer or symbolic Ulysses degree is refused naming sequence_parallel; "tp" is fine."""
    with pytest.raises(ValidationError, match="sequence_parallel"):
        mla(parallelism={"sequence_parallel": degree})
    mla(parallelism={"tensor_parallel": 2, "sequence_parallel": "tp"})
    mla(parallelism={"sequence_parallel": 1})


@settings(max_examples=40, deadline=None)
@given(phase=st.sampled_from(["prefill", "decode", "training"]), tp=st.sampled_from([1, 2, 4]),
       bs=st.integers(1, 4), sl=st.integers(1, 64), q_lora=st.sampled_from([None, 8, 24]),
       r_kv=st.integers(1, 24), d_r=st.integers(1, 8), flash=st.booleans())
def test_per_chip_times_tp_exceeds_total_by_the_replicated_down_projections(
        phase, tp, bs, sl, q_lora, r_kv, d_r, flash):
    """t * per-chip - total = (t - 1) x the down-projections' matmuls; the cache is the same."""
    shape = dict(SMALL, q_lora_rank=q_lora, kv_lora_rank=r_kv, qk_rope_head_dim=d_r)
    one = metrics(mla(shape, flash_attention=flash), phase, bs=bs, sl=sl)
    many = metrics(mla(shape, flash_attention=flash, parallelism={"tensor_parallel": tp}), phase,
                   bs=bs, sl=sl)
    T = bs if phase == "decode" else bs * sl
    down = 2 * T * H * (r_kv + d_r) + (2 * T * H * q_lora if q_lora else 0)
    passes = 3 if phase == "training" else 1
    assert tp * many.matmul_flops_per_chip - one.matmul_flops_per_chip == (tp - 1) * passes * down
    assert many.kv_cache_memory_per_chip == one.kv_cache_memory_per_chip


# -- symbols -----------------------------------------------------------------------------------

def test_all_fields_symbolic_evaluate_to_the_numeric_call():
    """Every shape field and degree a symbol: evaluating at a point equals the numeric call."""
    # NB: the MLA widths have no canonical symbols yet; these stand in, with the table's assumptions
    r_q, r_kv, d_n, d_r, d_v = sp.symbols("r_q r_kv d_n d_R d_v", positive=True, integer=True)
    symbolic_layer = MLALayer(hidden_size=h, num_heads=a, q_lora_rank=r_q, kv_lora_rank=r_kv,
                              qk_nope_head_dim=d_n, qk_rope_head_dim=d_r, v_head_dim=d_v,
                              parallelism={"tensor_parallel": t})
    point = {h: H, a: A, r_q: RQ, r_kv: RKV, d_n: DN, d_r: DR, d_v: DV, t: 2, b: B, s: SEQ}
    numeric = mla(parallelism={"tensor_parallel": 2})
    for phase in ("prefill", "decode", "training"):
        sym = symbolic_layer.compute_metrics(phase=phase)
        got = sym.evaluate(point, hardware="h100-ideal", dtype="bf16")
        want = metrics(numeric, phase, hardware="h100-ideal")
        for field in METRIC_FIELDS:
            assert getattr(got, field) == getattr(want, field), (phase, field)
        assert got.collectives == want.collectives


def test_symbolic_prefill_flops_formula():
    """Prefill per chip, all symbolic: 2T[h r_q + r_q a d_qk/t + h(r_kv + d_R) + r_kv a (d_n + d_v)/t
    + a d_v h/t] + 2 b (a/t) s^2 (d_qk + d_v), T = b s."""
    r_q, r_kv, d_n, d_r, d_v = sp.symbols("r_q r_kv d_n d_R d_v", positive=True, integer=True)
    layer = MLALayer(hidden_size=h, num_heads=a, q_lora_rank=r_q, kv_lora_rank=r_kv,
                     qk_nope_head_dim=d_n, qk_rope_head_dim=d_r, v_head_dim=d_v,
                     parallelism={"tensor_parallel": t})
    T, a_t, d_qk = b * s, a / t, d_n + d_r
    want = (2 * T * (h * r_q + r_q * a_t * d_qk + h * (r_kv + d_r) + r_kv * a_t * (d_n + d_v)
                     + a_t * d_v * h)
            + 2 * b * a_t * s**2 * (d_qk + d_v))
    assert_expr_equal(layer.compute_metrics(phase="prefill").matmul_flops_per_chip, want)
    assert_expr_equal(layer.compute_metrics(phase="decode").kv_cache_memory_per_chip,
                      b * s * (r_kv + d_r) * e)


# -- PyTorch FlopCounterMode -------------------------------------------------------------------
#
# A reference MLA with HF DeepseekV3Attention's projections. The core is explicit matmuls and a
# softmax: CPU SDPA refuses d_v != d_qk in its flash kernel and falls back to the math path (bmm),
# so the flash count is checked against torch's own formula functions instead. RoPE is omitted:
# it is elementwise (FlopCounterMode counts it 0) and does not change any shape.

def _torch():
    return pytest.importorskip("torch")


def reference_mla(h, a, r_q, r_kv, d_n, d_r, d_v, causal=False, device=None):
    """A PyTorch MLA module: naive ``forward`` (prefill, training) and absorbed ``decode``."""
    torch = _torch()
    from torch import nn

    class MLA(nn.Module):
        def __init__(self):
            super().__init__()
            d_qk = d_n + d_r
            if r_q is None:
                self.q_proj = nn.Linear(h, a * d_qk, bias=False, device=device)
            else:
                self.q_a_proj = nn.Linear(h, r_q, bias=False, device=device)
                self.q_a_layernorm = nn.RMSNorm(r_q, device=device)
                self.q_b_proj = nn.Linear(r_q, a * d_qk, bias=False, device=device)
            self.kv_a_proj_with_mqa = nn.Linear(h, r_kv + d_r, bias=False, device=device)
            self.kv_a_layernorm = nn.RMSNorm(r_kv, device=device)
            self.kv_b_proj = nn.Linear(r_kv, a * (d_n + d_v), bias=False, device=device)
            self.o_proj = nn.Linear(a * d_v, h, bias=False, device=device)
            self.scale = d_qk ** -0.5

        def query(self, x):
            """(b, n, h) -> (b, a, n, d_qk)."""
            bs, n, _ = x.shape
            if r_q is None:
                q = self.q_proj(x)
            else:
                q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
            return q.view(bs, n, a, d_n + d_r).transpose(1, 2)

        def latent(self, x):
            """(b, n, h) -> the normalized latent (b, n, r_kv) and the rope key (b, n, d_R)."""
            c_kv, k_pe = self.kv_a_proj_with_mqa(x).split([r_kv, d_r], dim=-1)
            return self.kv_a_layernorm(c_kv), k_pe

        def expand(self, c_kv, k_pe):
            """Naive K (b, a, n, d_qk) and V (b, a, n, d_v) from the latents."""
            bs, n, _ = c_kv.shape
            kv = self.kv_b_proj(c_kv).view(bs, n, a, d_n + d_v).transpose(1, 2)
            k_nope, v = kv.split([d_n, d_v], dim=-1)
            k = torch.cat([k_nope, k_pe[:, None].expand(bs, a, n, d_r)], dim=-1)
            return k, v

        def forward(self, x):
            bs, n, _ = x.shape
            q = self.query(x)
            k, v = self.expand(*self.latent(x))
            scores = (q @ k.transpose(-2, -1)) * self.scale
            if causal:
                mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(mask, float("-inf"))
            o = scores.softmax(dim=-1) @ v  # (b, a, n, d_v)
            return self.o_proj(o.transpose(1, 2).reshape(bs, n, a * d_v))

        def decode_naive(self, x, cache):
            """One new token; K and V up-projected from all s cached latents (not what we count)."""
            bs = x.shape[0]
            c_new, pe_new = self.latent(x)
            c_kv, k_pe = torch.cat([cache[0], c_new], 1), torch.cat([cache[1], pe_new], 1)
            k, v = self.expand(c_kv, k_pe)
            p = ((self.query(x) @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            return self.o_proj((p @ v).transpose(1, 2).reshape(bs, 1, a * d_v))

        def decode(self, x, cache):
            """One new token, weight-absorbed: attention on the latent cache, as FlashMLA does."""
            bs = x.shape[0]
            q_nope, q_pe = self.query(x)[:, :, 0].split([d_n, d_r], dim=-1)  # (b, a, .)
            c_new, pe_new = self.latent(x)
            c_kv, k_pe = torch.cat([cache[0], c_new], 1), torch.cat([cache[1], pe_new], 1)
            w = self.kv_b_proj.weight.view(a, d_n + d_v, r_kv)
            w_uk, w_uv = w[:, :d_n], w[:, d_n:]  # (a, d_n, r_kv), (a, d_v, r_kv)
            q_lat = torch.bmm(q_nope.transpose(0, 1), w_uk).transpose(0, 1)  # (b, a, r_kv)
            q_all = torch.cat([q_lat, q_pe], dim=-1)  # (b, a, r_kv + d_R)
            k_all = torch.cat([c_kv, k_pe], dim=-1)  # (b, s, r_kv + d_R): the cache
            p = (torch.bmm(q_all, k_all.transpose(1, 2)) * self.scale).softmax(dim=-1)  # (b, a, s)
            o_lat = torch.bmm(p, c_kv)  # (b, a, r_kv): V is the latent itself
            o = torch.bmm(o_lat.transpose(0, 1), w_uv.transpose(1, 2)).transpose(0, 1)  # (b, a, d_v)
            return self.o_proj(o.reshape(bs, 1, a * d_v))

    return MLA()


def torch_count(module, phase, bs=B, sl=SEQ, h_=H, r_kv=RKV, d_r=DR):
    """FlopCounterMode total of ``module`` for one symcost phase (decode: absorbed, s - 1 cached
    latents plus the new token's)."""
    torch = _torch()
    from torch.utils.flop_counter import FlopCounterMode

    if phase == "training":
        x = torch.randn(bs, sl, h_, requires_grad=True)

        def run():
            module(x).sum().backward()
    elif phase == "prefill":
        x = torch.randn(bs, sl, h_)

        def run():
            with torch.no_grad():
                module(x)
    else:
        x = torch.randn(bs, 1, h_)
        cache = (torch.randn(bs, sl - 1, r_kv), torch.randn(bs, sl - 1, d_r))

        def run():
            with torch.no_grad():
                module.decode(x, cache)
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def small_reference(**kw):
    shape = dict(h=H, a=A, r_q=RQ, r_kv=RKV, d_n=DN, d_r=DR, d_v=DV)
    return reference_mla(**{**shape, **kw})


@pytest.mark.parametrize("q_lora", [RQ, None], ids=["q-lora", "no-q-lora"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_inference_matches_torch(phase, q_lora):
    """Prefill (naive) and decode (absorbed) matmul FLOPs equal FlopCounterMode's count."""
    total = torch_count(small_reference(r_q=q_lora), phase)
    layer = mla(q_lora_rank=q_lora)
    assert metrics(layer, phase, dtype="fp32").matmul_flops_per_chip == total
    if phase == "prefill" and q_lora:
        assert total == 589_824  # test_prefill_matmul_flops_by_hand
    if phase == "decode" and q_lora:
        assert total == 40_960  # test_decode_matmul_flops_by_hand_absorbed


@pytest.mark.parametrize("q_lora", [RQ, None], ids=["q-lora", "no-q-lora"])
def test_eager_training_matches_torch(q_lora):
    """Training with an eager core: every matmul 3x forward (FlopCounterMode counts dX and dW)."""
    total = torch_count(small_reference(r_q=q_lora), "training")
    layer = mla(q_lora_rank=q_lora, flash_attention=False)
    assert metrics(layer, "training", dtype="fp32").matmul_flops_per_chip == total


def test_causal_is_not_discounted_by_torch():
    """A causal mask costs torch the full s^2; causal=True drops the masked pairs."""
    causal = torch_count(small_reference(causal=True), "prefill")
    assert metrics(mla(), "prefill").matmul_flops_per_chip == causal
    masked = SEQ * (SEQ - 1) // 2  # 120 pairs above the diagonal
    discounted = metrics(mla(causal=True), "prefill").matmul_flops_per_chip
    assert causal - discounted == 2 * B * A * masked * (DQK + DV)


def test_flash_core_matches_torch_sdpa_formulas():
    """The flash core forward and backward equal torch's sdpa_flop_count and
    sdpa_backward_flop_count for MLA shapes (d_qk != d_v): backward 2*b*a*s^2*(3 d_qk + 2 d_v)."""
    _torch()
    from torch.utils import flop_counter

    q, k, v = (B, A, SEQ, DQK), (B, A, SEQ, DQK), (B, A, SEQ, DV)
    fwd, bwd = flop_counter.sdpa_flop_count(q, k, v), flop_counter.sdpa_backward_flop_count(
        (B, A, SEQ, DV), q, k, v)
    core = op(metrics(mla(), "training"), "attention_core")
    (backward,) = core.backward()
    assert core.matmul_flops == fwd == 2 * B * A * SEQ * SEQ * (DQK + DV)
    assert backward.matmul_flops == bwd == 2 * B * A * SEQ * SEQ * (3 * DQK + 2 * DV)
    assert bwd != 5 * fwd // 2  # the 5/2 rule holds only for d_v = d_qk


@pytest.mark.parametrize("phase", ["prefill", "training", "decode"])
def test_tp_rank_shard_matches_torch(phase):
    """t = 2: per-chip FLOPs equal torch's count of one rank's module (a/t heads, whole
    down-projections), so the replicated down-projections are counted as run."""
    shard = torch_count(small_reference(a=A // 2), phase)
    layer = mla(flash_attention=False, parallelism={"tensor_parallel": 2})
    assert metrics(layer, phase, dtype="fp32").matmul_flops_per_chip == shard


@pytest.mark.parametrize("shape", [V3, V2_LITE], ids=["deepseek-v3", "deepseek-v2-lite"])
def test_num_params_matches_torch_module(shape):
    """num_params equals the reference module's parameter count (meta device: no memory)."""
    module = reference_mla(h=shape["hidden_size"], a=shape["num_heads"], r_q=shape["q_lora_rank"],
                           r_kv=shape["kv_lora_rank"], d_n=shape["qk_nope_head_dim"],
                           d_r=shape["qk_rope_head_dim"], d_v=shape["v_head_dim"], device="meta")
    assert MLALayer(**shape).num_params == sum(p.numel() for p in module.parameters())


def test_absorbed_decode_equals_naive_decode_numerically():
    """The absorbed reference computes the same output as the naive one (float64), so the
    decode count is of a correct MLA, not of a cheaper different function."""
    torch = _torch()
    torch.manual_seed(0)
    module = small_reference().double()
    x = torch.randn(B, 1, H, dtype=torch.float64)
    cache = (torch.randn(B, SEQ - 1, RKV, dtype=torch.float64),
             torch.randn(B, SEQ - 1, DR, dtype=torch.float64))
    with torch.no_grad():
        assert torch.allclose(module.decode(x, cache), module.decode_naive(x, cache), atol=1e-10)

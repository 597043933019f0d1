"""Transformer Engine gathers the FP8 cast of a GEMM input over TP under FP8 training.

Under sequence parallelism a TE column-parallel linear (qkv, fc1: ``LayerNormLinear``/``Linear``
with ``parallel_mode="column"``) all-gathers its input, and a TE row-parallel linear (proj, fc2)
all-gathers its output gradient in the backward. Under an FP8 recipe TE quantizes the shard first
and gathers the quantized tensor, not bf16 (Transformer Engine v2.7 to v2.13, the NeMo 25.09 to
26.04 containers; line numbers at v2.9):

- forward input: transformer_engine/pytorch/module/layernorm_linear.py:250-265 (``ln_out =
  quantizer(ln_out)``, ``quantizer.set_usage(rowwise=True, columnwise=False)``, then
  ``gather_along_first_dim(ln_out, tp_group, quantizer=quantizer)`` or, with ``ub_overlap_ag``,
  ``fill_userbuffers_buffer_for_all_gather(ub_obj, ln_out, quantizer, ...)``); linear.py:175-215 alike;
- backward re-gather of the saved shard: layernorm_linear.py:650-675 (the same quantizer, column-wise
  usage for block-scaled formats, row-wise FP8 then a local transpose for per-tensor FP8);
- backward output gradient of a row-parallel linear: module/base.py:1161-1187
  ``grad_output_preprocess`` ("FP8 with all-gather"), the ``grad_output_quantizer`` set to both
  usages in linear.py:566-573 (row-wise for dgrad, column-wise for wgrad);
- what goes over the wire: distributed.py ``_all_gather_fp8`` (per-tensor delayed and current
  scaling): ``all_gather_into_tensor(out._data, inp._data)``, 1 byte per element, the scale-inverse a
  scalar not gathered ("Assume scaling factors are identical across ranks"), the column-wise copy
  never gathered ("We cannot directly all-gather the transposed FP8 tensor"); ``_all_gather_mxfp8``
  (and ``_all_gather_fp8_blockwise``): for each usage the quantizer holds, the data (1 byte) and its
  scale-inverses (MXFP8: one E8M0 byte per 32 elements, OCP MX v1.0 section 5.2): ``33/32`` bytes per
  element and usage. The output gradient's quantizer holds both usages: a block-scaled format gathers
  it twice (row-wise and column-wise data cannot be derived from each other; linear.py:777-784 says
  so for the userbuffers path, which gathers the column-wise copy in a second all-gather).

The reduce-scatters (the row-parallel output forward, the column-parallel input gradient backward)
carry GEMM outputs: bf16. Expected values below are derived by hand in each docstring.
"""

from __future__ import annotations

from collections import Counter

from tp_calls import SP2, A, B, F, H, M, S
from tp_calls import tp_calls as _calls

import symcost as sc


def _gated() -> sc.GatedMLPLayer:
    return sc.GatedMLPLayer(hidden_size=H, intermediate_size=F, parallelism=SP2)


def test_per_tensor_fp8_gathers_one_byte_per_element():
    """fp8_e4m3 (TE's per-tensor recipes, delayed or current scaling), GatedMLP h 16, f 32, TP 2 + SP,
    b 1, s 8. Every TE all-gather carries the FP8 cast, 1 byte per element: 1*8*16*1 = 128 bytes:
    forward fc1's input, backward fc2's output gradient, backward fc1's re-gather (3 x 128). The
    reduce-scatters carry bf16 GEMM outputs: fc2's forward output and fc1's input gradient (2 x 256).
    Sent per chip (ring, (2-1)/2 of each payload): (3*128 + 2*256) / 2 = 448 bytes."""
    m = _gated().compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="fp8_e4m3")
    assert _calls(m) == Counter({("all_gather", M // 2): 3, ("reduce_scatter", M): 2})
    assert m.comm_bytes_per_chip == 448


def test_mxfp8_gathers_data_and_scales_per_usage():
    """mxfp8 (Blackwell's MXFP8 recipe): 1 byte + one E8M0 scale per 32 elements = 33/32 byte per
    element and usage. Forward fc1 input (row-wise): 128 * 33/32 = 132; fc1 re-gather (column-wise):
    132; fc2's output gradient (both usages): 264; the reduce-scatters bf16, 2 x 256.
    Sent: (132 + 132 + 264 + 512) / 2 = 520 bytes."""
    m = _gated().compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="mxfp8")
    assert _calls(m) == Counter({("all_gather", 132): 2, ("all_gather", 264): 1, ("reduce_scatter", M): 2})
    assert m.comm_bytes_per_chip == 520


def test_attention_fp8_gathers_qkv_input_and_proj_gradient_in_fp8():
    """Attention h 16, 4 heads, TP 2 + SP, fp8_e4m3 training: qkv's input gathered forward and again
    backward, proj's output gradient gathered backward, each 128 bytes; 2 bf16 reduce-scatters of 256."""
    layer = sc.AttentionLayer(hidden_size=H, num_heads=A, parallelism=SP2)
    m = layer.compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="fp8_e4m3")
    assert _calls(m) == Counter({("all_gather", M // 2): 3, ("reduce_scatter", M): 2})


def test_full_recompute_reruns_the_fp8_gather():
    """Full recomputation reruns fc1's forward, its FP8 gather included: all-gathers of 128 bytes:
    forward 1, recompute 1, backward 2 (output gradient, re-gather); reduce-scatters of 256: 3."""
    m = _gated().compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="fp8_e4m3", recompute="full")
    assert _calls(m) == Counter({("all_gather", M // 2): 4, ("reduce_scatter", M): 3})


def test_bf16_training_and_fp8_prefill_unchanged():
    """bf16 training: every TP collective 256 bytes (3 gathers, 2 reduce-scatters). Prefill in
    fp8_e4m3 (an inference engine's FP8 checkpoint: bf16 activations on the wire): one gather and
    one reduce-scatter of 256."""
    bf16 = _gated().compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="bf16")
    assert _calls(bf16) == Counter({("all_gather", M): 3, ("reduce_scatter", M): 2})
    prefill = _gated().compute_metrics(batch_size=B, seq_len=S, phase="prefill", dtype="fp8_e4m3")
    assert _calls(prefill) == Counter({("all_gather", M): 1, ("reduce_scatter", M): 1})


def test_moe_shared_experts_are_te_linears():
    """Megatron-Core's SharedExpertMLP builds its fc1 and fc2 as TE column- and row-parallel linears
    (core_v0.14.0 megatron/core/transformer/moe/shared_experts.py, the TE layer spec's
    ``TEColumnParallelLinear``/``TERowParallelLinear``), without userbuffers: their TP all-gathers carry
    the FP8 cast like fc1's and fc2's. MoE on the expert grid (ETP 1), h 16, one shared expert of
    width 32, TP 2 + SP, b 1, s 8, fp8_e4m3: the shared experts' forward input gather, re-gather and
    fc2's output-gradient gather at 1*8*16*1 = 128 bytes each; the two reduce-scatters bf16, 256."""
    layer = sc.MoELayer(hidden_size=H, num_experts=4, top_k=2, expert_intermediate_size=F, num_shared_experts=1,
                        shared_intermediate_size=F, parallelism={**SP2, "expert_tensor_parallel": 1})
    m = layer.compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="fp8_e4m3")
    assert _calls(m) == Counter({("all_gather", M // 2): 3, ("reduce_scatter", M): 2})
    # the backward's re-gather and input-gradient reduce-scatter run beside TE's dgrad and wgrad GEMMs
    assert sorted((c.kind, c.bulk, c.userbuffers) for c in m.collectives if c.axis == "tp") == [
        ("all_gather", False, False), ("all_gather", True, False), ("reduce_scatter", False, False),
        ("reduce_scatter", True, False)]


def test_mla_up_projections_gather_fp8_without_userbuffers():
    """MLA under TP 2 + SP, fp8_e4m3 training, T = 2*16 = 32 tokens, h 64, r_q 32, r_kv 16, d_R 4.
    Megatron-Core turns TE's userbuffers off for linears other than qkv, proj, fc1, fc2
    (extensions/transformer_engine.py: building q_down_proj sets tp_comm_overlap False), but the
    up-projections are still TE linears that gather the FP8 cast: c_q 32*32*1 = 1024 forward and
    re-gathered (bulk beside dgrad), its input gradient reduce-scattered in bf16 32*32*2 = 2048 (bulk
    beside wgrad); c_kv 32*16*1 = 512 twice, reduce-scatter 1024; the rope key plain NCCL bf16
    32*4*2 = 256 each way. The out projection (``proj``: userbuffers): reduce-scatter 32*64*2 = 4096,
    output-gradient gather in FP8 32*64*1 = 2048."""
    from symcost import MLALayer
    layer = MLALayer(hidden_size=64, num_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=8,
                     qk_rope_head_dim=4, v_head_dim=8, parallelism=SP2)
    m = layer.compute_metrics(batch_size=2, seq_len=16, phase="training", dtype="fp8_e4m3")
    got = sorted((c.kind, int(c.payload_bytes), int(c.count), c.bulk, c.userbuffers) for c in m.collectives)
    assert got == [("all_gather", 256, 1, False, False),
                   ("all_gather", 512, 1, False, False), ("all_gather", 512, 1, True, False),
                   ("all_gather", 1024, 1, False, False), ("all_gather", 1024, 1, True, False),
                   ("all_gather", 2048, 1, False, True),
                   ("reduce_scatter", 256, 1, False, False), ("reduce_scatter", 1024, 1, True, False),
                   ("reduce_scatter", 2048, 1, True, False), ("reduce_scatter", 4096, 1, False, True)]


def test_te_gather_bytes_takes_one_or_two_usages_and_derives_block_scaling():
    """A tensor has a row-wise and a column-wise usage: 3 is refused naming the argument. The block
    scaling follows the named format: fp8 training in mxfp8 gathers 33/32 bytes per element and usage
    (1 byte + one E8M0 scale per 32), per-tensor fp8_e4m3 1 byte however many usages."""
    import pytest
    import sympy

    from symcost.core.dtypes import DataType
    from symcost.core.parallelism import Parallelism
    from symcost.errors import ConfigError
    from symcost.layers.base import Context, Phase

    def ctx(dtype):
        return Context(batch_size=sympy.Integer(1), seq_len=sympy.Integer(8), phase=Phase.TRAINING,
                       dtype_bytes=sympy.Integer(2), parallelism=Parallelism(), recompute="none",
                       gemm_bytes=dtype.bytes, datatype=dtype)
    assert ctx(DataType.MXFP8).te_gather_bytes(usages=2) == sympy.Rational(33, 16)
    assert ctx(DataType.FP8_E4M3).te_gather_bytes(usages=2) == 1
    with pytest.raises(ConfigError, match="usages"):
        ctx(DataType.MXFP8).te_gather_bytes(usages=3)

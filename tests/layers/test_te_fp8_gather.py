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
from fractions import Fraction

import symcost as sc

B, S, H, F, A = 1, 8, 16, 32, 4
M = B * S * H * 2  # the full (b, s, h) activation in bf16: 1 * 8 * 16 * 2 = 256 bytes
SP2 = {"tensor_parallel": 2, "sequence_parallel": "tp"}


def _calls(m: sc.LayerMetrics) -> Counter:
    """Calls per (kind, payload bytes) of the TP collectives."""
    got: Counter = Counter()
    for c in m.collectives:
        if c.axis == "tp":
            got[(c.kind, Fraction(str(c.payload_bytes)))] += int(c.count)
    return got


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

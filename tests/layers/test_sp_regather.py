"""Megatron sequence parallelism re-gathers a column-parallel linear's input in the backward.

Under ``sequence_parallel="tp"`` the input of a column-parallel linear (QKV, FC1 / gate-up, the
shared experts' FC1, the LM head) is all-gathered over TP in the forward, but the linear saves
the *sequence-sharded* input (the activation memory counts ``T/t`` tokens) and all-gathers it
again in the backward for its weight-gradient GEMM:

- Megatron-Core, megatron/core/tensor_parallel/layers.py (commit d98e8a6),
  ``LinearWithGradAccumulationAndAsyncCommunication``: ``forward`` saves ``input`` (the shard) and
  gathers into a buffer; ``backward``: ``if ctx.sequence_parallel: ... dist_all_gather_func(
  all_gather_buffer, input, group=tp_group, async_op=True)`` before the dgrad GEMM, waited after it;
- Transformer Engine, transformer_engine/pytorch/module/layernorm_linear.py (commit d0067d0):
  ``ln_out_to_save = ln_out`` (the shard), ``ctx.ln_out_needs_gather = weight.requires_grad and
  parallel_mode == "column" and sequence_parallel``; the backward gathers it with the FP8
  ``input_quantizer`` under FP8 (``gather_along_first_dim(..., quantizer=quantizer)``), in bulk
  beside the dgrad GEMM with ``ub_bulk_dgrad`` (Megatron-Bridge's userbuffers configs:
  ``qkv_dgrad`` / ``fc1_dgrad = BulkOverlapCfg``);
- Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
  section 4.2.2: the extra all-gather in the backward.

Expected values below are derived by hand in each docstring.
"""

from __future__ import annotations

from collections import Counter

import pytest
from tp_calls import SP2, A, B, F, H, M, S
from tp_calls import tp_calls as _calls

import symcost as sc


def _gated(**par) -> sc.GatedMLPLayer:
    return sc.GatedMLPLayer(hidden_size=H, intermediate_size=F, parallelism=par)


def test_gated_mlp_tp2_sp_training_regathers_fc1_input():
    """GatedMLP h 16, f 32, TP 2 + SP, b 1, s 8, bf16 training. M = b*s*h*e = 256 bytes.
    Forward: all-gather of the input (M), reduce-scatter of the output (M). Backward: all-gather of
    the output gradient (M, transpose of the exit), reduce-scatter of the input gradient (M,
    transpose of the entry) and the re-gather of fc1's saved input shard for the wgrad GEMM (M):
    3 all-gathers, 2 reduce-scatters. Bytes sent per chip: 5 x (2-1)/2 x 256 = 640."""
    m = _gated(**SP2).compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="bf16")
    assert _calls(m) == Counter({("all_gather", M): 3, ("reduce_scatter", M): 2})
    assert m.comm_bytes_per_chip == 640


def test_regather_is_bulk_beside_dgrad():
    """The re-gather runs whole beside the dgrad GEMM (TE ub_bulk_dgrad): a bulk collective, as
    the input gradient's reduce-scatter beside wgrad is; the forward all-gather and the exit's
    transpose are ring exchanges (not bulk)."""
    m = _gated(**SP2).compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="bf16")
    bulk = Counter(c.kind for c in m.collectives for _ in range(int(c.count)) if c.bulk)
    assert bulk == Counter({"all_gather": 1, "reduce_scatter": 1})


def test_fp8_training_regathers_the_fp8_cast():
    """fp8_e4m3 training (TE's FP8 recipes): the re-gather carries the FP8 cast TE saved, 1 byte per
    element: 1*8*16*1 = 128 bytes, as do the forward gather and the output gradient's gather (TE
    gathers the FP8 cast, tests/layers/test_te_fp8_gather.py); the reduce-scatters carry bf16 (256).
    Sent: (3 x 128 + 2 x 256) / 2 = 448."""
    m = _gated(**SP2).compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="fp8_e4m3")
    assert _calls(m) == Counter({("all_gather", M // 2): 3, ("reduce_scatter", M): 2})
    assert m.comm_bytes_per_chip == 448


def test_no_regather_in_prefill_or_without_sp():
    """Prefill saves nothing: 1 all-gather + 1 reduce-scatter. Training without SP: Megatron's f and
    g, one all-reduce each way, and the saved input is the whole one: 2 all-reduces, no gather."""
    prefill = _gated(**SP2).compute_metrics(batch_size=B, seq_len=S, phase="prefill", dtype="bf16")
    assert _calls(prefill) == Counter({("all_gather", M): 1, ("reduce_scatter", M): 1})
    plain = _gated(tensor_parallel=2).compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="bf16")
    assert _calls(plain) == Counter({("all_reduce", M): 2})


def test_full_recompute_regathers_once():
    """Full recomputation reruns the forward (its all-gather and reduce-scatter), whose fc1 again
    saves the shard: forward 1 AG + 1 RS, recompute 1 AG + 1 RS, backward 2 AG + 1 RS."""
    m = _gated(**SP2).compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="bf16", recompute="full")
    assert _calls(m) == Counter({("all_gather", M): 4, ("reduce_scatter", M): 3})


def test_attention_regathers_qkv_input():
    """Attention h 16, 4 heads, TP 2 + SP, bf16 training: the fused QKV gathers once forward and
    once backward; with the out projection: 3 all-gathers, 2 reduce-scatters of M."""
    layer = sc.AttentionLayer(hidden_size=H, num_heads=A, parallelism=SP2)
    m = layer.compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="bf16")
    assert _calls(m) == Counter({("all_gather", M): 3, ("reduce_scatter", M): 2})


def test_lm_head_regathers_in_bf16_under_fp8():
    """The LM head (Megatron-Core's own ColumnParallelLinear, outside FP8): its sharded input is
    re-gathered at 2 bytes even in fp8 training, M = 256 bytes, once in the backward."""
    head = sc.LMHeadLayer(hidden_size=H, vocab_size=64, parallelism=SP2)
    bf16 = head.compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="bf16")
    prefill_like = _calls(bf16)[("all_gather", M)]
    # forward entry gather + the re-gather (the entry's transpose is a reduce-scatter)
    assert prefill_like == 2
    fp8 = head.compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="fp8_e4m3")
    assert _calls(fp8)[("all_gather", M)] == 2


@pytest.mark.parametrize("shared", [0, 1])
def test_moe_expert_grid_regathers_only_the_shared_experts_input(shared):
    """MoE on Megatron-Core's expert grid (TP 2 + SP, ETP 1): the routed experts are fed by the
    dispatcher (explicit expert communication, ``sequence_parallel=False`` in their linears) and
    save the dispatched tokens themselves: no re-gather. The shared experts are a TP dense MLP
    whose fc1 gathers the input and whose fc2 reduce-scatters its output: forward 1 all-gather of M,
    backward the exit's transpose (an all-gather of M) and the re-gather of M: 3 with shared experts,
    none without (the expert grid's own all-gather is over ETP 1: absent)."""
    moe = sc.MoELayer(hidden_size=H, expert_intermediate_size=F, num_experts=4, top_k=2,
                      num_shared_experts=shared, parallelism={**SP2, "expert_tensor_parallel": 1})
    m = moe.compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="bf16")
    assert _calls(m)[("all_gather", M)] == 3 * shared

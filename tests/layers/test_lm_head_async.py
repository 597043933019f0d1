"""Megatron-Core overlaps the LM head's backward TP collectives with its GEMMs.

The output layer is Megatron-Core's own ``ColumnParallelLinear`` (core_v0.14.0
megatron/core/models/gpt/gpt_model.py), whose backward is
``LinearWithGradAccumulationAndAsyncCommunication.backward`` (megatron/core/tensor_parallel/layers.py,
core_v0.14.0, lines 487-620): under sequence parallelism it launches the re-gather of the saved input
shard with ``async_op=True`` before the dgrad GEMM and waits after it, and launches the input
gradient's reduce-scatter (``dist_reduce_scatter_func(..., async_op=True)``, "scheduled before the
weight gradient computation", CUDA_DEVICE_MAX_CONNECTIONS=1) before the wgrad GEMM and waits after
it; without SP, the input gradient's all-reduce (``allreduce_dgrad``) is launched asynchronously
beside the wgrad GEMM alike. The forward all-gather is synchronous (waited before the logits GEMM).
Each such collective is a bulk overlap (:attr:`symcost.core.ops.Collective.bulk`, whole beside one
GEMM, with ``overlap=True``), plain NCCL (not TE userbuffers).
"""

from __future__ import annotations

import sympy as sp

import symcost as sc
from symcost.hardware.timing import collective_time

H, V, S = 1024, 32000, 2048
SP2 = {"tensor_parallel": 2, "sequence_parallel": "tp"}
KW = {"batch_size": 1, "seq_len": S, "phase": "training", "dtype": "bf16"}


def _marks(m):
    return sorted((c.kind, int(c.payload_bytes), bool(c.bulk), bool(c.userbuffers)) for c in m.collectives)


def test_sp_backward_gathers_and_reduce_scatter_are_bulk():
    """TP 2 + SP, T = 2048, bf16: T*h*e = 2048*1024*2 = 4,194,304 bytes. Forward: the input's
    all-gather (synchronous, not bulk) and the fused loss's gather of 3 fp32 row statistics per row
    and rank (2048*3*4*2 = 49,152). Backward: the re-gather (bulk, beside dgrad) and the input
    gradient's reduce-scatter (bulk, beside wgrad). None is userbuffers."""
    m = sc.LMHeadLayer(vocab_size=V, hidden_size=H, parallelism=SP2).compute_metrics(**KW)
    M = S * H * 2
    assert _marks(m) == [("all_gather", 49_152, False, False), ("all_gather", M, False, False),
                         ("all_gather", M, True, False), ("reduce_scatter", M, True, False)]


def test_no_sp_input_gradient_all_reduce_is_bulk():
    """TP 2 without SP: Megatron's f, the input gradient's all-reduce (T*h*e), async beside wgrad."""
    m = sc.LMHeadLayer(vocab_size=V, hidden_size=H, parallelism={"tensor_parallel": 2}).compute_metrics(**KW)
    assert ("all_reduce", S * H * 2, True, False) in _marks(m)


def test_overlap_hides_the_async_collectives_behind_the_head_gemms():
    """On H100 (the preset, tp_overlap_efficiency eta) with overlap=True the layer's latency drops by
    eta * (t-1)/t * (C_regather + C_rs) (timing.exposed_comm: the layer's TP-overlapped collectives
    pooled against its GEMMs, each priced at the share (k-1)/k; the head's three GEMMs, 2*T*h*V/t
    FLOPs each = 67 GFLOP, take far longer than the two collectives, so min(C, G) = C)."""
    head = sc.LMHeadLayer(vocab_size=V, hidden_size=H, parallelism=SP2)
    chip = sc.hardware.get("H100_SXM")
    serial = head.compute_metrics(**KW, hardware=chip, overlap=False)
    hidden = head.compute_metrics(**KW, hardware=chip, overlap=True)
    bulk = [c for c in serial.collectives if c.bulk]
    assert len(bulk) == 2
    comm = sum((collective_time(c, chip) * c.count for c in bulk), sp.Integer(0))
    eta = chip.runtime.tp_overlap_efficiency
    assert sp.nsimplify(serial.latency - hidden.latency) == eta * sp.Rational(1, 2) * comm


def test_bulk_off_the_tp_axis_is_refused():
    """A bulk overlap sits beside a linear's GEMM: a TP collective's only; on another axis one line
    naming the field."""
    import pytest

    from symcost.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^Collective.bulk: a bulk overlap is a TP collective's"):
        sc.Collective("all_gather", "dp", 2, 100, bulk=True)
    assert sc.Collective("all_gather", "tp", 2, 100, bulk=True).bulk


def test_fused_loss_transpose_dropped_when_its_bytes_equal_the_input_gradients():
    """h = 6t: the fused loss's row statistics (T*3*4*t bytes) weigh what the head's input does
    (T*h*2): TP 2 + SP, h 12, V 64, b 1, s 8, T = 8: 8*3*4*2 = 192 = 8*12*2. Forward: the input's
    all-gather and the statistics' all-gather (192 each, not bulk); backward: the re-gather (192, bulk)
    and the input gradient's reduce-scatter (192, bulk), exactly one: nothing flows back through the
    statistics' gather (the loss kernel wrote the logits' gradient in the forward)."""
    from collections import Counter
    head = sc.LMHeadLayer(vocab_size=64, hidden_size=12, parallelism=SP2)
    m = head.compute_metrics(batch_size=1, seq_len=8, phase="training", dtype="bf16")
    calls: Counter = Counter()
    for c in m.collectives:
        calls[(c.kind, int(c.payload_bytes), bool(c.bulk))] += int(c.count)
    assert calls == Counter({("all_gather", 192, False): 2, ("all_gather", 192, True): 1,
                             ("reduce_scatter", 192, True): 1})

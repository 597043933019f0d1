"""``overlap=True`` as Megatron-Core and Transformer Engine overlap a layer's communication
(symcost.hardware.timing.layer_times): the sequence-parallel TP collectives pipelined chunk by
chunk with the GEMMs (TE userbuffers), the context-parallel ring's sends each behind one ring
step's attention block (TE's AttnFuncWithCPAndKVP2P). Expected values by hand from the
two-stage pipeline: ``k`` chunks of comm ``C/k`` and GEMM ``G/k`` take ``C/k + (k-1) max(C, G)/k
+ G/k``, so the exposed comm is ``C/k + max(0, C - G) (k-1)/k``."""

from fractions import Fraction

import sympy as sp

import symcost as sc
from symcost import hardware
from symcost.core.ops import Collective, Matmul
from symcost.hardware.timing import collective_time, layer_times, op_time

H100 = hardware.H100_SXM.ideal()
PEAK = H100.effective_peak(sc.DataType.BF16)


def _times(metrics, kinds):
    """Seconds of ``metrics``' ops whose kernel class starts with one of ``kinds``."""
    return sum(op_time(op, H100, metrics.peak_flops, sc.DataType.BF16).time * n
               for op, n in metrics.ops if op.kernel.startswith(kinds))


def test_tp_chunk_hidden_behind_its_gemm():
    """One GEMM (4096 x 8192 x 8192, 0.56 ms on the ideal H100) and one reduce-scatter over 8
    (0.13 ms of NVLink): comm < GEMM, so of the 8 chunks only the last one's send shows,
    C / 8; the old overlap (max(ops, comm)) showed nothing."""
    gemm = Matmul("out_proj", m=4096, k=8192, n=8192, dtype_bytes=2)
    rs = Collective("reduce_scatter", "tp", 8, 4096 * 8192 * 2)
    g = op_time(gemm, H100, PEAK).time
    c = collective_time(rs, H100)
    assert c < g
    t = layer_times([(gemm, 1)], [rs], H100, PEAK, overlap=True)
    assert t.latency == g + c / 8
    assert layer_times([(gemm, 1)], [rs], H100, PEAK).latency == g + c


def test_tp_comm_beyond_its_gemm_is_exposed():
    """A GEMM too small to hide its reduce-scatter (m = 4096, n = k = 512: 4.3 us against ~0.1 ms
    of comm): the pipeline shows the first chunk's comm and everything the comm exceeds the
    GEMM by, C/8 + (C - G) 7/8 = C - 7 G / 8."""
    gemm = Matmul("out_proj", m=4096, k=512, n=512, dtype_bytes=2)
    rs = Collective("reduce_scatter", "tp", 8, 4096 * 8192 * 2)
    g = op_time(gemm, H100, PEAK).time
    c = collective_time(rs, H100)
    assert c > g
    t = layer_times([(gemm, 1)], [rs], H100, PEAK, overlap=True)
    assert t.latency == g + c - Fraction(7, 8) * g


def test_tp_overlap_of_a_megatron_sp_mlp():
    """An MLP under TP 8 with sequence parallelism (all-gather in, reduce-scatter out, and their
    transposes in the backward): its GEMMs hide all but one chunk in eight of the comm."""
    layer = sc.MLPLayer(hidden_size=4096, intermediate_size=16384,
                        parallelism={"tensor_parallel": 8, "sequence_parallel": "tp"})
    kw = {"batch_size": 1, "seq_len": 8192, "phase": "training", "dtype": "bf16", "hardware": H100}
    serial = layer.compute_metrics(**kw)
    hidden = layer.compute_metrics(overlap=True, **kw)
    ops_time = serial.latency - serial.comm_time
    assert serial.comm_time < _times(serial, ("gemm",))
    assert hidden.latency == ops_time + serial.comm_time / 8


def test_cp_ring_step_hidden_behind_its_attention_block():
    """GQA under context parallelism 4, training, overlap: each ring step's KV send runs beside
    that step's attention block; one step of each pass's 4 hides nothing (forward: the last
    step's block has no send left; TE posts step i+1's send before step i's block), so the
    attention that hides sends is 3/4 of the core's forward and backward time:
    exposed = max(0, C_cp - 3/4 A).

    At 32k tokens the blocks hide the ring (exposed 0); at 512 tokens the ring's per-hop latency
    is larger than the blocks and shows, less what 3/4 of them hide."""
    layer = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8,
                                          parallelism={"context_parallel": 4})
    for seq, hidden_all in ((32768, True), (512, False)):
        kw = {"batch_size": 1, "seq_len": seq, "phase": "training", "dtype": "bf16", "hardware": H100}
        serial = layer.compute_metrics(**kw)
        hidden = layer.compute_metrics(overlap=True, **kw)
        ops_time = serial.latency - serial.comm_time
        attention = _times(serial, ("attn.",))
        exposed = max(0, serial.comm_time - Fraction(3, 4) * attention)
        assert (exposed == 0) == hidden_all
        assert hidden.latency == ops_time + exposed


def test_overlap_symbolic_degrees_stay_symbolic():
    """With a symbolic TP degree the exposed chunk is C/t, a formula."""
    t = sp.Symbol("t", positive=True, integer=True)
    gemm = Matmul("out_proj", m=4096, k=8192, n=8192, dtype_bytes=2)
    rs = Collective("reduce_scatter", "tp", t, 4096 * 8192 * 2)
    times = layer_times([(gemm, 1)], [rs], H100, PEAK, overlap=True)
    at8 = times.latency.xreplace({t: 8})
    assert at8 == layer_times([(gemm, 1)], [Collective("reduce_scatter", "tp", 8, 4096 * 8192 * 2)], H100, PEAK,
                              overlap=True).latency

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


def _reduce(payload, k):
    """The ideal H100's time (no fixed times) of the kernel TE's ring-exchange reduce-scatter runs
    after its chunks: it reads the payload P and writes P/k at 3.35 TB/s
    (test_ring_exchange_runs_one_gemm_per_chunk_and_reduces_the_chunks)."""
    return sp.Integer(payload) * (1 + sp.Rational(1, k)) / 3_350_000_000_000


def _times(metrics, kinds):
    """Seconds of ``metrics``' ops whose kernel class starts with one of ``kinds``."""
    return sum(op_time(op, H100, metrics.peak_flops, sc.DataType.BF16).time * n
               for op, n in metrics.ops if op.kernel.startswith(kinds))


def test_tp_chunk_hidden_behind_its_gemm():
    """One GEMM (4096 x 8192 x 8192, 0.56 ms on the ideal H100) and one reduce-scatter over 8
    (0.13 ms of NVLink): comm < GEMM, so of the 8 chunks only the last one's send shows,
    C / 8, and the reduction of the 8 output chunks (the old overlap, max(ops, comm), showed nothing)."""
    gemm = Matmul("out_proj", m=4096, k=8192, n=8192, dtype_bytes=2)
    rs = Collective("reduce_scatter", "tp", 8, 4096 * 8192 * 2, userbuffers=True)
    g = op_time(gemm, H100, PEAK).time
    c = collective_time(rs, H100)
    assert c < g
    t = layer_times([(gemm, 1)], [rs], H100, PEAK, overlap=True)
    assert t.latency == g + c / 8 + _reduce(4096 * 8192 * 2, 8)
    assert layer_times([(gemm, 1)], [rs], H100, PEAK).latency == g + c


def test_tp_comm_beyond_its_gemm_is_exposed():
    """A GEMM too small to hide its reduce-scatter (m = 4096, n = k = 512: 4.3 us against ~0.1 ms
    of comm): the pipeline shows the first chunk's comm and everything the comm exceeds the
    GEMM by, C/8 + (C - G) 7/8 = C - 7 G / 8, and the reduction of the chunks."""
    gemm = Matmul("out_proj", m=4096, k=512, n=512, dtype_bytes=2)
    rs = Collective("reduce_scatter", "tp", 8, 4096 * 8192 * 2, userbuffers=True)
    g = op_time(gemm, H100, PEAK).time
    c = collective_time(rs, H100)
    assert c > g
    t = layer_times([(gemm, 1)], [rs], H100, PEAK, overlap=True)
    assert t.latency == g + c - Fraction(7, 8) * g + _reduce(4096 * 8192 * 2, 8)


def test_tp_overlap_of_a_megatron_sp_mlp():
    """An MLP under TP 8 with sequence parallelism (all-gather in, reduce-scatter out, and their
    transposes in the backward, four calls of C each): its GEMMs hide all but one chunk in eight
    of the comm (the bulk reduce-scatter of the input gradient priced alike), and the forward
    reduce-scatter's chunks are reduced once (b s h e = 8192 * 4096 * 2)."""
    layer = sc.MLPLayer(hidden_size=4096, intermediate_size=16384,
                        parallelism={"tensor_parallel": 8, "sequence_parallel": "tp"})
    kw = {"batch_size": 1, "seq_len": 8192, "phase": "training", "dtype": "bf16", "hardware": H100}
    serial = layer.compute_metrics(**kw)
    hidden = layer.compute_metrics(overlap=True, **kw)
    ops_time = serial.latency - serial.comm_time
    assert serial.comm_time < _times(serial, ("gemm",))
    assert hidden.latency == ops_time + serial.comm_time / 8 + _reduce(8192 * 4096 * 2, 8)


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
    rs = Collective("reduce_scatter", "tp", t, 4096 * 8192 * 2, userbuffers=True)
    times = layer_times([(gemm, 1)], [rs], H100, PEAK, overlap=True)
    at8 = times.latency.xreplace({t: 8})
    at_8 = Collective("reduce_scatter", "tp", 8, 4096 * 8192 * 2, userbuffers=True)
    assert at8 == layer_times([(gemm, 1)], [at_8], H100, PEAK, overlap=True).latency


# --- review findings 2, 3 and 6: what overlap=True leaves exposed ------------------------------

QWEN3_30B_MOE = dict(hidden_size=2048, expert_intermediate_size=768, num_experts=128, top_k=8,
                     parallelism={"expert_parallel": 8})


def test_overlap_exposes_the_ep_all_to_alls_megatron_does_not_overlap():
    """Qwen3-30B-A3B's MoE layer (h 2048, f_e 768, E 128, top-8) under EP 8, 4,096 tokens,
    training on an H100 with the megatron-core profile. Megatron-Core overlaps a micro-batch's EP
    dispatch and combine with compute only under overlap_moe_expert_parallel_comm (the combined
    1F1B schedule, megatron/core/pipeline_parallel/combined_1f1b.py: with another micro-batch's
    compute); without it the token dispatcher's all-to-all runs on the critical path
    (megatron/core/transformer/moe/token_dispatcher.py: ``all_to_all`` then the experts wait on
    its output). The layer has no TP or CP-ring traffic, so overlap=True changes nothing:

    - a2a_overlap off: ops + comm (as overlap=False);
    - a2a_overlap on: ops + comm - eta min(ops, comm), eta the profile's a2a_overlap_efficiency
      (as overlap=False), not max(ops, comm) (the old, full hiding)."""
    chip = hardware.H100_SXM.with_runtime("megatron-core")
    eta = chip.runtime.a2a_overlap_efficiency
    kw = {"batch_size": 1, "seq_len": 4096, "phase": "training", "dtype": "bf16", "hardware": chip}
    for a2a in (False, True):
        layer = sc.MoELayer(**QWEN3_30B_MOE, a2a_overlap=a2a)
        serial, overlapped = (layer.compute_metrics(overlap=o, **kw) for o in (False, True))
        if not a2a:
            assert overlapped.latency == serial.latency
        else:
            plain = sc.MoELayer(**QWEN3_30B_MOE).compute_metrics(**kw)
            x = plain.latency - plain.comm_time
            assert overlapped.latency == x + plain.comm_time - eta * min(x, plain.comm_time)
            assert overlapped.latency == serial.latency
            assert overlapped.latency > max(x, plain.comm_time)   # eta < 1 on megatron-core


def test_overlap_exposes_ulysses_all_to_alls():
    """Ulysses (sp 4, no TP): DeepSpeed-Ulysses' all-to-alls sit between the QKV projection and
    the core and between the core and the output projection, each waited for (deepspeed/sequence/
    layer.py DistributedAttention: ``_SeqAllToAll.apply`` before and after ``local_attn``): on the
    critical path, so overlap=True adds all of them, ops + comm."""
    layer = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8,
                                          parallelism={"sequence_parallel": 4})
    kw = {"batch_size": 1, "seq_len": 8192, "phase": "training", "dtype": "bf16", "hardware": H100}
    serial, overlapped = (layer.compute_metrics(overlap=o, **kw) for o in (False, True))
    assert serial.comm_time > 0
    assert overlapped.latency == serial.latency


def test_compute_hides_tp_chunks_and_hidden_all_to_alls_once():
    """One GEMM G with a TP reduce-scatter C_tp over 8 (C_tp < G) and a hidden EP all-to-all A
    longer than G, ideal chip (eta = 1). The GEMM hides 7/8 of C_tp behind its chunks; what
    compute is left, G - 7/8 C_tp, hides the all-to-all: latency G + C_tp + A - 7/8 C_tp -
    (G - 7/8 C_tp) = A + C_tp, plus the reduction of the chunks. The old rule counted G twice:
    max(G, A) + C_tp/8 = A + C_tp/8."""
    gemm = Matmul("out_proj", m=4096, k=8192, n=8192, dtype_bytes=2)
    rs = Collective("reduce_scatter", "tp", 8, 4096 * 8192 * 2, userbuffers=True)
    a2a = Collective("all_to_all", "ep", 8, 4096 * 8192 * 2 * 40, hidden=True)
    g, c, a = op_time(gemm, H100, PEAK).time, collective_time(rs, H100), collective_time(a2a, H100)
    assert c < g < a
    t = layer_times([(gemm, 1)], [rs, a2a], H100, PEAK, overlap=True)
    assert t.latency == a + c + _reduce(4096 * 8192 * 2, 8)


def test_each_tp_collective_is_chunked_by_its_own_group():
    """Two TP collectives of different degrees (a reduce-scatter over 8, an all-gather over 2)
    behind a GEMM longer than both: each is cut into its own group's chunks and shows one chunk,
    C_8/8 + C_2/2 (not (C_8 + C_2)/8, the first collective's degree for both), and the
    reduce-scatter's chunks are reduced."""
    gemm = Matmul("out_proj", m=4096, k=8192, n=8192, dtype_bytes=2)
    rs = Collective("reduce_scatter", "tp", 8, 4096 * 8192 * 2, userbuffers=True)
    ag = Collective("all_gather", "tp", 2, 4096 * 1024 * 2, userbuffers=True)
    g, c8, c2 = op_time(gemm, H100, PEAK).time, collective_time(rs, H100), collective_time(ag, H100)
    assert c8 + c2 < g
    t = layer_times([(gemm, 1)], [rs, ag], H100, PEAK, overlap=True)
    assert t.latency == g + c8 / 8 + c2 / 2 + _reduce(4096 * 8192 * 2, 8)


# --- issue 22: what Transformer Engine's userbuffers overlap costs ------------------------------

# the realistic chip under the neutral profile (it hides all it can: tp_overlap_efficiency 1)
H100_REAL = hardware.H100_SXM


def test_ring_exchange_runs_one_gemm_per_chunk_and_reduces_the_chunks():
    """TE's ring exchange (transformer_engine/common/comm_gemm_overlap/comm_gemm_overlap.cpp,
    commit d0067d0, CommOverlapP2PBase::split_overlap_ag and split_overlap_rs) runs one cuBLAS
    GEMM per chunk (``for (int i = 0; i < _tp_size; i++) nvte_cublas_gemm(...)``), t GEMMs where
    the serial layer runs one, and after a reduce-scatter sums the t received output chunks in one
    kernel (``reduce_bf16(reduce_buf_ptr, rs_output_ptr, _tp_size, ...)``): it reads the whole
    unreduced output P (the reduce-scatter's payload) and writes its own 1/t of it.

    On a realistic H100 (bf16: t_gemm = 3.59 us, elementwise floor t_k = 1.4 us, HBM 3.35 TB/s at
    0.915 = 3.06525 TB/s), one GEMM G and one reduce-scatter C over t = 4 (C < G), overlapped:
    G + C/4 + 3 t_gemm + P (1 + 1/4) / B + t_k. An all-gather instead adds only 3 t_gemm."""
    gemm = Matmul("out_proj", m=4096, k=8192, n=8192, dtype_bytes=2)
    payload = 4096 * 8192 * 2
    peak = H100_REAL.effective_peak(sc.DataType.BF16)
    g = op_time(gemm, H100_REAL, peak, sc.DataType.BF16).time
    t_gemm, t_k, bandwidth = sp.Rational(359, 10**8), sp.Rational(7, 5 * 10**6), sp.Integer(3_065_250_000_000)
    for kind, extra in (("reduce_scatter", 3 * t_gemm + payload * Fraction(5, 4) / bandwidth + t_k),
                        ("all_gather", 3 * t_gemm)):
        c = Collective(kind, "tp", 4, payload, userbuffers=True)
        time = collective_time(c, H100_REAL)
        assert time < g
        t = layer_times([(gemm, 1)], [c], H100_REAL, peak, overlap=True, datatype=sc.DataType.BF16)
        assert t.latency == g + time / 4 + extra
        # not overlapped: one GEMM and NCCL's collective, as before
        assert layer_times([(gemm, 1)], [c], H100_REAL, peak, datatype=sc.DataType.BF16).latency == g + time


def test_bulk_overlap_runs_no_extra_gemm_and_no_reduction():
    """A bulk collective (TE's ub_bulk_dgrad / ub_bulk_wgrad: the dgrad output's reduce-scatter
    behind the wgrad GEMM, comm_gemm_overlap.cpp CommOverlapBase::bulk_overlap) runs whole beside
    one GEMM, not cut into chunks: no extra GEMM and no reduction kernel of its own (the
    userbuffers reduce-scatter kernel sums as it goes). It is priced at the chunked share,
    (k - 1)/k min(C, G) hidden (timing._pipelined_share: the layer-wide pooling cannot tell which
    GEMM it runs beside): over 4 ranks G + C/4 beside a longer GEMM, C + G/4 beside a shorter one."""
    payload = 4096 * 8192 * 2
    rs = Collective("reduce_scatter", "tp", 4, payload, bulk=True, userbuffers=True)
    c = collective_time(rs, H100_REAL)
    peak = H100_REAL.effective_peak(sc.DataType.BF16)
    for n in (8192, 512):
        gemm = Matmul("qkv.wgrad", m=4096, k=8192, n=n, dtype_bytes=2)
        g = op_time(gemm, H100_REAL, peak, sc.DataType.BF16).time
        t = layer_times([(gemm, 1)], [rs], H100_REAL, peak, overlap=True, datatype=sc.DataType.BF16)
        assert t.latency == g + c - Fraction(3, 4) * min(g, c)


def test_the_dgrad_reduce_scatter_of_a_sequence_parallel_entry_is_bulk():
    """Under Megatron SP a TP block's entry all-gather transposes, in the backward, to the
    reduce-scatter of its input gradient, which TE overlaps in bulk with the wgrad GEMM
    (Megatron-Bridge's userbuffers configs, src/megatron/bridge/training/comm_overlap.py:
    qkv_wgrad and fc1_wgrad ``BulkOverlapCfg``); the exit's reduce-scatter and the backward's
    all-gather of the output gradient are ring exchanges (``RingExchangeOverlapCfg``). The backward's
    re-gather of fc1's saved input shard runs in bulk beside the dgrad GEMM (``qkv_dgrad`` and
    ``fc1_dgrad`` ``BulkOverlapCfg``, TE ``ub_bulk_dgrad``)."""
    layer = sc.MLPLayer(hidden_size=64, intermediate_size=256,
                        parallelism={"tensor_parallel": 4, "sequence_parallel": "tp"})
    m = layer.compute_metrics(batch_size=1, seq_len=16, phase="training", dtype="bf16")
    payload = 16 * 64 * 2
    assert [(c.kind, c.payload_bytes, c.count, c.bulk) for c in m.collectives] == [
        ("all_gather", payload, 2, False), ("reduce_scatter", payload, 1, False),
        ("all_gather", payload, 1, True), ("reduce_scatter", payload, 1, True)]


def test_the_engines_tp_overlap_share_scales_what_the_chunks_hide():
    """An engine that hides only a share eta_tp of what the TP pipeline could (the megatron-core
    profile's tp_overlap_efficiency, fitted on the Megatron-Bridge runs): the GEMM hides
    eta_tp 7/8 C of a reduce-scatter C over 8 behind it (C < G); eta_tp = 1/2 on the ideal H100:
    G + C - 7/16 C, plus the reduction of the chunks. overlap=False is untouched."""
    chip = H100.with_runtime(sc.hardware.Runtime(name="half", tp_overlap_efficiency=Fraction(1, 2)))
    gemm = Matmul("out_proj", m=4096, k=8192, n=8192, dtype_bytes=2)
    rs = Collective("reduce_scatter", "tp", 8, 4096 * 8192 * 2, userbuffers=True)
    g, c = op_time(gemm, chip, PEAK).time, collective_time(rs, chip)
    assert layer_times([(gemm, 1)], [rs], chip, PEAK, overlap=True).latency == (
        g + c - Fraction(7, 16) * c + _reduce(4096 * 8192 * 2, 8))
    assert layer_times([(gemm, 1)], [rs], chip, PEAK).latency == g + c


def _training(layer, **kw):
    return [layer.compute_metrics(batch_size=1, seq_len=8192, phase="training", dtype="bf16",
                                  hardware=H100_REAL, overlap=overlap, **kw) for overlap in (False, True)]



def test_plain_nccl_tp_collectives_are_not_chunked():
    """Only Transformer Engine's linears (qkv, proj, fc1, fc2: a block's TP entry and exit) run
    userbuffers; the embedding's sequence-parallel reduce-scatter (Megatron-Core
    VocabParallelEmbedding, ``reduce_scatter_to_sequence_parallel_region``) and the LM head's
    all-gather of its input (a plain ColumnParallelLinear) and the fused loss's all-gather of row
    statistics are NCCL collectives Megatron does not overlap. Under ``overlap`` they add in full
    and run no extra GEMM and no reduction kernel: the embedding (no GEMM, nothing marked hidden)
    costs exactly what it costs without overlap (was +100.92 us on H100, TP 8 + SP: 7 GEMM floors
    of 3.59 us and the reduction of 128 MiB at 3.07 TB/s added to a layer with no GEMM to hide
    behind). The LM head's backward re-gather and reduce-scatter, which Megatron-Core's linear
    issues asynchronously beside its GEMMs, are bulk (tests/layers/test_lm_head_async.py), its
    forward ones are not; none is userbuffers (no ring exchange, no reduction kernel)."""
    par = {"tensor_parallel": 8, "sequence_parallel": "tp"}
    embedding = sc.EmbeddingLayer(vocab_size=128256, hidden_size=8192, parallelism=par)
    head = sc.LMHeadLayer(vocab_size=128256, hidden_size=8192, parallelism=par)
    serial, overlapped = _training(embedding)
    assert overlapped.latency == serial.latency
    assert serial.collectives and not any(c.userbuffers for c in serial.collectives)
    serial, overlapped = _training(head)
    assert not any(c.userbuffers for c in serial.collectives)
    bulk = [c for c in serial.collectives if c.bulk]
    # the re-gather of the head's input and its gradient's reduce-scatter: T*h*2 = 8192*8192*2 bytes each
    assert [(c.kind, c.payload_bytes, c.count) for c in bulk] == [("all_gather", 134_217_728, 1),
                                                                  ("reduce_scatter", 134_217_728, 1)]
    # exposed_comm: H_tp = eta_tp * (t-1)/t * min(C_bulk, G); the logits GEMMs (3 x 2*8192*16032*8192
    # FLOPs) outlast the two collectives, so min = C_bulk; bulk ones add no ring-exchange work (S_tp = 0)
    c_bulk = sum(collective_time(c, H100_REAL) for c in bulk)
    assert c_bulk < serial.compute_time
    eta = H100_REAL.runtime.tp_overlap_efficiency
    assert serial.latency - overlapped.latency == eta * sp.Rational(7, 8) * c_bulk



def test_a_blocks_entry_and_exit_run_userbuffers():
    """The MLP's entry all-gather (into fc1) and exit reduce-scatter (out of fc2), and their
    transposes in the backward, are TE userbuffers collectives; a MoE layer's TP all-gather and
    reduce-scatter of its tokens (Megatron-Core's token dispatcher,
    ``gather_from_sequence_parallel_region``) are plain NCCL."""
    par = {"tensor_parallel": 4, "sequence_parallel": "tp"}
    mlp = sc.MLPLayer(hidden_size=64, intermediate_size=256, parallelism=par)
    m = mlp.compute_metrics(batch_size=1, seq_len=16, phase="training", dtype="bf16")
    # the backward: the exit's transpose (an all-gather, merged with the entry's), the re-gather of
    # fc1's saved input shard beside dgrad and the input gradient's reduce-scatter beside wgrad
    # (bulk: ub_bulk_dgrad, ub_bulk_wgrad)
    assert [(c.kind, c.userbuffers, c.bulk) for c in m.collectives] == [
        ("all_gather", True, False), ("reduce_scatter", True, False), ("all_gather", True, True),
        ("reduce_scatter", True, True)]
    moe = sc.MoELayer(hidden_size=64, num_experts=4, top_k=2, expert_intermediate_size=32, parallelism=par)
    m = moe.compute_metrics(batch_size=1, seq_len=16, phase="training", dtype="bf16")
    tp = [c for c in m.collectives if c.axis == "tp"]
    assert tp and not any(c.userbuffers or c.bulk for c in tp)



def test_overlap_marks_are_checked():
    """userbuffers and bulk only on a TP collective (bulk without userbuffers: Megatron-Core's
    asynchronous LM head collectives): one line naming the field."""
    import pytest

    with pytest.raises(sc.errors.ConfigError, match="Collective.userbuffers: .* got axis 'ep'"):
        Collective("all_to_all", "ep", 8, 1024, userbuffers=True)
    with pytest.raises(sc.errors.ConfigError, match=r"Collective.bulk: .* got axis 'dp'"):
        Collective("reduce_scatter", "dp", 8, 1024, bulk=True)
    assert Collective("reduce_scatter", "tp", 8, 1024, bulk=True).bulk


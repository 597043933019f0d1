"""The time model: hand-derived per-op rooflines and α–β collective times."""

from fractions import Fraction

import pytest
import sympy as sp

import symcost as sc
from symcost import hardware
from symcost import symbols as S
from symcost.core.ops import Collective
from symcost.hardware.timing import collective_time
from symcost.testing import assert_expr_equal

H100 = hardware.H100_SXM.ideal()  # these tests derive the roofline by hand: the ideal chip
BF16_PEAK = Fraction("989.4") * 10**12  # H100 SXM dense bf16 FLOP/s
FP32_UNITS = Fraction("66.9") * 10**12  # H100 SXM FP32 (vector) FLOP/s
HBM = Fraction("3.35") * 10**12  # H100 SXM HBM3 bytes/s
NVLINK = 450 * 10**9  # per direction
IB = 50 * 10**9  # 400 Gb/s per GPU
# NVIDIA/nccl v2.30.7 src/graph/tuning.cc, hwLatencies (LL protocol): 0.6 us per ring hop over
# NVLink, 2.7 us per ring hop over the network (between nodes)
ALPHA = Fraction(6, 10**7)
ALPHA_NET = Fraction(27, 10**7)


def test_decode_gqa_is_memory_bound_on_h100():
    """Llama-3-8B attention, one decode step over 2048 keys, batch 1, bf16, on an H100.

    Per op (bytes from tests/layers/test_attention.py::test_gqa_decode_by_hand):
      qkv   50,331,648 FLOPs (51 ns at 989.4 TFLOP/s) vs 50,352,128 bytes (15.0 µs at 3.35 TB/s)
      core  33,554,432 + 327,680 vector FLOPs (~39 ns) vs 8,404,992 bytes (2.5 µs)
      out   33,554,432 FLOPs (34 ns) vs 33,570,816 bytes (10.0 µs)
    every op waits for memory: latency = 92,327,936 bytes / 3.35 TB/s = 27.56 µs.
    """
    m = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8).compute_metrics(
        batch_size=1, seq_len=2048, phase="decode", dtype="bf16", hardware=H100)
    assert m.latency == m.memory_time == Fraction(92_327_936) / HBM
    assert m.compute_time == Fraction(50_331_648 + 33_554_432 + 33_554_432) / BF16_PEAK + Fraction(
        327_680) / FP32_UNITS
    assert m.comm_time == 0
    assert m.bound == "memory"
    assert 27.5e-6 < float(m.latency) < 27.6e-6


def test_prefill_mlp_is_compute_bound_on_h100():
    """GELU MLP h=4096 f=16384, b=1 s=2048, bf16, on an H100.

      fc1, fc2: 274,877,906,944 FLOPs each (277.8 µs) vs 218,103,808 bytes (65.1 µs): compute
      gelu: 268,435,456 vector FLOPs (4.0 µs) vs 134,217,728 bytes (40.1 µs): memory
    latency = 2 * 274,877,906,944 / 989.4 T + 134,217,728 / 3.35 T.
    """
    m = sc.MLPLayer(hidden_size=4096, intermediate_size=16384).compute_metrics(
        batch_size=1, seq_len=2048, phase="prefill", dtype="bf16", hardware=H100)
    fc = 2 * 2048 * 4096 * 16384
    assert fc == 274_877_906_944
    assert m.latency == 2 * Fraction(fc) / BF16_PEAK + Fraction(134_217_728) / HBM
    assert m.bound == "compute"
    # utilization: matmul FLOPs over latency x peak, below 1 because of the GELU pass
    assert m.flops_utilization == Fraction(2 * fc) / (m.latency * BF16_PEAK)
    assert 0.93 < float(m.flops_utilization) < 0.94
    # arithmetic intensity: FLOPs per byte of traffic
    assert m.arithmetic_intensity == Fraction(m.flops_per_chip, m.hbm_bytes_per_chip)


@pytest.mark.parametrize(
    ("kind", "n", "steps", "sent_fraction"),
    [
        ("all_reduce", 8, 14, Fraction(14, 8)),
        ("all_gather", 8, 7, Fraction(7, 8)),
        ("reduce_scatter", 4, 3, Fraction(3, 4)),
        ("all_to_all", 8, 7, Fraction(7, 8)),
        ("p2p", 2, 1, Fraction(1)),
    ],
)
def test_collective_alpha_beta_on_nvlink(kind, n, steps, sent_fraction):
    """Inside the 8-GPU NVLink domain: α * steps + (ring fraction * M) / 450 GB/s."""
    M = 3 * 10**8
    t = collective_time(Collective(kind, "tp", n, M), H100)
    assert t == steps * ALPHA + sent_fraction * M / NVLINK


@pytest.mark.parametrize(
    ("kind", "intra", "inter", "sent_fraction", "link"),
    [("all_reduce", 28, 2, Fraction(30, 16), 8 * IB), ("all_gather", 14, 1, Fraction(15, 16), 8 * IB),
     ("reduce_scatter", 14, 1, Fraction(15, 16), 8 * IB), ("all_to_all", 14, 1, Fraction(8, 16), IB)],
)
def test_collective_alpha_beta_across_nodes(kind, intra, inter, sent_fraction, link):
    """A group of 16 H100s spans two nodes: the scale-out network (50 GB/s per GPU) carries it.
    The ring crosses between the nodes twice per pass: an all-reduce's 30 steps (two passes)
    are 2 network hops and 28 NVLink hops; the one-pass collectives' 15 are 1 and 14. A ring
    collective runs one channel through each of the node's 8 GPUs' NICs: 8 * 50 = 400 GB/s
    (under NVLink's 450). An all-to-all sends each GPU's bytes to every peer at once (NCCL's
    grouped send/recv): the 8/16 of its buffer bound for the other node over its own NIC (50 GB/s),
    the 7/16 for its own node's peers over NVLink at the same time (7/16 M / 450 GB/s is the
    shorter): 8/16 M / 50 GB/s."""
    M = 10**9
    t = collective_time(Collective(kind, "dp", 16, M), H100)
    assert t == intra * ALPHA + inter * ALPHA_NET + sent_fraction * M / link


def test_group_of_one_costs_nothing():
    """A degree of 1 leaves no collective record and no communication time."""
    m = sc.MLPLayer(hidden_size=64, intermediate_size=256).compute_metrics(
        batch_size=2, seq_len=8, phase="training", dtype="bf16", hardware=H100)
    assert m.collectives == () and m.comm_time == 0
    assert collective_time(Collective("all_reduce", "tp", 1, 10**6), H100) == 0


def test_ulysses_group_strided_by_tp_uses_its_span():
    """t = 4 with Ulysses sp = 4: the sp group's chips are 4 apart and span 16 chips, more than
    one 8-GPU node, so its all-to-alls take the scale-out link; the TP all-reduce stays on NVLink."""
    m = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8,
                                      parallelism={"tensor_parallel": 4, "sequence_parallel": 4}
                                      ).compute_metrics(batch_size=1, seq_len=4096, dtype="bf16",
                                                        hardware=H100)
    T = 1024  # tokens per chip
    # a/t = 8 query heads; t*sp = 16 ranks over g = 8 KV heads: one KV head per rank, each of the
    # TP rank's g/t = 2 sent to the 2 Ulysses ranks that read it (docs/conventions.md §16)
    qkv = T * (8 + 2 * 4) * 128 * 2
    out = T * 8 * 128 * 2
    tp = T * 4096 * 2
    # two all-to-alls over 4 chips in two nodes (chips 0, 4 | 8, 12): of each ring's 3 steps one
    # crosses between the nodes; half of each buffer goes to the other node's 2 chips over the
    # NIC (the quarter for the node's other chip crosses NVLink meanwhile); the TP all-reduce
    # over 4, NVLink: 6 steps
    want = (2 * (2 * ALPHA + ALPHA_NET) + Fraction(1, 2) * (qkv + out) / IB
            + 6 * ALPHA + Fraction(6, 4) * tp / NVLINK)
    assert m.comm_time == want


def test_overlap_hides_tp_comm_but_one_chunk():
    """overlap=True: the TP all-reduces are pipelined in 8 chunks with the GEMMs, which outlast
    them here, so one chunk in eight shows (tests/hardware/test_comm_overlap.py derives the rule;
    it replaced latency = max(ops, comm), which hid everything)."""
    layer = sc.MLPLayer(hidden_size=4096, intermediate_size=16384, parallelism={"tensor_parallel": 8})
    kw = {"batch_size": 4, "seq_len": 4096, "dtype": "bf16", "hardware": H100}
    serial = layer.compute_metrics(**kw)
    hidden = layer.compute_metrics(overlap=True, **kw)
    ops_time = serial.latency - serial.comm_time
    assert serial.comm_time < ops_time
    assert hidden.latency == ops_time + serial.comm_time / 8
    assert hidden.latency < serial.latency


def test_communication_bound_decode_across_nodes():
    """A small decode MLP sharded over 64 GPUs: the cross-node all-reduce dominates."""
    m = sc.MLPLayer(hidden_size=4096, intermediate_size=16384,
                    parallelism={"tensor_parallel": 64}).compute_metrics(
        batch_size=1, seq_len=1, phase="decode", dtype="bf16", hardware=H100)
    # 126 ring steps over 8 nodes: 2 * (8 - 1) = 14 between nodes (2.7 µs), 112 on NVLink
    # (0.6 µs): 105 µs dwarf reading 2 MB of weights (0.6 µs); 8 of the group's GPUs share each
    # node's traffic over their 8 NICs: 400 GB/s
    assert m.comm_time == 112 * ALPHA + 14 * ALPHA_NET + Fraction(126, 64) * 4096 * 2 / (8 * IB)
    assert m.bound == "communication"


def test_efficiencies_derate_rates():
    """matmul_efficiency 1/2 doubles the matmul time; memory_efficiency 4/5 stretches traffic."""
    derated = H100.with_efficiency(matmul=Fraction(1, 2), memory=Fraction(4, 5))
    layer = sc.MLPLayer(hidden_size=4096, intermediate_size=16384)
    kw = {"batch_size": 1, "seq_len": 2048, "dtype": "bf16"}
    full = layer.compute_metrics(hardware=H100, **kw)
    half = layer.compute_metrics(hardware=derated, **kw)
    vector = Fraction(8 * 2048 * 16384) / FP32_UNITS
    assert half.compute_time - vector == 2 * (full.compute_time - vector)
    assert half.memory_time == full.memory_time * Fraction(5, 4)


def test_symbolic_chip_times_are_formulas():
    """Without hardware the latency is a formula in F, B_HBM, ...; binding H100 reproduces the
    numeric call exactly."""
    layer = sc.NormLayer(hidden_size=4096)
    sym = layer.compute_metrics(batch_size=8, seq_len=4096, dtype="bf16")
    # one pass: 7 FLOPs per element on the vector units vs reading x, gamma, beta and writing y
    n = 8 * 4096 * 4096
    assert_expr_equal(sym.latency, sp.Max(7 * n / S.vector_flops, 2 * (2 * n + 2 * 4096) / S.hbm_bandwidth))
    bound = sym.subs(hardware=H100, dtype="bf16")
    assert bound.latency == layer.compute_metrics(batch_size=8, seq_len=4096, dtype="bf16",
                                                  hardware=H100).latency
    assert sym.bound is None and bound.bound == "memory"


def test_fp8_uses_the_fp8_peak():
    """An fp8 matmul is timed at the fp8 peak (1978.9 TFLOP/s on H100)."""
    m = sc.MLPLayer(hidden_size=8192, intermediate_size=32768).compute_metrics(
        batch_size=8, seq_len=4096, dtype="fp8_e4m3", hardware=H100)
    assert m.peak_flops == Fraction("1978.9") * 10**12

"""The realistic time model (symcost/hardware/timing.py, docs/conventions.md, time model): each
term on a chip whose fields are round numbers, derived by hand, numeric and symbolic."""

from fractions import Fraction

import pytest
import sympy as sp

import symcost as sc
from symcost import hardware
from symcost import symbols as S
from symcost.hardware import Hardware, Runtime
from symcost.hardware.timing import collective_time, kernels, matmul_compute_flops, op_time
from symcost.ops import AttentionCore, Collective, Matmul, Vector

US = Fraction(1, 10**6)

# A chip with round fields: 100 TFLOP/s bf16 (200 fp8), 10 TFLOP/s vector, 1 TB/s HBM, NVLink-like
# 100 GB/s, 4 compute units, 128 x 128 tiles, every efficiency a simple fraction.
ROUND = Hardware(
    name="round", peak_flops={"bf16": 10**14, "fp8_e4m3": 2 * 10**14}, vector_flops=10**13,
    hbm_capacity=10**11, hbm_bandwidth=10**12, scale_up_bandwidth=10**11, scale_up_domain=8,
    scale_out_bandwidth=10**10, collective_latency=US,
    matmul_efficiency=Fraction(1, 2), matmul_efficiency_8bit=Fraction(1, 4), memory_efficiency=Fraction(1, 2),
    attention_memory_efficiency=Fraction(1, 4), attention_efficiency=Fraction(1, 5),
    network_efficiency=Fraction(1, 2), kernel_time=US, launch_time=3 * US, collective_base_latency=5 * US,
    compute_units=4, matmul_tile=(128, 128),
    runtime=Runtime(name="round", cuda_graphs=True, step_overhead=Fraction(1, 1000)))
PEAK = ROUND.effective_peak("bf16")  # 10^14 * 1/2


def test_small_m_gemm_is_padded_to_a_tile_and_split_over_the_units():
    """m = 1, n = 256, k = 1024: 1 x 2 = 2 tiles < 4 units, spread by split-K: half a wave.
    Matrix-unit FLOPs 2 tiles * 128 * 128 * 2k = 67,108,864 (the op's own: 524,288)."""
    mm = Matmul("w", m=1, n=256, k=1024, dtype_bytes=2)
    assert matmul_compute_flops(mm, ROUND) == 2 * 128 * 128 * 2 * 1024 == 67108864
    t = op_time(mm, ROUND, PEAK, sc.DataType.BF16)
    assert t.compute == sp.Rational(67108864, 5 * 10**13)
    # bytes 2 * (1*1024 + 1024*256 + 1*256) = 526,848 at 10^12 * 1/2 B/s
    assert t.memory == sp.Rational(526848, 5 * 10**11)
    assert t.time == sp.Rational(67108864, 5 * 10**13) + sp.Rational(1, 10**6)  # compute-bound + t_k


def test_wave_quantization_counts_whole_waves():
    """m = 640: ceil(640/128) * ceil(256/128) = 10 tiles on 4 units = 3 waves of 4 tiles:
    2 * 1024 * 128 * 128 * 4 * 3 = 402,653,184 FLOPs against the op's own 335,544,320 (6/5)."""
    mm = Matmul("w", m=640, n=256, k=1024, dtype_bytes=2)
    assert matmul_compute_flops(mm, ROUND) == 402653184
    assert sp.Rational(402653184, mm.matmul_flops) == sp.Rational(6, 5)
    # symbolic M: the same counts once b is substituted (ceiling and the split-K branch)
    sym = Matmul("w", m=S.batch_size, n=256, k=1024, dtype_bytes=2)
    flops = matmul_compute_flops(sym, ROUND)
    assert flops.has(sc._expr.Ceil)
    assert flops.xreplace({S.batch_size: 640}) == 402653184
    assert flops.xreplace({S.batch_size: 1}) == 67108864
    assert flops.xreplace({S.batch_size: 512}) == 2 * 512 * 256 * 1024  # 8 tiles: 2 full waves


def test_8bit_gemms_and_attention_rates():
    """FP8 GEMMs at 2*10^14 * 1/4; attention of an FP8 model at the bf16 peak * 1/5."""
    assert ROUND.effective_peak("fp8_e4m3") == 5 * 10**13
    assert ROUND.attention_peak("fp8_e4m3") == 2 * 10**13
    assert ROUND.attention_peak("bf16") == 2 * 10**13


def test_decode_attention_streams_the_cache_at_its_own_fraction():
    """One query per head, 1000 keys, 2 heads of 64, bf16: bytes Q 256 + O 256 + K,V 512,000 =
    512,512 at 10^12 * 1/4 B/s; FLOPs 4 * 2 * 1000 * 64 = 512,000 at 2*10^13, softmax 5 per pair
    at 10^13."""
    core = AttentionCore("attn", batch=1, heads=2, kv_heads=2, q_len=1, kv_len=1000, head_dim=64, dtype_bytes=2)
    t = op_time(core, ROUND, PEAK, sc.DataType.BF16)
    assert t.memory == sp.Rational(512512, 25 * 10**10)
    assert t.compute == sp.Rational(512000, 2 * 10**13) + sp.Rational(10000, 10**13)
    assert t.time == sp.Rational(512512, 25 * 10**10) + sp.Rational(1, 10**6)


def test_fused_ops_launch_no_kernel():
    """The residual add, the up projection and the gate multiply run inside other kernels."""
    vec = Vector("residual", elements=4, flops_per_element=1, read_bytes=16, write_bytes=8)
    assert kernels(vec) == 0 and kernels(Vector("residual.bwd")) == 0
    assert kernels(Matmul("up", m=1, n=1, k=1)) == 0 and kernels(Matmul("gate", m=1, n=1, k=1)) == 1
    assert op_time(vec, ROUND, PEAK).time == sp.Rational(24, 5 * 10**11)  # no t_k


def test_without_cuda_graphs_the_host_paces_tiny_kernels():
    """A 40-byte pass takes 80 ps + t_k = 1.00008 us on the GPU; launched from the host without
    graphs it takes t_launch = 3 us."""
    vec = Vector("norm", elements=10, flops_per_element=1, read_bytes=20, write_bytes=20)
    with_graphs = op_time(vec, ROUND, PEAK).time
    assert with_graphs == sp.Rational(40, 5 * 10**11) + sp.Rational(1, 10**6)
    no_graphs = ROUND.with_runtime(Runtime(name="host", cuda_graphs=False))
    assert op_time(vec, no_graphs, PEAK).time == sp.Rational(3, 10**6)


def test_collective_base_latency_steps_and_bus_bandwidth():
    """All-reduce of 1 MB over 8 chips: 5 us + 14 steps * 1 us + 2 * 7/8 MB at 100 GB/s * 1/2
    = 19 us + 35 us = 54 us. A group of one costs nothing."""
    c = Collective("all_reduce", "tp", 8, 10**6)
    assert collective_time(c, ROUND) == sp.Rational(54, 10**6)
    sym = Collective("all_reduce", "tp", S.tp, 10**6)
    assert collective_time(sym, ROUND).xreplace({S.tp: 1}) == 0
    assert collective_time(sym, ROUND).xreplace({S.tp: 8}) == sp.Rational(54, 10**6)


def test_decode_of_a_small_mlp_by_hand_symbolic_and_numeric():
    """GELU MLP h=256, f=1024, batch 1, bf16, decode on ROUND:
    fc1 (1 x 256 @ 256 x 1024): 8 tiles = 2 waves, 2*256*128*128*4*2 = 67,108,864 FLOPs at
        5*10^13 = 1.34217728 us > bytes 2*(256 + 262144 + 1024) at 5*10^11 = 1.053696 us; + 1 us;
    gelu: 1024 elements, 4096 bytes at 5*10^11 = 8.192 ns > 8192 FLOPs at 10^13; + 1 us;
    fc2 (1 x 1024 @ 1024 x 256): 2 tiles = half a wave, 67,108,864 FLOPs: 1.34217728 us; + 1 us."""
    layer = sc.MLPLayer(hidden_size=256, intermediate_size=1024)
    m = layer.compute_metrics(batch_size=1, seq_len=7, phase="decode", dtype="bf16", hardware=ROUND)
    gemm = sp.Rational(67108864, 5 * 10**13) + sp.Rational(1, 10**6)
    gelu = sp.Rational(4096, 5 * 10**11) + sp.Rational(1, 10**6)
    assert m.latency == 2 * gemm + gelu
    symbolic = sc.MLPLayer(hidden_size=S.hidden_size, intermediate_size=S.intermediate_size).compute_metrics(
        phase="decode", hardware=Hardware.symbolic(realistic=True, matmul_tile=(128, 128)))
    assert {S.matmul_efficiency, S.memory_efficiency, S.kernel_time, S.compute_units} <= symbolic.latency.free_symbols
    bound = symbolic.evaluate({S.batch_size: 1, S.seq_len: 7, S.hidden_size: 256, S.intermediate_size: 1024},
                              dtype="bf16", hardware=ROUND)
    assert bound.latency == m.latency


def test_step_overhead_is_added_once_per_inference_step():
    """TTFT and TPOT each carry the runtime's 1 ms exactly once."""
    model = sc.Model.llama(hidden_size=256, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=1000,
                           intermediate_size=512)
    with_overhead = model.inference_step(ROUND, 2, 64)
    without = model.inference_step(ROUND.with_runtime(Runtime(name="none")), 2, 64)
    assert with_overhead.ttft - without.ttft == Fraction(1, 1000)
    assert with_overhead.tpot - without.tpot == Fraction(1, 1000)


def test_realistic_chips_are_the_default_and_ideal_is_one_call_away():
    h100 = hardware.get("H100_SXM")
    assert not h100.is_ideal and h100.compute_units == 132 and h100.runtime.name == "neutral"
    ideal = h100.ideal()
    assert ideal.is_ideal and hardware.get("h100-ideal") == ideal
    # the ideal chip's op time is the plain roofline max(FLOPs / peak, bytes / bandwidth)
    mm = Matmul("w", m=1, n=4096, k=4096, dtype_bytes=2)
    t = op_time(mm, ideal, ideal.effective_peak("bf16"))
    assert t.time == sp.Max(sp.Rational(mm.matmul_flops, ideal.peak("bf16")),
                            sp.Rational(mm.hbm_bytes, ideal.hbm_bandwidth))
    # the realistic decode of the same GEMM is slower by the efficiency model, never faster
    assert op_time(mm, h100, h100.effective_peak("bf16")).time > t.time


def test_binding_a_realistic_chip_to_roofline_formulas_is_refused():
    """Metrics timed on the ideal symbolic chip would silently lose the efficiency model."""
    m = sc.NormLayer(hidden_size=S.hidden_size).compute_metrics(phase="prefill")
    with pytest.raises(ValueError, match="ideal symbolic chip"):
        m.subs(hardware="H100_SXM", dtype="bf16")
    assert m.subs(hardware=hardware.get("H100_SXM").ideal(), dtype="bf16").latency is not None


def test_efficiency_model_prints_in_latex():
    m = sc.NormLayer(hidden_size=S.hidden_size).compute_metrics(
        phase="prefill", hardware=Hardware.symbolic(realistic=True))
    text = m.to_latex(["latency"])
    assert r"\eta_{\mathrm{mem}}" in text and r"t_{\mathrm{k}}" in text


def test_attention_of_an_fp8_model_runs_at_the_16bit_peak_in_op_time():
    """Prefill core of an FP8 model: 4 * 1 * 2 * 128 * 128 * 64 = 8,388,608 matmul FLOPs at the
    bf16 peak 10^14 * 1/5 (not the FP8 peak), 5 softmax FLOPs per pair at 10^13."""
    core = AttentionCore("attn", batch=1, heads=2, kv_heads=2, q_len=128, kv_len=128, head_dim=64, dtype_bytes=1)
    t = op_time(core, ROUND, ROUND.effective_peak("fp8_e4m3"), sc.DataType.FP8_E4M3)
    assert t.compute == sp.Rational(8388608, 2 * 10**13) + sp.Rational(5 * 2 * 128 * 128, 10**13)
    with pytest.raises(ValueError, match="concrete dtype"):
        op_time(core, ROUND, ROUND.effective_peak("fp8_e4m3"))  # a numeric chip needs the dtype


def test_ideal_chip_is_an_ordinary_chip(tmp_path):
    """ideal() builds a chip like any other: equal to its fields rebuilt, its file read back."""
    ideal = hardware.get("H100_SXM").ideal()
    assert ideal == Hardware(**ideal._fields()) and hash(ideal) == hash(Hardware(**ideal._fields()))
    assert hash(ideal) != hash(hardware.get("H100_SXM"))
    path = tmp_path / "ideal.json"
    ideal.to_file(path)
    assert Hardware.from_file(path) == ideal
    realistic = hardware.get("H100_SXM")
    realistic.to_file(tmp_path / "h100.yaml")
    assert Hardware.from_file(tmp_path / "h100.yaml") == realistic

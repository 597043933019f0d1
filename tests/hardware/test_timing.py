"""The realistic time model (symcost/hardware/timing.py, docs/conventions.md, time model): each
term on a chip whose fields are round numbers, derived by hand, numeric and symbolic."""

import dataclasses
from fractions import Fraction

import pytest
import sympy as sp
from pydantic import ValidationError

import symcost as sc
from symcost import hardware
from symcost import symbols as S
from symcost.core._expr import Ceil
from symcost.core.ops import AttentionCore, Collective, Matmul, Vector
from symcost.hardware import Hardware, Runtime
from symcost.hardware.timing import collective_algorithms, collective_time, kernels, matmul_compute_flops, op_time

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
    assert flops.has(Ceil)
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


# ROUND with every collective algorithm, round numbers of our own: 4 us per network hop, 10 us per
# tree hop, tree bandwidth 1/2 of the ring's, NVLink SHARP 20 us per call at 3/4 (times 2 for an
# all-reduce). Effective links (eta_net = 1/2): 50 GB/s inside the 8-chip domain, 5 GB/s beyond.
COLL = ROUND.model_copy(update=dict(scale_out_latency=4 * US, tree_latency=10 * US, tree_efficiency=Fraction(1, 2),
                                    nvls_latency=20 * US, nvls_efficiency=Fraction(3, 4),
                                    nvls_arch_efficiency=1))  # no capability: kappa stated, 1
COLL = Hardware(**{f: getattr(COLL, f) for f in Hardware.model_fields})  # validated, hashed afresh
UP, OUT = 5 * 10**10, 5 * 10**9


def test_nvls_all_reduce_wins_large_messages_ring_small_ones():
    """All-reduce over the 8-chip domain: ring 5 + 14 * 1 = 19 us + 2 * 7/8 M at 50 GB/s; NVLink
    SHARP 20 us + 7/4 M at 50 GB/s * 2 * 3/4 (no tree inside one domain). Equal at
    7/4 M (1/UP - 1/(3/2 UP)) = 1 us, M = 85,714 bytes: below, the ring's lower latency wins;
    above, NVLink SHARP's bandwidth."""
    for M, winner in ((8000, "ring"), (10**8, "nvls")):
        c = Collective("all_reduce", "tp", 8, M)
        want = {"ring": 19 * US + Fraction(7, 4) * M / UP,
                "nvls": 20 * US + Fraction(7, 4) * M / (Fraction(3, 2) * UP)}
        assert collective_algorithms(c, COLL) == want
        assert collective_time(c, COLL) == want[winner]
    # 8000 bytes: ring 19.28 us < NVLS 20.18667 us; 10^8 bytes: ring 3519 us > NVLS 2353.3 us
    assert collective_time(Collective("all_reduce", "tp", 8, 8000), COLL) == Fraction(1928, 10**8)


def test_nvls_bandwidth_takes_nccls_factor_for_the_architecture():
    """NCCL's tuner scales NVLink SHARP's bus bandwidth by ``nvlsEfficiency[compCapIndex]``:
    0.85 on Hopper (compute capability 9.x), 0.74 on Blackwell (10.x and later) (NVIDIA/nccl
    v2.29.2-1, src/graph/tuning.cc, ``nvlsEfficiency``; compCapIndex Blackwell for minCompCap >=
    100, Hopper for >= 90). The chip's fitted ``nvls_efficiency`` multiplies it. COLL (eta_nvls 3/4,
    links 50 GB/s) all-reduce of 10^8 bytes over 8 chips: NVLS 20 us + 7/4 * 10^8 / (2 * 3/4 *
    kappa * 5 * 10^10): with kappa 17/20 (9.0) 20 + 2745.1 us, 37/50 (10.0, 10.3) 20 + 3153.2 us,
    without a compute capability and nvls_arch_efficiency stated 1, 20 + 2333.3 us; all-gather 20 us + 8/7 M / (3/4
    kappa 5 * 10^10)."""
    M = 10**8
    for capability, kappa in (("9.0", Fraction(17, 20)), ("10.0", Fraction(37, 50)), ("10.3", Fraction(37, 50)),
                              (None, Fraction(1))):
        # kappa from the capability; without one, COLL's stated nvls_arch_efficiency = 1
        chip = COLL.model_copy(update={"compute_capability": capability,
                                       "nvls_arch_efficiency": None if capability else Fraction(1)})
        chip = Hardware(**{f: getattr(chip, f) for f in Hardware.model_fields})
        assert chip.nccl_nvls_efficiency == kappa
        want = 20 * US + Fraction(7, 4) * M / (2 * Fraction(3, 4) * kappa * UP)
        assert collective_algorithms(Collective("all_reduce", "tp", 8, M), chip)["nvls"] == want
        # all-gather: M * n / ((n - 1) eta_nvls kappa link)
        want = 20 * US + Fraction(M * 8, 7) / (Fraction(3, 4) * kappa * UP)
        assert collective_algorithms(Collective("all_gather", "tp", 8, M), chip)["nvls"] == want
    # a chip file may state the factor itself (a measured value replaces NCCL's figure)
    chip = Hardware(**{**{f: getattr(COLL, f) for f in Hardware.model_fields}, "compute_capability": "9.0",
                       "nvls_arch_efficiency": Fraction(1, 2)})
    assert chip.nccl_nvls_efficiency == Fraction(1, 2)


@pytest.mark.parametrize("capability", [None, "8.0", "7.0", "11.0"])
def test_nvls_without_nccls_factor_for_the_chip_is_refused(capability):
    """NVLink SHARP's factor comes from NCCL's nvlsEfficiency table by compute capability (0.85 on
    9.x, 0.74 on 10.x; src/graph/tuning.cc): without a capability there is no figure (an H100 would
    silently get 1/0.85, 18 % more bandwidth), below 9.0 NCCL has no NVLS (factor 0), and above 10.x
    NCCL's newer tables carry other figures (Rubin 0.87): a chip with nvls_latency must then state
    nvls_arch_efficiency. One line naming the field (pydantic wraps the HardwareError)."""
    fields = {f: getattr(COLL, f) for f in Hardware.model_fields}
    with pytest.raises(ValidationError, match="nvls_latency is set .* set nvls_arch_efficiency"):
        Hardware(**{**fields, "compute_capability": capability, "nvls_arch_efficiency": None})
    # stated, it is taken as given; no nvls_latency, nothing to check
    assert Hardware(**{**fields, "compute_capability": capability}).nccl_nvls_efficiency == 1
    assert Hardware(**{**fields, "compute_capability": capability, "nvls_arch_efficiency": None,
                       "nvls_latency": None}).nvls_latency is None


def test_nvls_all_gather_never_beats_the_ring_in_nccls_model():
    """All-gather of M over 8: ring 5 + 7 = 12 us + 7/8 M at 50 GB/s; NVLink SHARP 20 us + M at
    50 GB/s * 3/4 * 7/8 (NCCL: bus bandwidth times (n-1)/n, the whole payload): more latency and
    8/7 * 8/7 * 4/3 times the bytes' time."""
    M = 10**8
    c = Collective("all_gather", "tp", 8, M)
    want = {"ring": 12 * US + Fraction(7, 8) * M / UP, "nvls": 20 * US + M / (Fraction(3, 4) * Fraction(7, 8) * UP)}
    assert collective_algorithms(c, COLL) == want
    assert collective_time(c, COLL) == want["ring"]


def test_tree_beats_ring_on_small_messages_across_many_nodes():
    """A data-parallel all-reduce over 64 chips 8 apart (span 512): one chip in each of 64 domains.
    Ring: 5 + 126 network hops * 4 = 509 us + 2 * 63/64 M at 5 GB/s. Tree: 5 + 2 * (0 * 1 +
    log2(64) * 10) = 125 us + 2 M at 5 GB/s * 1/2. 1 KB: the tree (125.8 us) beats the ring
    (509.39 us); 1 GB: the ring (0.394 s) beats the tree (0.8 s)."""
    for M, winner in ((1000, "tree"), (10**9, "ring")):
        c = Collective("all_reduce", "dp", 64, M, span=512)
        want = {"ring": 509 * US + Fraction(126, 64) * M / OUT, "tree": 125 * US + 2 * M / Fraction(OUT, 2)}
        assert collective_algorithms(c, COLL) == want
        assert collective_time(c, COLL) == want[winner]
    assert collective_time(Collective("all_reduce", "dp", 64, 1000, span=512), COLL) == Fraction(1258, 10**7)


def test_ring_across_two_nodes_and_p2p_hop():
    """16 chips in two domains: a ring all-reduce's 30 steps cross between the nodes twice:
    5 + 28 * 1 + 2 * 4 = 41 us; the tree: 5 + 2 * (7 * 1 + 1 * 10) = 39 us. A p2p to a chip in the
    next domain: 5 + 4 = 9 us + M at 5 GB/s."""
    c = Collective("all_reduce", "dp", 16, 0)
    assert collective_algorithms(c, COLL) == {"ring": 41 * US, "tree": 39 * US}
    assert collective_time(Collective("p2p", "pp", 2, 10**6, span=16), COLL) == 9 * US + Fraction(10**6, OUT)


def test_group_of_one_costs_nothing_with_every_algorithm():
    """n = 1 (numeric or bound later): the ring costs 0 and NCCL skips the call."""
    for kind in ("all_reduce", "all_gather", "reduce_scatter"):
        assert collective_time(Collective(kind, "tp", 1, 10**6), COLL) == 0
        sym = collective_time(Collective(kind, "tp", S.tp, 10**6), COLL)
        assert sym.xreplace({S.tp: 1}) == 0
        assert sym.xreplace({S.tp: 8}) == collective_time(Collective(kind, "tp", 8, 10**6), COLL)


def test_nvls_only_on_chips_with_nvlink_sharp_and_binding_stays_exact():
    """NVLink SHARP on H100, H200, B200, B300, GB200 (NVSwitch 3+), not on A100, MI300X or TPUs; the realistic
    symbolic chip binds to each preset exactly (an algorithm a chip lacks binds to oo and loses)."""
    c = Collective("all_reduce", "tp", 8, 10**7)
    has = {name: "nvls" in collective_algorithms(c, hardware.get(name)) for name in hardware.PRESETS}
    assert has == {"A100_SXM_80GB": False, "H100_SXM": True, "H200_SXM": True, "B200": True, "B300": True,
                   "GB200": True, "MI300X": False,
                   "TPU_V5E": False, "TPU_V5P": False, "TPU_V6E": False}
    symbolic = Hardware.symbolic(realistic=True)
    for kind, n, span in (("all_reduce", 8, 8), ("all_reduce", 32, 256), ("all_gather", 4, 4), ("p2p", 2, 16)):
        c = Collective(kind, "dp", n, 10**6, span=span)
        for name in hardware.PRESETS:
            chip = hardware.get(name)
            bound = collective_time(c, symbolic).xreplace(chip.symbol_values("bf16"))
            assert bound == collective_time(c, chip), (kind, n, name)
    # the ideal chip keeps the ring only
    assert list(collective_algorithms(c, hardware.get("H100_SXM").ideal())) == ["ring"]


def test_h100_small_all_reduce_is_nccls_ll_ring_latency():
    """8 H100s, 1 KB all-reduce, the realistic preset (neutral engine): NCCL's low-latency ring,
    its terms as fitted on NCCL 2.29.2's H100 table (presets/h100-sxm.json): base 5.14 us +
    2(n - 1) = 14 hops * 0.81 us = 16.48 us, plus 2(n - 1)/n * 1000 = 1750 bytes at 450 GB/s *
    network efficiency 0.66 * LL efficiency 0.512. NCCL's own estimate picks LL here (6.6 + 14 * 0.6
    = 15 us against Simple's 8.4 + 14 * 3.4 = 56 us, the bytes negligible); NVLS (33.9 us) is
    slower. The table measures 15.5 and 15.6 us for 512 bf16 elements (1 KB) over 8."""
    t = collective_time(Collective("all_reduce", "tp", 8, 1000), hardware.get("H100_SXM"))
    assert t == Fraction(16480, 10**9) + Fraction(1750, 450 * 10**9) / (Fraction(66, 100) * Fraction(512, 1000))


def test_h100_small_all_to_all_is_nccls_low_latency_sends():
    """8 H100s, an all-to-all of a 1 KB buffer (128 bytes per peer, under NCCL's 16 KiB LL
    threshold), the realistic preset: as fitted on NCCL 2.29.2's H100 all-to-all rows, 6.4 us +
    7 peers * 0.21 us = 7.87 us, plus one peer's 128 bytes at 450 GB/s * 0.66 * 0.0227. The table
    measures 8.1 us for 512 bf16 elements over 8 GPUs. 1 MB per peer takes the Simple protocol:
    12.4 us + 1.47 us + 7/8 * 8 MiB at 450 GB/s * 0.66 * 0.93 = 40.4 us (the table: 41.4 us for 4 Mi elements)."""
    h100 = hardware.get("H100_SXM")
    t = collective_time(Collective("all_to_all", "ep", 8, 1024), h100)
    assert t == Fraction(787, 10**8) + Fraction(128, 450 * 10**9) / (Fraction(66, 100) * Fraction(227, 10**4))
    big = collective_time(Collective("all_to_all", "ep", 8, 8 * 2**20), h100)
    assert big == Fraction(1387, 10**8) + Fraction(7 * 2**20, 450 * 10**9) / (Fraction(66, 100) * Fraction(93, 100))


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


def test_bound_is_the_rooflines_verdict_while_latency_stays_realistic():
    """The same decode MLP on ROUND (see above). Realistic terms: compute 2 * 67,108,864 / (5 *
    10^13) (the GEMMs padded to 128-row tiles) + 8192 / 10^13 = 2.685 us > memory (2 * 526,848 +
    4096) bytes / (5 * 10^11) = 2.116 us: by those terms "compute". The roofline (ideal chip): the
    GEMMs' own 2 * 524,288 FLOPs at 10^14 + 8192 at 10^13 = 11.3 ns, memory 1,057,792 bytes at
    10^12 = 1.058 us: memory-bound, which is what bound reports."""
    m = sc.MLPLayer(hidden_size=256, intermediate_size=1024).compute_metrics(
        batch_size=1, seq_len=7, phase="decode", dtype="bf16", hardware=ROUND)
    assert m.compute_time == Fraction(2 * 67108864, 5 * 10**13) + Fraction(8192, 10**13)
    assert m.memory_time == Fraction(1057792, 5 * 10**11)
    assert m.compute_time > m.memory_time
    assert m.roofline == (Fraction(2 * 524288, 10**14) + Fraction(8192, 10**13), Fraction(1057792, 10**12), 0)
    assert m.bound == "memory"
    ideal = sc.MLPLayer(hidden_size=256, intermediate_size=1024).compute_metrics(
        batch_size=1, seq_len=7, phase="decode", dtype="bf16", hardware=ROUND.ideal())
    assert ideal.roofline is None and ideal.bound == "memory"
    assert (ideal.compute_time, ideal.memory_time, ideal.comm_time) == m.roofline
    # sums and repeats keep the roofline terms; binding the realistic symbolic chip gives the same
    assert (m + m * 2).roofline == tuple(3 * v for v in m.roofline) and (m * 3).bound == "memory"
    symbolic = sc.MLPLayer(hidden_size=256, intermediate_size=1024).compute_metrics(
        batch_size=1, seq_len=7, phase="decode", dtype="bf16",
        hardware=Hardware.symbolic(realistic=True, matmul_tile=(128, 128)))
    assert symbolic.evaluate(dtype="bf16", hardware=ROUND).roofline == m.roofline


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
    # the ideal chip's roofline: LayerNorm reads b s h inputs and 2 h weights and writes b s h outputs,
    # 2 bytes each, at 3.35 TB/s; 7 b s h vector FLOPs at 66.9 TFLOP/s take less time for every shape
    b, s, h = S.batch_size, S.seq_len, S.hidden_size
    bound = m.subs(hardware=hardware.get("H100_SXM").ideal(), dtype="bf16")
    assert bound.latency == sp.Rational(2, 3350 * 10**9) * (2 * b * s * h + 2 * h)


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


def test_ring_across_domains_shares_the_nics_of_the_groups_chips_in_a_domain():
    """All-reduce of 10^9 bytes over 32 chips on ROUND (10 GB/s scale-out per chip, 100 GB/s
    scale-up, eta_net 1/2, 8 chips per domain). Contiguous (span 32): 4 domains of 8 chips, each
    domain's traffic leaves over its 8 NICs, min(100, 8 * 10) = 80 GB/s; strided 4 apart (span
    128): ceil(128/8) = 16 domains of 2 chips, 20 GB/s; 8 apart (span 256): 32 domains of one
    chip, 10 GB/s; each times 1/2. Bytes sent 2 * 31/32 * 10^9; 62 ring steps, 2(nodes - 1) of
    them between domains, all at 1 us on ROUND (alpha_net unset: alpha); 5 us per call."""
    sent = Fraction(62, 32) * 10**9
    for span, nodes, link in ((32, 4, 80 * 10**9), (128, 16, 20 * 10**9), (256, 32, 10**10)):
        c = Collective("all_reduce", "dp", 32, 10**9, span=span)
        assert collective_algorithms(c, ROUND)["ring"] == 5 * US + 62 * US + sent / (link * Fraction(1, 2))
        # with alpha_net = 4 us (COLL), the 2(nodes - 1) network hops cost 4 us each
        hops = (62 - 2 * (nodes - 1)) * US + 2 * (nodes - 1) * 4 * US
        assert collective_algorithms(c, COLL)["ring"] == 5 * US + hops + sent / (link * Fraction(1, 2))


def test_collective_algorithms_symbolic_by_hand():
    """On the realistic symbolic chip with D_up = 8, an all-reduce of M bytes over 8 chips:
    ring alpha_0 + t_coll + 14 alpha + (7/4) M / (B_up eta_net); NVLink SHARP alpha_nvls + t_coll
    + (7/4) M / (2 kappa_nvls eta_nvls B_up eta_net), kappa_nvls NCCL's factor for the architecture.
    Over 64 chips 8 apart (one per domain, D_up = 8):
    ring alpha_0 + t_coll + 126 alpha_net + (63/32) M / min(B_up eta_net, 1 * B_out eta_out); tree
    alpha_0 + t_coll + 2 * 6 alpha_tree + 2 M / (min(B_up eta_net, B_out eta_out) eta_tree)."""
    M = sp.Symbol("M", positive=True)
    chip = Hardware.symbolic(realistic=True)
    at = {S.scale_up_domain: 8}
    got = {k: v.xreplace(at) for k, v in collective_algorithms(Collective("all_reduce", "tp", 8, M), chip).items()}
    base = S.collective_base_latency + S.collective_overhead
    up, out = S.scale_up_bandwidth * S.network_efficiency, S.scale_out_bandwidth * S.network_efficiency
    want = {"ring": base + 14 * S.collective_latency + sp.Rational(7, 4) * M / up,
            "nvls": S.nvls_latency + S.collective_overhead
            + sp.Rational(7, 4) * M / (2 * S.nvls_arch_efficiency * S.nvls_efficiency * up)}
    assert sp.expand(got["ring"] - want["ring"]) == 0
    assert sp.expand(got["nvls"] - want["nvls"]) == 0
    assert got["tree"] == sp.oo  # no tree inside one domain
    wide = {k: v.xreplace(at) for k, v in
            collective_algorithms(Collective("all_reduce", "dp", 64, M, span=512), chip).items()}
    assert wide["nvls"] == sp.oo  # no NVLink SHARP across domains
    # one chip per domain: its NVLink at eta_net or its NIC at eta_out, the slower
    out = sp.Min(S.scale_up_bandwidth * S.network_efficiency, S.scale_out_bandwidth * S.scale_out_efficiency)
    assert sp.expand(wide["ring"] - (base + 126 * S.scale_out_latency + sp.Rational(63, 32) * M / out)) == 0
    assert sp.expand(wide["tree"] - (base + 12 * S.tree_latency + 2 * M / (out * S.tree_efficiency))) == 0


def test_an_op_with_an_unhashable_field_is_timed_uncached():
    """op_time memoizes per (op, chip, peak, dtype); a user's op whose field is a list cannot be a
    key and is timed each call, the same as its plain twin (the first test's GEMM)."""
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class TaggedMatmul(Matmul):
        tags: list = dataclasses.field(default_factory=list)

    tagged = TaggedMatmul("w", m=1, n=256, k=1024, dtype_bytes=2, tags=["lora"])
    plain = op_time(Matmul("w", m=1, n=256, k=1024, dtype_bytes=2), ROUND, PEAK, sc.DataType.BF16)
    assert op_time(tagged, ROUND, PEAK, sc.DataType.BF16) == plain


def test_a_hidden_collective_runs_behind_the_layers_ops_and_the_others_stay_exposed():
    """A collective marked ``hidden`` (an EP all-to-all under Megatron-Core's
    ``overlap_moe_expert_parallel_comm``: it runs while the other micro-batch computes) costs only
    what exceeds the layer's op time: latency = max(ops, hidden) + exposed; ``overlap=True``
    still hides everything, max(ops, hidden + exposed)."""
    from symcost.hardware.timing import layer_times

    chip = hardware.get("H100_SXM")
    peak = chip.peak("bf16")
    op = Vector("scale", elements=2**26, read_bytes=2**27, write_bytes=2**27)
    t_op = op_time(op, chip, peak).time
    small = Collective("all_to_all", "ep", 8, 2**10, hidden=True)    # far shorter than the op
    large = Collective("all_to_all", "ep", 8, 2**28, hidden=True)    # far longer
    exposed = Collective("all_reduce", "tp", 2, 2**20)
    t_small, t_large, t_exposed = (collective_time(c, chip) for c in (small, large, exposed))
    assert t_small < t_op < t_large
    assert layer_times([(op, 1)], [small, exposed], chip, peak).latency == t_op + t_exposed
    assert layer_times([(op, 1)], [large, exposed], chip, peak).latency == t_large + t_exposed
    both = layer_times([(op, 1)], [large, exposed], chip, peak)
    assert both.comm_time == t_large + t_exposed
    assert layer_times([(op, 1)], [large, exposed], chip, peak, overlap=True).latency == t_large + t_exposed
    assert small.key != dataclasses.replace(small, hidden=False).key     # never merged with an exposed one


def test_a_partly_effective_overlap_exposes_the_uncovered_share():
    """``a2a_overlap_efficiency`` eta = 1/2: half of what the ops could cover stays exposed:
    latency = ops + hidden + exposed - eta * min(ops, hidden); with hidden > ops, t_op/2 + t_a + t_r."""
    from symcost.hardware.timing import layer_times

    base = hardware.get("H100_SXM")
    chip = base.with_efficiency(runtime=base.runtime.model_copy(update={"a2a_overlap_efficiency": sp.Rational(1, 2)}))
    peak = chip.peak("bf16")
    op = Vector("scale", elements=2**26, read_bytes=2**27, write_bytes=2**27)
    large = Collective("all_to_all", "ep", 8, 2**28, hidden=True)
    exposed = Collective("all_reduce", "tp", 2, 2**20)
    t_op, t_a, t_r = op_time(op, chip, peak).time, collective_time(large, chip), collective_time(exposed, chip)
    assert layer_times([(op, 1)], [large, exposed], chip, peak).latency == t_op / 2 + t_a + t_r


def test_a_hierarchical_all_to_all_crosses_the_network_once_per_node():
    """DeepEP's and HybridEP's internode dispatch (DeepSeek-V3 technical report, arXiv 2412.19437,
    section 3.2.2: tokens go over IB to the GPU with the same in-node index on each target node, then
    over NVLink to their experts' GPUs): a token crosses the scale-out network once per other node
    holding one of its experts, not once per rank. EP 4 over two nodes of 2 (ROUND, scale-up domain
    2, latencies 0), E = 8 experts (4 per node), top-2, payload M = 10^6 bytes (the flat count's
    T_in D rows), T_in rows of the chip's tokens R = 4 * 10^5 bytes. Sent per chip 3/4 M = 750,000.
    Flat (NCCL's grouped sends): (4 - 2)/3 of it, 500,000 bytes, over the scale-out link at
    10^10 * 1/2 = 5 * 10^9 B/s: 100 us, the NVLink share 250,000 / (5 * 10^10) = 5 us under it.
    Hierarchical: a token misses the other node's 4 experts with both draws with probability
    C(4, 2)/C(8, 2) = 6/28, so it crosses (2 - 1)(1 - 6/28) = 11/14 times: R * 11/14 bytes over
    the network, 62.857 us; every sent row crosses NVLink once (directly, or forwarded on arrival):
    750,000 / (5 * 10^10) = 15 us, under it."""
    chip = ROUND.model_copy(update={"scale_up_domain": 2, "collective_latency": 0, "collective_base_latency": 0})
    M, R = 10**6, 4 * 10**5
    assert collective_time(Collective("all_to_all", "ep", 4, M), chip) == Fraction(500_000, 5 * 10**9)
    hier = Collective("all_to_all", "ep", 4, M, hierarchical=(R, 8, 2))
    assert collective_time(hier, chip) == Fraction(R * 11, 14 * 5 * 10**9)
    # inside one node nothing crosses the network: the flat all-to-all's time
    inside = chip.model_copy(update={"scale_up_domain": 4})
    assert collective_time(hier, inside) == collective_time(Collective("all_to_all", "ep", 4, M), inside)


@pytest.mark.parametrize("spec", [(10**6, 8, 9), (10**6, 8, 0), (-5, 8, 2), (10**6, 0, 1), (10**6, Fraction(15, 2), 2)])
def test_a_hierarchical_all_to_all_refuses_a_layout_it_cannot_have(spec):
    """Review finding: top_k above the experts gave a bare ValueError (nan) when timed; top_k 0 and
    negative token bytes were costed as a plain all-to-all. One line naming the field instead."""
    from symcost.core.ops import Collective
    from symcost.errors import ConfigError

    with pytest.raises(ConfigError, match="Collective.hierarchical"):
        Collective("all_to_all", "ep", 16, 10**6, hierarchical=spec)


def test_a_hierarchical_all_to_all_over_uneven_nodes_is_paced_by_the_partial_nodes_nics():
    """Review finding: EP 6 on scale-up domains of 4 splits 4 + 2 (Megatron-Core places EP ranks
    contiguously), but the crossings assumed E/N experts per node. E = 6 experts (one per rank), top-2;
    a token misses x ranks' experts with probability C(6 - x, 2)/C(6, 2), so it reaches a node of x
    ranks with m(x) = 1 - C(6 - x, 2)/15: m(4) = 1 - 1/15 = 14/15, m(2) = 1 - 6/15 = 3/5.
    Per call and token bytes R, each NIC direction:
    - a rank of the node of 4 sends m(2) R = 3/5 R; receives the 2 other ranks' 2 * 14/15 R over
      its node's 4 NICs: 7/15 R;
    - a rank of the node of 2 sends m(4) R = 14/15 R; receives the 4 other ranks' 4 * 3/5 R over its
      node's 2 NICs: 6/5 R (the busiest).
    So 6/5 R crosses the busiest NIC (the even-split formula gave (2 - 1)(1 - C(3, 2)/15) R = 4/5 R).
    ROUND with scale-up domain 4, latencies 0: R = 4 * 10^5 bytes: 480,000 / (10^10 * 1/2) = 96 us;
    NVLink carries the flat 5/6 M = 833,333 bytes in 16.7 us, under it."""
    from symcost.hardware.timing import node_crossings

    chip = ROUND.model_copy(update={"scale_up_domain": 4, "collective_latency": 0, "collective_base_latency": 0})
    M, R = 10**6, 4 * 10**5
    hier = Collective("all_to_all", "ep", 6, M, hierarchical=(R, 6, 2))
    assert collective_time(hier, chip) == Fraction(R * 6, 5 * 5 * 10**9)
    assert node_crossings((R, 6, 2), 6, 4) == Fraction(6, 5) * R
    # the issue's case, EP 12 on nodes of 8, E = 12, top-1 (m(x) = x/12): the node of 4's NICs receive
    # 8 * 4/12 R over 4 NICs = 2/3 R (its sends: 8/12 R; the node of 8: sends 4/12 R, receives 4 * 8/12 R / 8)
    assert node_crossings((R, 12, 1), 12, 8) == Fraction(2, 3) * R
    # an even split keeps (N - 1)(1 - C(E - E/N, k)/C(E, k)): EP 4 on nodes of 2, E = 8, top-2: 11/14
    assert node_crossings((R, 8, 2), 4, 2) == Fraction(11, 14) * R
    # a group inside one node crosses nothing
    assert node_crossings((R, 8, 2), 4, 4) == 0
    # symbolic group size: the same numbers once bound
    n = sp.Symbol("n", integer=True, positive=True)
    crossing = node_crossings((R, 48, 1), n, 8)             # top-1: m(x) = x/n whatever E
    assert crossing.xreplace({n: 12}) == Fraction(2, 3) * R
    assert crossing.xreplace({n: 16}) == node_crossings((R, 48, 1), 16, 8) == Fraction(1, 2) * R  # (2 - 1) 8/16


def test_nccls_low_latency_protocol_never_runs_a_hierarchical_all_to_all():
    """Review finding: DeepEP's and HybridEP's internode dispatch (the flex dispatcher) runs its own
    kernels, not NCCL's LL protocol, yet NCCL's LL entry (all the flat bytes over the NIC at the
    LL latencies) competed and won small messages. ROUND with scale-up domain 2, LL latencies 0
    and efficiency 1, scale-out hop 0: EP 4 over 2 nodes, M = R = 1,400 bytes, E = 8, top-2.
    Hierarchical (ring latencies): base 5 us + alpha (3 - 1) hops * 1 us = 7 us, plus R * 11/14 =
    1,100 bytes over 5 * 10^9 B/s = 0.22 us (NVLink: 1,050 / (5 * 10^10) = 0.021 us, under it):
    7.22 us. The LL entry would have been 1,050 bytes / (5 * 10^9 B/s) = 0.21 us."""
    chip = ROUND.model_copy(update={"scale_up_domain": 2, "ll_base_latency": 0, "scale_out_latency": 0})
    hier = Collective("all_to_all", "ep", 4, 1400, hierarchical=(1400, 8, 2))
    assert "ll" not in collective_algorithms(hier, chip)
    assert collective_time(hier, chip) == 7 * US + Fraction(1100, 5 * 10**9)
    # a flat (NCCL) all-to-all across nodes keeps its LL entry
    assert "ll" in collective_algorithms(Collective("all_to_all", "ep", 4, 1400), chip)
    # inside one node neither: H100 has NCCL's all-to-all LL sends, the flex dispatcher does not use them
    h100 = hardware.get("H100_SXM")
    assert "ll" in collective_algorithms(Collective("all_to_all", "ep", 4, 1400), h100)
    assert "ll" not in collective_algorithms(hier, h100)


def test_vllm_one_shot_max_is_whole_bytes_or_none():
    """vLLM's custom all-reduce (csrc/custom_all_reduce.cuh, ``REDUCE_CASE``) runs one-shot on 2 GPUs
    at every size (no bound: ``None``), below 512 KiB = 524,288 bytes on 4 and 256 KiB = 262,144 on
    6 and 8: whole bytes, never a float."""
    from symcost.hardware.timing import vllm_one_shot_max

    assert vllm_one_shot_max(2) is None
    got = [vllm_one_shot_max(n) for n in (4, 6, 8)]
    assert got == [524_288, 262_144, 262_144] and all(type(v) is int for v in got)

"""Hardware presets. Every number cites its source; derived numbers say how they were derived.

Conventions: dense peaks (no 2:4 sparsity: NVIDIA datasheets print H100/H200/B200 tensor peaks
"with sparsity", so we halve them); bytes and bytes/s with decimal prefixes as printed (GB = 10^9
bytes; NVIDIA's "80GB" is taken at its printed value although the parts carry 80 GiB, so capacity
is slightly conservative); link bandwidth per chip **per direction** (NVLink and Infinity Fabric
figures are bidirectional totals and are halved); scale-out per chip is one NIC's line rate.

Collective latencies and algorithm factors are not datasheet figures: they are NCCL's own tuning
model (NVIDIA/nccl v2.30.7, commit 5067397, src/graph/tuning.cc, ``ncclTunerConstantsDefaults``
and ``nvlsEfficiency``), cited next to each value below; they are fields, so measured values can
replace them.
"""

from __future__ import annotations

from fractions import Fraction

from ..core.dtypes import DataType as D
from .chip import GIGA, TERA, Hardware
from .runtime import runtime

# [NCCL] NVIDIA/nccl v2.30.7 (commit 5067397), src/graph/tuning.cc. Latencies in us there.
# Latency figures are the LL protocol's (NCCL's choice for the small messages where latency
# matters), bandwidth figures the Simple protocol's (its choice for large ones); docs/conventions.md §17.
ALPHA = Fraction(3, 5 * 10**6)  # [NCCL] hwLatencies NVLINK, Ring and Tree, LL: 0.6 us per hop
NET_ALPHA = Fraction(27, 10**7)  # [NCCL] hwLatencies NET, Ring, LL: 2.7 us per hop between nodes
TREE_ALPHA = Fraction(5, 10**6)  # [NCCL] hwLatencies NET, Tree, LL: 5.0 us per tree hop between nodes
TREE_EFFICIENCY = Fraction(23, 25)  # [NCCL] tree all-reduce bus bandwidth: busBw * .92
NVLS_LATENCY = Fraction(25, 10**6)  # [NCCL] hwLatencies NVLINK, NVLS, Simple: 25 us (its baseLatency is 0)
# NVLS bandwidth factor: nvlsEfficiency (Hopper 0.85, Blackwell 0.74) times (nChannels - 1) / nChannels
# with NCCL's NVLS channels on one node (src/transport/nvls.cc: NVLS_NCHANNELS_SM90 16,
# NVLS_NCHANNELS_SM100_NVL 24): 17/20 * 15/16 = 51/64 and 37/50 * 23/24 = 851/1200.
# NVLink SHARP is in the third-generation NVSwitch of HGX/DGX H100 and H200 ([HOPPER]: "NVLink
# SHARP", in-network reductions) and in B200's NVSwitch; A100's NVSwitch has none, nor MI300X's
# Infinity Fabric or a TPU's ICI. MI300X collectives run RCCL: NCCL's figures are an assumption there.
NVLS_HOPPER = Fraction(51, 64)  # [NCCL]
NVLS_BLACKWELL = Fraction(851, 1200)  # [NCCL]

# -- the efficiency model (docs/conventions.md §17) -----------------------------------------------
# Fitted on symcost/data/inference_calibration.csv by symcost.calibration_inference.fit()
# (benchmarks/calibrate.py refits and reprints; tests/test_calibration_inference.py checks that the
# fit reproduces these exact values). The data's 16-bit GEMMs all run on A100s and its 8-bit GEMMs
# on H100s: "matmul_efficiency" below is the A100's, "matmul_efficiency_8bit" every FP8 chip's
# (an assumption beyond the H100).
FIT = {
    "matmul_efficiency": Fraction(37, 50),
    "matmul_efficiency_8bit": Fraction(13, 25),
    "kernel_time": Fraction(131, 10**7),
}
# NCCL's own per-call base latency of a ring all-reduce over NVLink (NVIDIA/nccl,
# src/graph/tuning.cc, ring base latencies {LL, LL128, Simple} = {6.6, 14.0, 8.4} us; we take LL's,
# the protocol NCCL picks for the small messages where latency matters); what an engine adds
# around each call is its runtime's collective_overhead (fitted for the calibration engines).
COLLECTIVE_BASE_LATENCY = Fraction(33, 5 * 10**6)
# [H200-RUN] Measured on an H200 SXM lent to this workplace (2026-10-28, PyTorch; the raw figures with
# their method are in symcost/data/h200_microbenchmarks.csv): a
# device-to-device copy moved 4.3 TB/s counting bytes read and written (8.6 GB in 2.0 ms) against
# the datasheet's 4.8 TB/s: 43/48, taken as 9/10; an 8192^3 bf16 matmul on random data ran at
# 788 TFLOP/s against the dense 989.4: 0.796, taken as 4/5. The copy fraction is the achievable
# HBM fraction of every GPU preset (an assumption beyond the H200); the matmul fraction that of the
# Hopper (H100 shares the H200's die and clocks) and, as an assumption, Blackwell and MI300X parts.
MEMORY_EFFICIENCY = Fraction(9, 10)  # [H200-RUN]
HOPPER_MATMUL_EFFICIENCY = Fraction(4, 5)  # [H200-RUN]
# Attention kernels, cited: [FA2] Dao 2023, "FlashAttention-2" (abstract: 50-73 % of the A100's
# peak; we take 3/5); [FA3] Shah et al. 2024, "FlashAttention-3" (abstract: 75 % of the H100's
# FP16 peak, 740 TFLOP/s). Blackwell and MI300X: no published flash-attention utilization we cite;
# assumed at the FlashAttention-2 fraction 3/5 (an assumption, not data).
ATTENTION_A100 = Fraction(3, 5)  # [FA2]
ATTENTION_HOPPER = Fraction(3, 4)  # [FA3]
ATTENTION_OTHER = Fraction(3, 5)  # assumption: see above
# GEMM tiles: 64 x 128 output tiles (M x N), an assumption: one of the threadblock tiles CUTLASS
# instantiates for tensor-op GEMMs (GemmShape<64, 128, ...>), chosen small in M so that decode GEMMs
# are not padded 128-fold; 128 x 128 padded a batch-1 decode GEMM into compute-bound, which no
# measured run shows. Quantization runs over the SMs/CUs of each part. A decode GEMM's M (the
# batch) is padded to 64 rows.


def _realistic(compute_units: int, attention: Fraction, matmul: Fraction = HOPPER_MATMUL_EFFICIENCY,
               nvls: Fraction | None = None) -> dict:
    """The realistic chip's fields; ``nvls``: the NVLink SHARP bandwidth factor of a scale-up
    domain with NVLink SHARP (NVSwitch 3 and later: H100, H200, B200), ``None`` without."""
    return dict(FIT, matmul_efficiency=matmul, memory_efficiency=MEMORY_EFFICIENCY, compute_units=compute_units,
                collective_base_latency=COLLECTIVE_BASE_LATENCY, tree_latency=TREE_ALPHA,
                tree_efficiency=TREE_EFFICIENCY, nvls_latency=None if nvls is None else NVLS_LATENCY,
                nvls_efficiency=1 if nvls is None else nvls,
                attention_efficiency=attention, runtime=runtime("neutral"))


# Sources
# [A100-DS]  NVIDIA A100 Tensor Core GPU datasheet (1758950-r4, June 2021), SXM 80GB column.
# [A100-WP]  NVIDIA A100 Tensor Core GPU Architecture whitepaper: 108 SMs on the A100.
# [HGX-A100] NVIDIA Developer Blog, "Introducing NVIDIA HGX A100": 12 NVLink ports, 600 GB/s
#            bidirectional per GPU; 8 GPUs on NVSwitch.
# [DGX-A100] NVIDIA DGX A100 page: 8x single-port ConnectX-6 200 Gb/s HDR InfiniBand.
# [H100-DS]  NVIDIA H100 Tensor Core GPU datasheet, SXM column (tensor peaks "with sparsity").
# [HOPPER]   NVIDIA H100 Tensor Core GPU Architecture whitepaper: dense 989.4 (bf16/fp16),
#            1978.9 (fp8, int8), 494.7 (tf32), 66.9 (fp32) TFLOPS for SXM5.
# [DGX-POD]  NVIDIA DGX BasePOD reference architecture, "Core Components": DGX H100/H200 with
#            eight single-port ConnectX-7 400 Gb/s; 8 GPUs, NVSwitch; DGX B200 likewise.
# [H200-DS]  NVIDIA H200 datasheet / product page, SXM column: 141 GB HBM3e, 4.8 TB/s, NVLink
#            900 GB/s; compute as H100 (footnote "With sparsity").
# [BW-DS]    NVIDIA Blackwell datasheet, "Individual Blackwell GPU Specifications", HGX B200:
#            per GPU 4.5 PFLOPS fp16/bf16, 9 PFLOPS fp8 and int8, 2.2 PFLOPS tf32 (all sparse;
#            "Dense is 1/2 sparse"), 75 TFLOPS fp32, 180 GB HBM3e, 7.7 TB/s, NVLink 1.8 TB/s.
# [MI300-ROCm] AMD ROCm docs, "AMD Instinct MI300 series microarchitecture", MI300X peak table
#            (dense): matrix fp16/bf16 1307.4, fp8 2614.9, int8 2614.9, tf32 653.7, fp32 163.4
#            TFLOPS; 5.3 TB/s; seven Infinity Fabric links to a fully connected 8-GPU node.
# [MI300-PP] AMD Instinct MI300X product page: 192 GB HBM3, Infinity Fabric link 128 GB/s
#            (taken as bidirectional: 64 GB/s per direction per link, 7 peers -> 448 GB/s).
# [AZURE-MI300] Microsoft Azure ND MI300X v5 docs: 8x 400 Gb/s NDR InfiniBand (AMD states none).
# [V5E]      Google Cloud, "TPU v5e": 197 TFLOPs bf16, 393 TOPs int8, 16 GB HBM, 819 GBps,
#            ICI 400 GBps bidirectional per chip, 256-chip pod, 2x100 Gbps NIC per 8-chip host.
# [V5P]      Google Cloud, "TPU v5p": 459 TFLOPs bf16 and fp8, 95 GiB HBM, 2765 GBps, ICI
#            1200 GBps bidirectional per chip, 8960-chip pod, DCN 50 Gbps per chip.
# [V5P-BLOG] Google Cloud blog, v5p launch (Dec 2023): 918 TOPS int8.
# [V6E]      Google Cloud, "TPU v6e": 918 TFLOPs bf16, 1836 TOPs int8, 32 GB HBM, 1640 GBps, ICI
#            800 GBps bidirectional per chip, 256-chip pod, 4x200 Gbps NIC per 8-chip host.
# NB: Google publishes no vector-unit rate for TPUs; we assume 1/16 of the bf16 matrix peak
#     (the order of a VPU of 8x128 lanes per core at the chip's clock). An assumption, not data.

A100_SXM_80GB = Hardware(
    name="A100_SXM_80GB",
    peak_flops={
        D.BF16: 312 * TERA, D.FP16: 312 * TERA,  # [A100-DS] dense column
        D.TF32: 156 * TERA,  # [A100-DS]
        D.FP32: Fraction("19.5") * TERA,  # [A100-DS] FP32 (no fp32 tensor path on Ampere)
        D.INT8: 624 * TERA,  # [A100-DS] TOPS
    },
    vector_flops=Fraction("19.5") * TERA,  # [A100-DS] FP32 19.5 TFLOPS
    hbm_capacity=80 * GIGA,  # [A100-DS] 80GB HBM2e
    hbm_bandwidth=2039 * GIGA,  # [A100-DS] 2,039 GB/s
    scale_up_bandwidth=300 * GIGA,  # [HGX-A100] 600 GB/s bidirectional / 2
    scale_up_domain=8,  # [HGX-A100]
    scale_out_bandwidth=25 * GIGA,  # [DGX-A100] 200 Gb/s per GPU
    collective_latency=ALPHA,
    scale_out_latency=NET_ALPHA,
    **_realistic(108, ATTENTION_A100, FIT["matmul_efficiency"]),  # [A100-WP] 108 SMs
)

H100_SXM = Hardware(
    name="H100_SXM",
    peak_flops={
        D.BF16: Fraction("989.4") * TERA, D.FP16: Fraction("989.4") * TERA,  # [HOPPER]
        D.FP8_E4M3: Fraction("1978.9") * TERA, D.FP8_E5M2: Fraction("1978.9") * TERA,  # [HOPPER]
        D.INT8: Fraction("1978.9") * TERA,  # [HOPPER]
        D.TF32: Fraction("494.7") * TERA,  # [HOPPER]
        D.FP32: Fraction("66.9") * TERA,  # [HOPPER] no fp32 tensor path: the FP32 units
    },
    vector_flops=Fraction("66.9") * TERA,  # [HOPPER] FP32 (datasheet: 67 TFLOPS)
    hbm_capacity=80 * GIGA,  # [H100-DS] 80GB HBM3
    hbm_bandwidth=Fraction("3.35") * TERA,  # [H100-DS] 3.35 TB/s
    scale_up_bandwidth=450 * GIGA,  # [H100-DS] NVLink 900 GB/s bidirectional / 2
    scale_up_domain=8,  # [DGX-POD]
    scale_out_bandwidth=50 * GIGA,  # [DGX-POD] 400 Gb/s ConnectX-7 per GPU
    collective_latency=ALPHA,
    scale_out_latency=NET_ALPHA,
    **_realistic(132, ATTENTION_HOPPER, nvls=NVLS_HOPPER),  # [HOPPER] 132 SMs (SXM5)
)

H200_SXM = Hardware(
    name="H200_SXM",
    peak_flops=dict(H100_SXM.peak_flops),  # [H200-DS] same compute as H100 SXM
    vector_flops=H100_SXM.vector_flops,  # [H200-DS] FP32 67 TFLOPS
    hbm_capacity=141 * GIGA,  # [H200-DS] 141GB HBM3e
    hbm_bandwidth=Fraction("4.8") * TERA,  # [H200-DS] 4.8 TB/s
    scale_up_bandwidth=450 * GIGA,  # [H200-DS] NVLink 900 GB/s bidirectional / 2
    scale_up_domain=8,  # [DGX-POD]
    scale_out_bandwidth=50 * GIGA,  # [DGX-POD] 400 Gb/s per GPU
    collective_latency=ALPHA,
    scale_out_latency=NET_ALPHA,
    **_realistic(132, ATTENTION_HOPPER, nvls=NVLS_HOPPER),  # [H200-RUN] PyTorch reported 132 multiprocessors
)

B200 = Hardware(
    name="B200",
    peak_flops={
        D.BF16: 2250 * TERA, D.FP16: 2250 * TERA,  # [BW-DS] 4.5 PFLOPS sparse / 2
        D.FP8_E4M3: 4500 * TERA, D.FP8_E5M2: 4500 * TERA,  # [BW-DS] 9 PFLOPS sparse / 2
        D.INT8: 4500 * TERA,  # [BW-DS] 9 POPS sparse / 2
        D.TF32: 1100 * TERA,  # [BW-DS] 2.2 PFLOPS sparse / 2
        D.FP32: 75 * TERA,  # [BW-DS] FP32 75 TFLOPS
    },
    vector_flops=75 * TERA,  # [BW-DS] FP32 75 TFLOPS
    hbm_capacity=180 * GIGA,  # [BW-DS] 180GB HBM3E
    hbm_bandwidth=Fraction("7.7") * TERA,  # [BW-DS] 7.7 TB/s (DGX B200 totals give 8 TB/s)
    scale_up_bandwidth=900 * GIGA,  # [BW-DS] NVLink 5 1.8 TB/s bidirectional / 2
    scale_up_domain=8,  # [DGX-POD] HGX/DGX B200
    scale_out_bandwidth=50 * GIGA,  # [DGX-POD] 400 Gb/s ConnectX-7 per GPU
    collective_latency=ALPHA,
    scale_out_latency=NET_ALPHA,
    # assumption: 148 SMs, widely reported for B200; no datasheet lists it
    **_realistic(148, ATTENTION_OTHER, nvls=NVLS_BLACKWELL),
)

MI300X = Hardware(
    name="MI300X",
    peak_flops={
        D.BF16: Fraction("1307.4") * TERA, D.FP16: Fraction("1307.4") * TERA,  # [MI300-ROCm]
        D.FP8_E4M3: Fraction("2614.9") * TERA, D.FP8_E5M2: Fraction("2614.9") * TERA,  # [MI300-ROCm]
        D.INT8: Fraction("2614.9") * TERA,  # [MI300-ROCm]
        D.TF32: Fraction("653.7") * TERA,  # [MI300-ROCm]
        D.FP32: Fraction("163.4") * TERA,  # [MI300-ROCm] matrix FP32
    },
    vector_flops=Fraction("163.4") * TERA,  # [MI300-ROCm] vector FP32
    hbm_capacity=192 * GIGA,  # [MI300-PP] 192 GB HBM3
    hbm_bandwidth=Fraction("5.3") * TERA,  # [MI300-ROCm] 5.3 TB/s
    scale_up_bandwidth=448 * GIGA,  # [MI300-PP] 7 links x 64 GB/s per direction
    scale_up_domain=8,  # [MI300-ROCm] fully connected 8-GPU node
    scale_out_bandwidth=50 * GIGA,  # [AZURE-MI300] 400 Gb/s NDR per GPU
    collective_latency=ALPHA,
    scale_out_latency=NET_ALPHA,
    **_realistic(304, ATTENTION_OTHER),  # [MI300-ROCm] 304 compute units
)

# NB: the TPU presets keep the ideal model (efficiencies 1, no overheads, no tile quantization):
# no figure in the shipped data or a citable microbenchmark covers them; get("v5e").is_ideal is True.
TPU_V5E = Hardware(
    name="TPU_V5E",
    peak_flops={D.BF16: 197 * TERA, D.INT8: 393 * TERA},  # [V5E]
    vector_flops=Fraction(197, 16) * TERA,  # assumption: see the NB above
    hbm_capacity=16 * GIGA,  # [V5E] 16 GB
    hbm_bandwidth=819 * GIGA,  # [V5E] 819 GBps
    scale_up_bandwidth=200 * GIGA,  # [V5E] ICI 400 GBps bidirectional / 2
    scale_up_domain=256,  # [V5E] pod of 256 chips, 2D torus
    scale_out_bandwidth=Fraction(25, 8) * GIGA,  # [V5E] 2x100 Gbps per 8 chips = 25 Gb/s
    collective_latency=ALPHA,
    scale_out_latency=NET_ALPHA,
)

TPU_V5P = Hardware(
    name="TPU_V5P",
    peak_flops={
        D.BF16: 459 * TERA, D.FP8_E4M3: 459 * TERA, D.FP8_E5M2: 459 * TERA,  # [V5P]
        D.INT8: 918 * TERA,  # [V5P-BLOG]
    },
    vector_flops=Fraction(459, 16) * TERA,  # assumption: see the NB above
    hbm_capacity=95 * 2**30,  # [V5P] 95 GiB
    hbm_bandwidth=2765 * GIGA,  # [V5P] 2765 GBps
    scale_up_bandwidth=600 * GIGA,  # [V5P] ICI 1200 GBps bidirectional / 2
    scale_up_domain=8960,  # [V5P] 8960 chips per pod, 3D torus
    scale_out_bandwidth=Fraction(50, 8) * GIGA,  # [V5P] DCN 50 Gbps per chip
    collective_latency=ALPHA,
    scale_out_latency=NET_ALPHA,
)

TPU_V6E = Hardware(
    name="TPU_V6E",
    peak_flops={D.BF16: 918 * TERA, D.INT8: 1836 * TERA},  # [V6E]
    vector_flops=Fraction(918, 16) * TERA,  # assumption: see the NB above
    hbm_capacity=32 * GIGA,  # [V6E] 32 GB
    hbm_bandwidth=1640 * GIGA,  # [V6E] 1640 GBps
    scale_up_bandwidth=400 * GIGA,  # [V6E] ICI 800 GBps bidirectional / 2
    scale_up_domain=256,  # [V6E] pod of 256 chips, 2D torus
    scale_out_bandwidth=Fraction(100, 8) * GIGA,  # [V6E] 4x200 Gbps per 8 chips = 100 Gb/s
    collective_latency=ALPHA,
    scale_out_latency=NET_ALPHA,
)

PRESETS: dict[str, Hardware] = {
    hw.name: hw
    for hw in (A100_SXM_80GB, H100_SXM, H200_SXM, B200, MI300X, TPU_V5E, TPU_V5P, TPU_V6E)
}

"""The chip: rates and capacities in base units, and the efficiency model's fields.

A :class:`Hardware` is frozen and holds exact numbers: FLOP/s, bytes, bytes/s and seconds. The
symbolic chip (:meth:`Hardware.symbolic`, what ``hardware=None`` means) holds the canonical
hardware symbols instead, so times print as formulas in peak FLOP/s and bandwidths; with
``realistic=True`` the efficiency model (docs/conventions.md §17) is symbolic too.

>>> chip = Hardware.symbolic(realistic=True)
>>> chip.effective_peak("bf16")
F*eta_mm
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Optional, get_args

import sympy as sp
from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..core import symbols as sym
from ..core._expr import as_expr, exact_value
from ..core.dtypes import DataType
from ..errors import ConfigError, HardwareError
from .runtime import NCCL_TUNING, RUNTIMES, AllreduceRule, MoESortRule, Runtime, runtime, vllm_symm_windows
from .validate import Chips, Efficiency, Rate, Seconds, exact_number

__all__ = [
    "Hardware",
    "Runtime",
    "KILO",
    "MEGA",
    "GIGA",
    "TERA",
    "PETA",
]

# one name per line, so that the API reference (griffe) sees each
KILO = 10**3
"""10³, for numbers in base units."""
MEGA = 10**6
"""10⁶."""
GIGA = 10**9
"""10⁹ (a GB is 10⁹ bytes, docs/conventions.md §14)."""
TERA = 10**12
"""10¹²."""
PETA = 10**15
"""10¹⁵."""

PINGPONG_COMPUTE_CAPABILITY = "10"
"""Major compute capability of the GPUs whose context attention kernels overlap the matmuls with
the softmax's exponentials (:func:`symcost.hardware.kernels.pingpong`): SM100 and SM103 (B200,
GB200, B300). TensorRT-LLM runs their context attention in its trtllm-gen kernels
(``isSMCompatible``: SM100 and SM103 kernels,
cpp/tensorrt_llm/kernels/trtllmGenKernels/fmha/fmhaKernels.h), whose context kernels take 128 query
rows per tile and two tiles per thread block (``mTileSizeQ`` 128, ``mStepQ`` 256, 512 threads for
head dimensions 64 and 128: ``fmhaSm100Kernel_*Q128Kv128PersistentContext`` in
``sTllmGenFmhaKernelMetaInfos``, flashinfer-ai/flashinfer include/flashinfer/trtllm/fmha/cubin/
kernelMetaInfo.h): the Blackwell design that "assigns two tiles to each threadblock, and pingpongs
between them in terms of matrix-matrix multiplication and softmax" (NVIDIA CUTLASS,
examples/77_blackwell_fmha/README.md: context M-blocking 256, N-blocking 128). The tensor cores'
``tcgen05`` MMAs are issued asynchronously by one thread, so one tile's exponentials run while
the other's matmuls do. Fitted on the tables (B200, trtllm 1.3.0rc20), the overlapped form takes
the error from 10.3 to 9.7 % and the matmuls' fraction of the 16-bit peak from 0.999 (the fit's
bound: the summed form leaves it no room) to 0.636 (b200.json's ``attention_efficiency``;
docs/explanation/fidelity.md). Training's forward (cuDNN's kernels, which Transformer Engine runs)
takes the same overlap without a source of its own; its flash backward runs at a share of the peak
cited for cuDNN's kernel (``attention_backward_peak_efficiency``,
:func:`symcost.hardware.kernels.attention_backward`)."""


NCCL_NVLS_EFFICIENCY: tuple[tuple[int, sp.Rational], ...] = ((10, sp.Rational(37, 50)), (9, sp.Rational(17, 20)))
"""NCCL's own NVLink SHARP bandwidth factor by the GPU's major compute capability (the first whose
major the chip's reaches): ``nvlsEfficiency[NCCL_NUM_COMPCAPS]`` = Volta 0, Ampere 0, Hopper 0.85,
Blackwell 0.74 (NVIDIA/nccl v2.29.2-1, the per-op tables' NCCL, src/graph/tuning.cc; the same at
v2.30.7), indexed by ``compCapIndex``: Blackwell for ``minCompCap >= 100``, Hopper for ``>= 90``.
NCCL's tuner multiplies the NVLS algorithm's intra-node bus bandwidth by it (``intraBw = bwIntra *
nvlsEfficiency[compCapIndex] * (nChannels - 1) / nChannels``), so :attr:`Hardware.nvls_efficiency`
(fitted) is the share of that figure NCCL's own table reaches, and a chip's NVLS bandwidth carries
from Hopper to Blackwell through its compute capability: fitted on NCCL 2.29.2's tables, H100's
share is 0.771 and B200's 0.778 (0.655 and 0.576 of the link before the factor;
docs/explanation/fidelity.md)."""


_MODEL_FIELDS = ("matmul_efficiency", "matmul_efficiency_8bit", "matmul_efficiency_4bit", "memory_efficiency",
                 "attention_memory_efficiency", "attention_efficiency", "network_efficiency", "scale_out_efficiency",
                 "kernel_time", "launch_time", "collective_base_latency", "compute_units", "tree_latency",
                 "tree_efficiency", "nvls_latency", "nvls_efficiency", "nvls_arch_efficiency", "gemm_time",
                 "gemm_time_8bit", "gemm_time_4bit",
                 "quantize_bytes_8bit", "quantize_bytes_4bit", "gemm_memory_efficiency", "grouped_gemm_efficiency",
                 "grouped_gemm_efficiency_8bit",
                 "grouped_gemm_time", "grouped_gemm_memory_efficiency", "grouped_gemm_output_efficiency",
                 "attention_time", "attention_io_efficiency",
                 "attention_backward_efficiency", "attention_backward_peak_efficiency", "attention_backward_time",
                 "gemm_backward_efficiency_8bit",
                 "attention_decode_time", "grouped_decode_time_8bit",
                 "attention_exp_rate", "mha_decode_rate", "decode_ramp_time", "decode_ramp_bytes",
                 "ll_base_latency", "ll_latency", "ll_efficiency", "custom_allreduce_latency",
                 "custom_allreduce_efficiency", "custom_allreduce_peer_latency", "custom_allreduce_two_shot_latency",
                 "custom_allreduce_block_rate", "symm_allreduce_latency", "symm_allreduce_efficiency",
                 "all_to_all_latency", "all_to_all_peer_latency",
                 "all_to_all_ll_latency", "all_to_all_ll_efficiency", "all_to_all_efficiency")
"""The efficiency model's fields (docs/conventions.md §17)."""

_ALLREDUCE_RULES: tuple[str, ...] = get_args(AllreduceRule)  # Runtime.allreduce's values


def _compute_capability(value: Any) -> Optional[str]:
    """``value`` if ``None`` or a ``major.minor`` string (the form vLLM's size tables are keyed by,
    ``"9.0"``), else one line naming the field and the form."""
    if value is None or isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value):
        return value
    raise HardwareError(f"compute_capability must be 'major.minor' (as '9.0'), got {value!r}")


def _check_symm_windows(capability: Optional[str], windows: Any) -> None:
    """Refuse symmetric-memory windows (:attr:`Hardware.structure`'s ``symm_allreduce``) other than
    none or ``capability``'s, in one line."""
    own = vllm_symm_windows(capability)
    if windows is not None and tuple(map(tuple, windows)) not in ((), own):
        raise HardwareError(f"symm_allreduce must be () or compute capability {capability}'s windows {own}, "
                            f"got {windows!r}")


def _symbolic_rates(name: str) -> dict[str, Any]:
    """The datasheet fields of :meth:`Hardware.symbolic`'s chip, each its canonical symbol."""
    return dict(
        name=name,
        peak_flops={dt: sym.peak_flops for dt in DataType},
        vector_flops=sym.vector_flops,
        hbm_capacity=sym.hbm_capacity,
        hbm_bandwidth=sym.hbm_bandwidth,
        scale_up_bandwidth=sym.scale_up_bandwidth,
        scale_up_domain=sym.scale_up_domain,
        scale_up_peer_bandwidth=sym.scale_up_peer_bandwidth,
        scale_out_bandwidth=sym.scale_out_bandwidth,
        collective_latency=sym.collective_latency,
        scale_out_latency=sym.scale_out_latency,
    )


class Hardware(BaseModel):
    """One chip and its links, in base units (FLOP/s, bytes, bytes/s, seconds).

    ``peak_flops`` maps each :class:`DataType` the matrix units run to its dense peak;
    ``vector_flops`` is the vector units' FLOP/s. Links: ``scale_up_bandwidth`` per chip and
    direction inside a ``scale_up_domain`` of chips (NVLink, Infinity Fabric, ICI),
    ``scale_up_peer_bandwidth`` between one pair of them where a direct mesh or torus joins a pair
    by one of its links (``None``: all of it, as a switch does), ``scale_out_bandwidth`` per chip
    beyond it. ``collective_latency`` is the α of one
    collective step (hop) inside the scale-up domain, ``scale_out_latency`` the α_net of one hop
    over the scale-out network (``None``: α).

    The efficiency model (docs/conventions.md §17; every field defaults to the ideal chip):
    ``matmul_efficiency`` (16-bit and wider GEMMs) and ``matmul_efficiency_8bit`` (FP8/INT8
    GEMMs; ``None``: the same) derate the matrix peak; ``memory_efficiency`` is the achievable
    fraction of HBM bandwidth in streaming kernels, ``attention_memory_efficiency`` the one of
    decode attention over the KV cache (``None``: the same); ``attention_efficiency`` the
    fraction of the 16-bit peak that flash-attention kernels reach; ``network_efficiency`` the
    collectives' bus bandwidth over link bandwidth, ``scale_out_efficiency`` the same over the
    scale-out link (``None``: ``network_efficiency``). Overheads in seconds: ``kernel_time`` per
    kernel on the GPU, ``launch_time`` per kernel on the host (paces the GPU only without CUDA
    graphs), ``collective_base_latency`` per collective call. ``compute_units`` (SMs or CUs) and
    ``matmul_tile`` quantize GEMMs into tiles and waves (``None``: no quantization).
    Collective algorithms beyond the ring (docs/conventions.md §17): ``tree_latency`` is the
    α_tree of one double-binary-tree hop over the scale-out network (``None``: no tree algorithm)
    and ``tree_efficiency`` the tree's bus bandwidth over the ring's; ``nvls_latency`` is the
    time of one NVLink SHARP call (``None``: the scale-up domain has no NVLink SHARP) and
    ``nvls_efficiency`` its bandwidth factor, the share of NCCL's own figure for the GPU's
    architecture, ``nvls_arch_efficiency`` (``None``: :data:`NCCL_NVLS_EFFICIENCY` by
    ``compute_capability``, 9.x and 10.x; any other chip with ``nvls_latency`` must state it;
    :attr:`nccl_nvls_efficiency`). NB: the fitted ``nvls_efficiency`` is a share of the factor it was
    fitted with, so a chip file that overrides ``nvls_arch_efficiency`` must refit ``nvls_efficiency``
    too (the product, the NVLS bus bandwidth over the link's, is what the tables measure).
    ``runtime`` is the engine profile. :meth:`ideal` returns the pure roofline.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    peak_flops: dict[DataType, Any]
    vector_flops: Rate
    hbm_capacity: Rate
    hbm_bandwidth: Rate
    scale_up_bandwidth: Rate
    scale_up_domain: Chips
    scale_out_bandwidth: Rate
    scale_up_peer_bandwidth: Optional[Rate] = None
    collective_latency: Seconds
    scale_out_latency: Optional[Seconds] = None
    matmul_efficiency: Efficiency = sp.Integer(1)
    matmul_efficiency_8bit: Optional[Efficiency] = None
    memory_efficiency: Efficiency = sp.Integer(1)
    attention_memory_efficiency: Optional[Efficiency] = None
    attention_efficiency: Efficiency = sp.Integer(1)
    network_efficiency: Efficiency = sp.Integer(1)
    scale_out_efficiency: Optional[Efficiency] = None
    kernel_time: Seconds = sp.Integer(0)
    launch_time: Seconds = sp.Integer(0)
    collective_base_latency: Seconds = sp.Integer(0)
    compute_units: Optional[Chips] = None
    tree_latency: Optional[Seconds] = None
    tree_efficiency: Efficiency = sp.Integer(1)
    nvls_latency: Optional[Seconds] = None
    nvls_efficiency: Efficiency = sp.Integer(1)
    nvls_arch_efficiency: Optional[Efficiency] = None
    # kernel classes (symcost/hardware/kernels.py, docs/conventions.md §17)
    matmul_efficiency_4bit: Optional[Efficiency] = None
    gemm_time: Optional[Seconds] = None
    gemm_time_8bit: Optional[Seconds] = None
    gemm_time_4bit: Optional[Seconds] = None
    quantize_bytes_8bit: Seconds = sp.Integer(0)
    quantize_bytes_4bit: Optional[Seconds] = None
    gemm_memory_efficiency: Optional[Efficiency] = None
    grouped_gemm_efficiency: Optional[Rate] = None
    """The grouped GEMMs' FLOP/s over the dense GEMMs' in the same format: above 1 where they outrun
    them (TensorRT-LLM's MoE GEMMs on Blackwell), its product with each matmul efficiency at most 1."""
    grouped_gemm_efficiency_8bit: Optional[Rate] = None
    """The 8-bit (and narrower) grouped GEMMs' FLOP/s over the dense 8-bit GEMMs' (FP8 MoE experts,
    fitted on the MoE table's FP8 rows; ``None``: ``grouped_gemm_efficiency``), its product with the
    8-bit and 4-bit matmul efficiencies at most 1."""
    grouped_gemm_time: Optional[Seconds] = None
    grouped_gemm_memory_efficiency: Optional[Efficiency] = None
    grouped_gemm_output_efficiency: Optional[Efficiency] = None
    attention_time: Optional[Seconds] = None
    attention_io_efficiency: Optional[Efficiency] = None
    attention_backward_efficiency: Efficiency = sp.Integer(1)
    """The attention backward kernels' FLOP/s as a fraction of the forward kernels' (the
    ``attn.backward`` class runs at ``F_16 * attention_efficiency * attention_backward_efficiency``)
    below compute capability 10.x, and for an eager backward on 10.x (a 10.x flash backward takes
    ``attention_backward_peak_efficiency``, refused where unset)."""
    attention_backward_peak_efficiency: Optional[Efficiency] = None
    """On a chip of compute capability 10.x (:attr:`attention_pingpong`): the flash backward kernel's
    FLOP/s as a fraction of the 16-bit peak, the whole kernel's measured rate (its exponentials,
    softmax and recomputed ``Q K^T`` included), so ``attn.backward`` runs at ``F_16 *
    attention_backward_peak_efficiency`` with no term of its own for the exponentials. There the
    forward's ``attention_efficiency`` is fitted on TensorRT-LLM's inference kernels under the
    overlapped form, which says nothing of the backward kernel Transformer Engine runs (cuDNN's);
    the presets cite cuDNN's measured backward (shared.json ``ATTENTION_BACKWARD_SM100``, B300's
    ``ATTENTION_BACKWARD_SM103``). Required for a 10.x chip's flash backward (``None``: refused, unless
    the chip is ideal); set below 10.x: refused by the validator. Fitted with
    :attr:`attention_backward_time` on cuDNN's published rows of one release
    (:mod:`symcost.hardware.cudnn`)."""
    attention_backward_time: Optional[Seconds] = None
    """On a chip of compute capability 10.x: the seconds of one flash backward call per (sequence,
    query head), ``t_abwd`` in ``t = t_abwd b h + F_b / (F_16 eta_abpk)``, fitted with
    :attr:`attention_backward_peak_efficiency` on cuDNN's published backward rows of 2k to 32k
    tokens (:func:`symcost.hardware.cudnn.fit`): the length ramp of the kernel's rate (885 TFLOP/s
    at 2k, 1332 at 8k on GB200 with cuDNN 9.22), paid per (batch, head) as the preprocess,
    main-kernel tail and postprocess of a flash backward are (DeepSeek-V3's 128 heads take twice
    Kimi K2.6's 64 at every length). ``None``: no such time; set below 10.x: refused by the validator."""
    gemm_backward_efficiency_8bit: Efficiency = sp.Integer(1)
    """An 8-bit (or narrower) GEMM's backward products (dgrad, wgrad) run at this fraction of the
    forward's FLOP/s: Transformer Engine accumulates them split (promoted to fp32 every few
    k-steps; transformer_engine/common/recipe/__init__.py ``fp8_gemm_dgrad`` /
    ``fp8_gemm_wgrad`` ``use_split_accumulator=True``, ``fp8_gemm_fprop`` False), where Hopper's
    fast-accumulation mode runs the forward faster. 1: no such difference (16-bit GEMMs, Blackwell)."""
    attention_decode_time: Optional[Seconds] = None
    grouped_decode_time_8bit: Optional[Seconds] = None
    """Fixed seconds of one decode attention kernel that groups several query heads per KV head
    over an 8-bit KV cache (TensorRT-LLM runs these in its XQA kernels; ``None``: the other decode
    kernels' ``attention_decode_time``)."""
    attention_exp_rate: Optional[Rate] = None
    """Exponentials per second of the attention kernels' softmax: one per scored (query, key)
    pair on the special-function units (FlashAttention-3, Shah et al. 2024, section 3: the H100
    SXM5 has 989 TFLOPS of FP16 matmul but 3.9 TFLOPS of special functions), a time of its own
    beside the matmuls in prefill and flash-backward attention; ``None``: no such term. The fitted
    rates (5.4 to 5.8 per ns on H100, H200, B200) are effective ones, above that peak: the kernels
    hide part of the exponentials behind the matmuls."""
    mha_decode_rate: Optional[Rate] = None
    """K and V elements per second that a multi-head decode kernel (one query head per KV head)
    works through, beside streaming them: TensorRT-LLM 1.x runs multi-head decode in its masked
    multi-head attention kernel, which converts every cached element and multiplies it on the CUDA
    cores (no tensor cores, no query heads sharing a loaded key), so over an FP8 cache it is held
    below the HBM rate. An effective rate, fitted on the decode table (``symcost.hardware.fit``);
    ``None``: no such term (the grouped kernels, and the 2023 engines' profiles)."""
    decode_ramp_time: Optional[Seconds] = None
    """Seconds a decode attention kernel loses before its loads stream at the full rate
    (``attention_memory_efficiency``): ``t_ramp Min(1, bytes / M_ramp)`` beside its streaming, so
    its first ``decode_ramp_bytes`` move at a lower rate (a kernel keeps a bounded number of loads in
    flight per SM; the tables' achieved bandwidth grows with the bytes a call moves). Fitted on the
    decode table; ``None``: no ramp."""
    decode_ramp_bytes: Optional[Rate] = None
    """Bytes after which a decode attention kernel's ramp (``decode_ramp_time``) is over."""
    ll_base_latency: Optional[Seconds] = None
    ll_latency: Seconds = sp.Integer(0)
    ll_efficiency: Efficiency = sp.Integer(1)
    custom_allreduce_latency: Optional[Seconds] = None
    custom_allreduce_efficiency: Efficiency = sp.Integer(1)
    custom_allreduce_peer_latency: Seconds = sp.Integer(0)
    """Time the engine's own all-reduce adds per peer it synchronises with (both forms: a flag
    written to and read from every other chip of the group)."""
    custom_allreduce_two_shot_latency: Optional[Seconds] = None
    """Time per call of the engine's two-shot form (a reduce-scatter, a barrier, an all-gather);
    unset: twice ``custom_allreduce_latency``."""
    custom_allreduce_block_rate: Optional[Rate] = None
    """Bytes per second one thread block of the engine's one-shot kernel pushes and polls: TensorRT-LLM
    1.0's Lamport one-shot (``allreduce_fusion_kernel_oneshot_lamport``) runs one block per token, up
    to the SM count, below SM 90, and each block stores its tokens' rows into every chip's buffer and
    polls the ``n`` copies back: ``n (M / T') ceil(T' / min(S, T')) / R_cb``, ``T' = max(1, T)``
    (:func:`symcost.hardware.timing._one_shot_blocks`), read under the ``"trtllm-1.0"`` rule only
    (SM >= 90 spreads a token over a cluster of blocks); ``None``: no such term. NB: fitted on rows
    of 4096 16-bit elements (blocks of 512 threads); rows above 8192 16-bit elements below SM 90
    need more than 1024 threads a block (``TLLM_CHECK``), where the Lamport one-shot cannot run
    and the model extrapolates."""
    symm_allreduce_latency: Optional[Seconds] = None
    """Time per call of the engine's all-reduce over torch symmetric memory (vLLM's
    ``SymmMemCommunicator``: a copy into the symmetric buffer, the multimem or two-shot kernel with
    its barriers, a copy out), where the engine's size switch picks it (``None``: no such path)."""
    symm_allreduce_efficiency: Efficiency = sp.Integer(1)
    """Rate at which that all-reduce streams its ``M``-byte buffer, over the scale-up link's: its
    kernels run on a fixed few thread blocks (8 for multimem, 24 for two-shot), so the buffer, not
    the link's bytes, paces them."""
    compute_capability: Optional[str] = None
    """The GPU's CUDA compute capability (``"9.0"``, ``"10.0"``, ...), which picks an engine's
    all-reduce size table (:data:`symcost.hardware.timing.VLLM_ALLREDUCE_SIZES`); ``None``: not a
    CUDA GPU, or none given."""
    all_to_all_latency: Optional[Seconds] = None
    """NCCL's all-to-all (grouped sends to every peer, Simple protocol): time per call (unset:
    ``collective_base_latency``)."""
    all_to_all_peer_latency: Optional[Seconds] = None
    """Time an all-to-all adds per peer, either protocol (unset: ``collective_latency``)."""
    all_to_all_ll_latency: Optional[Seconds] = None
    """Time per all-to-all call whose messages take NCCL's low-latency protocol (unset: no such branch)."""
    all_to_all_ll_efficiency: Efficiency = sp.Integer(1)
    """One peer's low-latency message moves at this fraction of the link's bus bandwidth."""
    all_to_all_efficiency: Efficiency = sp.Integer(1)
    """An all-to-all's grouped Simple sends move at this fraction of the rings' bus bandwidth."""
    # GEMM tiles: 64 x 128 output tiles (M x N), an assumption: one of the threadblock tiles CUTLASS
    # instantiates for tensor-op GEMMs (GemmShape<64, 128, ...>), chosen small in M so that decode GEMMs
    # are not padded 128-fold; 128 x 128 padded a batch-1 decode GEMM into compute-bound, which no
    # measured run shows. Quantization runs over the SMs/CUs of each part (compute_units). A decode
    # GEMM's M (the batch) is padded to 64 rows.
    matmul_tile: tuple[int, int] = (64, 128)
    matmul_tile_4bit: Optional[tuple[int, int]] = None
    """Output tile (M x N) of the chip's sub-byte GEMMs (NVFP4, MXFP4), which run one tile per unit
    over the whole k, with no split-K: below one wave their time is one tile's k loop, flat in n and
    linear in k (B200's NVFP4 table). ``None``: ``matmul_tile`` with split-K, as the wider formats."""
    matmul_stream_k: bool = False
    """Whether the chip's split-K GEMMs (every format but a ``matmul_tile_4bit`` one) run a stream-K
    tile scheduler: persistent kernels that split the last wave's k loops over every unit, so a
    GEMM of ``T`` tiles takes ``T / U`` waves, not ``ceil(T / U)`` (CUTLASS 3.x's stream-K
    schedulers for SM90 and SM100). ``False``: whole waves beyond the first."""
    fp8_weight_copies: int = 1
    """FP8 copies of a weight a training step caches for per-tensor-scaled FP8 GEMMs: 2 where FP8
    GEMMs take the TN layout only (Hopper: the weight and its transpose, which the dgrad GEMM
    reads), 1 where they take any layout (Blackwell)."""
    runtime: Runtime = Runtime(name="ideal")

    @field_validator("peak_flops", mode="before")
    @classmethod
    def _peaks(cls, value: Any) -> dict[DataType, sp.Expr]:
        if not isinstance(value, Mapping) or not value:
            raise HardwareError("peak_flops must be a non-empty mapping of dtype to FLOP/s")
        peaks = {}
        for key, rate in value.items():
            dtype = DataType.parse(key)
            expr = exact_number(rate, f"peak_flops[{dtype.value}]")
            if expr.is_positive is False:
                raise HardwareError(f"peak_flops[{dtype.value}] must be positive, got {expr}")
            peaks[dtype] = expr
        return peaks

    @field_validator("matmul_tile", "matmul_tile_4bit", mode="before")
    @classmethod
    def _tile(cls, value: Any, info: ValidationInfo) -> Optional[tuple[int, int]]:
        if value is None and info.field_name == "matmul_tile_4bit":
            return None
        if (not isinstance(value, (tuple, list)) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            raise HardwareError(f"{info.field_name} must be two positive integers (M, N), got {value!r}")
        return (value[0], value[1])

    @field_validator("matmul_stream_k", mode="before")
    @classmethod
    def _stream_k(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise HardwareError(f"matmul_stream_k must be true or false (a stream-K GEMM scheduler), got {value!r}")
        return value

    @field_validator("compute_capability", mode="before")
    @classmethod
    def _capability(cls, value: Any) -> Optional[str]:
        return _compute_capability(value)

    # NB: a model validator, so that a chip built without compute_capability (a default, which
    # field validators skip) is checked too
    @model_validator(mode="after")
    def _backward_share_on_10x(self) -> "Hardware":
        value = self.compute_capability
        for name in ("attention_backward_peak_efficiency", "attention_backward_time"):
            given = getattr(self, name)
            if given is not None and (value is None or value.split(".")[0] != PINGPONG_COMPUTE_CAPABILITY):
                raise HardwareError(f"{name} is used on compute capability "
                                    f"{PINGPONG_COMPUTE_CAPABILITY}.x only, got it ({given}) on {value!r}: unset it")
        return self

    @field_validator("ll_base_latency", mode="after")
    @classmethod
    def _ll_under_a_second(cls, value: Optional[sp.Expr]) -> Optional[sp.Expr]:
        # the symbolic chip tells a chip without LL terms (alpha_LL0 = oo) by alpha_LL0 < 1 s (timing._has_ll)
        if value is not None and value.is_number and value >= 1:
            raise HardwareError(f"ll_base_latency must be under 1 s (NCCL's LL call latency), got {value} s")
        return value

    @model_validator(mode="after")
    def _nvls_factor_known(self) -> "Hardware":
        # NCCL's nvlsEfficiency (NCCL_NVLS_EFFICIENCY) covers 9.x and 10.x only: without a capability
        # there is no figure, below 9.0 NCCL has no NVLS (factor 0), above 10.x newer NCCLs carry
        # other figures (Rubin 0.87): the chip must state nvls_arch_efficiency itself
        if self.nvls_latency is None or self.nvls_arch_efficiency is not None:
            return self
        major = None if self.compute_capability is None else int(self.compute_capability.split(".")[0])
        if major is None or not 9 <= major <= NCCL_NVLS_EFFICIENCY[0][0]:
            raise HardwareError(f"nvls_latency is set but NCCL's NVLS factor is known for compute capability "
                                f"9.x and 10.x only, got {self.compute_capability!r}: set nvls_arch_efficiency")
        return self

    @field_validator("fp8_weight_copies", mode="before")
    @classmethod
    def _copies(cls, value: Any) -> int:
        if isinstance(value, bool) or value not in (1, 2):
            raise HardwareError(f"fp8_weight_copies must be 1 or 2 (FP8 copies of a weight), got {value!r}")
        return int(value)

    # NB: info.data holds the fields declared before this one: the matmul efficiencies are (keep
    # them above grouped_gemm_efficiency), so every one set is checked
    @field_validator("grouped_gemm_efficiency", mode="after")
    @classmethod
    def _grouped_rate(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        for name in ("matmul_efficiency", "matmul_efficiency_8bit", "matmul_efficiency_4bit"):
            dense = info.data.get(name)
            if dense is not None and (dense * value - 1).is_positive:
                raise HardwareError(f"grouped_gemm_efficiency {value} times {name} {dense} is {dense * value}: "
                                    "grouped GEMMs would run above the peak (the product must be at most 1)")
        return value

    @field_validator("grouped_gemm_efficiency_8bit", mode="after")
    @classmethod
    def _grouped_rate_8bit(cls, value: Any, info: ValidationInfo) -> Any:
        for name in ("matmul_efficiency_8bit", "matmul_efficiency_4bit"):
            dense = info.data.get(name)
            if value is not None and dense is not None and (dense * value - 1).is_positive:
                raise HardwareError(f"grouped_gemm_efficiency_8bit {value} times {name} {dense} is {dense * value}: "
                                    "8-bit grouped GEMMs would run above the peak (the product must be at most 1)")
        return value

    @field_validator("runtime", mode="before")
    @classmethod
    def _runtime(cls, value: Any) -> Any:
        return runtime(value) if isinstance(value, str) else value

    _hash: int = PrivateAttr(default=0)
    _symbolic: bool = PrivateAttr(default=False)
    _base: Optional["Hardware"] = PrivateAttr(default=None)  # the chip before an engine profile's fields
    _efficiency_from: Optional[str] = PrivateAttr(default=None)

    def model_post_init(self, __context: Any) -> None:
        # frozen: derived once here (hashing and this test sit on the numeric hot path)
        self._hash = hash(tuple(getattr(self, f) if f != "peak_flops" else tuple(self.peak_flops.items())
                                for f in type(self).model_fields))
        self._symbolic = any(isinstance(v, sp.Basic) and v.free_symbols for v in self._rates())
        self._symbolic = self._symbolic or any(
            isinstance(v, sp.Basic) and v.free_symbols
            for v in (*(getattr(self, f) for f in _MODEL_FIELDS), self.runtime.step_overhead,
                      self.runtime.collective_overhead, self.runtime.moe_sync_time,
                      self.runtime.a2a_overlap_efficiency, self.runtime.tp_overlap_efficiency))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        # NB: the fields only (pydantic's own also compares private attributes, such as the chip
        # an engine profile was applied to)
        if self is other:
            return True
        return (isinstance(other, Hardware) and self._hash == other._hash
                and all(getattr(self, f) == getattr(other, f) for f in type(self).model_fields))

    # -- lookups -----------------------------------------------------------------------------

    @property
    def is_symbolic(self) -> bool:
        """True when any rate is a symbol (the unbound chip)."""
        return self._symbolic

    @property
    def structure(self) -> dict[str, Any]:
        """The settings that shape this chip's time expressions without being symbols, by the name
        :meth:`symbolic` takes them under: the GEMM tiles and tile scheduler (where the chip
        quantizes tiles, ``compute_units`` set) and whether the experts' second projection writes its
        output after its main loop there (``grouped_output``), the engine's grouped-GEMM mode and its all-reduce
        rule (vLLM's size switch, with the GPU's compute capability, TensorRT-LLM 1.0's token
        switch, or the fastest form; the compute capability too where NCCL's ring protocol rule
        reads it: LL terms and a capability of :data:`~symcost.hardware.runtime.NCCL_TUNING`;
        under vLLM's, ``symm_allreduce``: its symmetric-memory
        all-reduce's byte windows ``(n, lo, hi)``, :func:`~symcost.hardware.runtime.vllm_symm_windows`,
        empty where the chip has no symmetric-memory terms; where the
        chip has an efficiency model: on the roofline they change nothing). Binding a chip
        to metrics timed on a symbolic chip of another structure is refused
        (:meth:`~symcost.core.metrics.LayerMetrics.subs`).

        >>> from symcost import hardware
        >>> hardware.get("H100_SXM").structure["matmul_stream_k"]
        True
        """
        out: dict[str, Any] = {} if self.is_ideal else {"grouped_gemm": self.runtime.grouped_gemm,
                                                         "moe_sort": self.runtime.moe_sort}
        if not self.is_ideal:
            # vLLM's size switch picks the all-reduce form by message size and compute capability
            # (timing.vllm_allreduce_window), TensorRT-LLM 1.0's by tokens (timing.trtllm_allreduce_window);
            # NCCL's and the engines' custom rule take the fastest form.
            # NB: a chip without the engine's own all-reduce terms runs NCCL's fastest form under
            # any rule; one with them but no symmetric-memory terms has no windows (symm_allreduce
            # ()), which its symbolic twin takes (Hardware.symbolic(symm_allreduce=()))
            rule = self.allreduce_rule if self.custom_allreduce_latency is not None else "custom"
            out["allreduce"] = rule if rule in ("vllm", "trtllm-1.0") else "custom"
            # NB: NCCL's ring protocol rule too (timing.nccl_ring_tuning: LL terms, a capability it covers)
            nccl_ring = self.ll_base_latency is not None and self.compute_capability in NCCL_TUNING
            if rule == "vllm" or self.attention_pingpong or nccl_ring:
                out["compute_capability"] = self.compute_capability
            if rule == "vllm":
                # its symmetric-memory all-reduce takes bf16 only: inside these byte windows the time
                # of an all-reduce depends on its element format (LayerMetrics.subs refuses fp16 where
                # the format was unknown); none where the chip lacks its terms (NCCL runs there)
                out["symm_allreduce"] = (vllm_symm_windows(self.compute_capability)
                                         if self.symm_allreduce_latency is not None else ())
        if self.compute_units is not None:
            out.update(matmul_tile=self.matmul_tile, matmul_tile_4bit=self.matmul_tile_4bit,
                       matmul_stream_k=self.matmul_stream_k,
                       grouped_output=self.grouped_gemm_output_efficiency is not None)
        return out

    @property
    def nccl_nvls_efficiency(self) -> sp.Expr:
        """``kappa_nvls``: NCCL's own NVLink SHARP bandwidth factor for this chip's architecture,
        ``nvls_arch_efficiency`` where set, else :data:`NCCL_NVLS_EFFICIENCY` by the major compute
        capability (17/20 on 9.x, 37/50 on 10.x); a chip with ``nvls_latency`` and no compute
        capability, one below 9.0 (NCCL has no NVLS there) or above 10.x (newer NCCLs' figures, Rubin
        0.87) must state ``nvls_arch_efficiency`` (a :class:`~symcost.errors.HardwareError` otherwise),
        so the 1 returned here for those is never a chip's NVLS figure.

        >>> from symcost import hardware
        >>> hardware.get("H100_SXM").nccl_nvls_efficiency, hardware.get("B300").nccl_nvls_efficiency
        (17/20, 37/50)
        """
        if self.nvls_arch_efficiency is not None:
            return self.nvls_arch_efficiency
        major = None if self.compute_capability is None else int(self.compute_capability.split(".")[0])
        return next((kappa for floor, kappa in NCCL_NVLS_EFFICIENCY if major is not None and major >= floor),
                    sp.Integer(1))

    @property
    def nvls_bus_efficiency(self) -> sp.Expr:
        """NVLink SHARP's bus bandwidth over the link's: ``kappa_nvls eta_nvls``
        (:attr:`nccl_nvls_efficiency` times the fitted ``nvls_efficiency``)."""
        return self.nccl_nvls_efficiency * self.nvls_efficiency

    @property
    def attention_pingpong(self) -> bool:
        """Whether this chip's context attention kernels overlap their matmuls with their softmax's
        exponentials (:data:`PINGPONG_COMPUTE_CAPABILITY`): a compute capability
        of 10.x (SM100, SM103), which thus shapes a prefill's time (:attr:`structure`).

        >>> from symcost import hardware
        >>> hardware.get("B300").attention_pingpong, hardware.get("H200_SXM").attention_pingpong
        (True, False)
        """
        return (self.compute_capability is not None
                and self.compute_capability.split(".")[0] == PINGPONG_COMPUTE_CAPABILITY)

    @property
    def efficiency_from(self) -> Optional[str]:
        """Where a chip read from a file (:meth:`from_file`) took the fields the file leaves out:
        ``"base <preset>"`` or ``"ideal"``; ``None`` for a file that sets every field, a preset or
        a chip built in code."""
        return self._efficiency_from

    def _rates(self) -> Iterator[Any]:
        yield from self.peak_flops.values()
        yield from (self.vector_flops, self.hbm_capacity, self.hbm_bandwidth,
                    self.scale_up_bandwidth, self.scale_up_domain, self.scale_out_bandwidth,
                    self.collective_latency, self.scale_out_latency, self.scale_up_peer_bandwidth)

    def peak(self, dtype: DataType | str) -> Any:
        """Dense peak matrix FLOP/s for ``dtype``, as the datasheet gives it.

        Raises :class:`~symcost.errors.HardwareError` naming the chip, the dtype and the dtypes it lists.
        """
        dt = DataType.parse(dtype)
        try:
            return exact_value(self.peak_flops[dt])
        except KeyError:
            known = ", ".join(d.value for d in self.peak_flops)
            # NB: refused, not computed in another format: a block-scaled matmul on a chip whose
            # tensor cores take no block scales (H100, H200, A100) would run dequantized at some
            # other rate with other bytes, which the caller should choose (dtype="fp8_e4m3").
            hint = (" (its matrix units take no block-scaled formats; cost it in a format it lists, "
                    "or on a chip that has them, e.g. B200)" if dt.is_block_scaled else "")
            raise HardwareError(
                f"{self.name} has no peak FLOP/s for {dt.value}; it lists: {known}{hint}") from None

    def matmul_efficiency_for(self, dtype: DataType | str | None) -> sp.Expr:
        """The GEMM efficiency for ``dtype``'s format class (:meth:`format_class`):
        ``matmul_efficiency`` for 16-bit and wider formats, ``matmul_efficiency_8bit`` for 8-bit
        ones, ``matmul_efficiency_4bit`` below a byte; an unset narrower class takes the wider
        one's (MXFP8, at 33/32 byte, is an 8-bit format).

        >>> from symcost import hardware
        >>> b200, h100 = hardware.get("B200"), hardware.get("H100_SXM")
        >>> b200.matmul_efficiency_for("nvfp4") == b200.matmul_efficiency_4bit  # B200's NVFP4 table
        True
        >>> h100.matmul_efficiency_for("fp8_e4m3") < h100.matmul_efficiency_for("bf16") < 1
        True
        """
        return self._by_format(dtype, self.matmul_efficiency, self.matmul_efficiency_8bit,
                               self.matmul_efficiency_4bit)

    @staticmethod
    def format_class(dtype: DataType | str | None) -> str:
        """The GEMM format class of ``dtype``: ``"16bit"`` (2 bytes and wider), ``"8bit"`` (FP8,
        INT8, MXFP8 at 33/32 byte) or ``"4bit"`` (below a byte: NVFP4, MXFP4, INT4).

        >>> Hardware.format_class("nvfp4"), Hardware.format_class("mxfp8"), Hardware.format_class(None)
        ('4bit', '8bit', '16bit')
        """
        if dtype is None:
            return "16bit"
        size = DataType.parse(dtype).bytes
        return "16bit" if size >= 2 else "8bit" if size >= 1 else "4bit"

    def _by_format(self, dtype: DataType | str | None, wide: Any, eight: Any, four: Any) -> Any:
        """``wide`` for 16-bit formats, ``eight`` (``None``: ``wide``) for 8-bit ones, ``four``
        (``None``: the 8-bit value) below a byte."""
        kind = self.format_class(dtype)
        if kind == "16bit":
            return wide
        eight = wide if eight is None else eight
        return eight if kind == "8bit" or four is None else four

    def gemm_time_for(self, dtype: DataType | str | None) -> sp.Expr:
        """Fixed seconds of one GEMM in ``dtype``'s format class (``gemm_time``, ``gemm_time_8bit``,
        ``gemm_time_4bit``; an unset narrower class takes the wider one's, an unset ``gemm_time``
        the chip's ``kernel_time``)."""
        wide = self.kernel_time if self.gemm_time is None else self.gemm_time
        return self._by_format(dtype, wide, self.gemm_time_8bit, self.gemm_time_4bit)

    @property
    def grouped_memory_efficiency(self) -> sp.Expr:
        """HBM fraction of grouped GEMMs: ``grouped_gemm_memory_efficiency``, else the dense GEMMs'
        (``gemm_memory_efficiency``, else ``memory_efficiency``)."""
        if self.grouped_gemm_memory_efficiency is not None:
            return self.grouped_gemm_memory_efficiency
        return self.memory_efficiency if self.gemm_memory_efficiency is None else self.gemm_memory_efficiency

    def grouped_gemm_efficiency_for(self, dtype: DataType | str | None) -> sp.Expr:
        """The grouped GEMMs' rate over the dense GEMMs' in ``dtype``'s format class:
        ``grouped_gemm_efficiency`` at 16 bits, ``grouped_gemm_efficiency_8bit`` (unset: the 16-bit
        one) at 8 bits and below; unset both, 1.

        >>> from symcost import hardware
        >>> h100 = hardware.get("H100_SXM")
        >>> h100.grouped_gemm_efficiency_for("bf16") == h100.grouped_gemm_efficiency
        True
        >>> h100.grouped_gemm_efficiency_for("fp8_e4m3") == h100.grouped_gemm_efficiency_8bit
        True
        """
        wide = sp.Integer(1) if self.grouped_gemm_efficiency is None else self.grouped_gemm_efficiency
        return self._by_format(dtype, wide, self.grouped_gemm_efficiency_8bit, None)

    def grouped_gemm_time_for(self, dtype: DataType | str | None) -> sp.Expr:
        """Fixed seconds of one grouped GEMM kernel: ``grouped_gemm_time``, else the dense GEMM's
        of ``dtype``'s format class (:meth:`gemm_time_for`)."""
        return self.gemm_time_for(dtype) if self.grouped_gemm_time is None else self.grouped_gemm_time

    @property
    def prefill_attention_time(self) -> sp.Expr:
        """Fixed seconds of one prefill (or backward) attention kernel: ``attention_time``, the
        chip's ``kernel_time`` when unset."""
        return self.kernel_time if self.attention_time is None else self.attention_time

    @property
    def decode_attention_time(self) -> sp.Expr:
        """Fixed seconds of one decode attention kernel: ``attention_decode_time``, the chip's
        ``kernel_time`` when unset."""
        return self.kernel_time if self.attention_decode_time is None else self.attention_decode_time

    @property
    def grouped_decode_attention_time(self) -> sp.Expr:
        """Fixed seconds of one grouped-query decode attention kernel over an 8-bit KV cache:
        ``grouped_decode_time_8bit``, else :attr:`decode_attention_time`."""
        return self.decode_attention_time if self.grouped_decode_time_8bit is None else self.grouped_decode_time_8bit

    @property
    def a2a_latency(self) -> sp.Expr:
        """Fixed seconds of one all-to-all call, Simple protocol: ``all_to_all_latency``, NCCL's
        base latency ``collective_base_latency`` when unset."""
        return self.collective_base_latency if self.all_to_all_latency is None else self.all_to_all_latency

    @property
    def custom_two_shot_latency(self) -> sp.Expr:
        """Seconds per call of the engine's two-shot all-reduce: ``custom_allreduce_two_shot_latency``,
        unset twice ``custom_allreduce_latency`` (two synchronisations of the one-shot's)."""
        if self.custom_allreduce_two_shot_latency is not None:
            return self.custom_allreduce_two_shot_latency
        assert self.custom_allreduce_latency is not None  # callers check
        return 2 * self.custom_allreduce_latency

    @property
    def a2a_peer_latency(self) -> sp.Expr:
        """Seconds an all-to-all adds per peer: ``all_to_all_peer_latency``, the ring's hop
        latency ``collective_latency`` when unset (then an all-to-all inside a domain is the ring)."""
        return self.collective_latency if self.all_to_all_peer_latency is None else self.all_to_all_peer_latency

    def gemm_tiling(self, dtype: DataType | str | None) -> tuple[tuple[int, int], bool]:
        """The output tile ``(T_M, T_N)`` of a GEMM in ``dtype`` and whether it splits k below one
        wave: ``matmul_tile_4bit`` without split-K for sub-byte formats where it is set, else
        ``matmul_tile`` with split-K.

        >>> from symcost import hardware
        >>> hardware.get("B200").gemm_tiling("nvfp4"), hardware.get("B200").gemm_tiling("bf16")
        (((128, 256), False), ((64, 128), True))
        """
        if self.matmul_tile_4bit is not None and self.format_class(dtype) == "4bit":
            return self.matmul_tile_4bit, False
        return self.matmul_tile, True

    def gemm_backward_efficiency_for(self, dtype: DataType | str | None) -> sp.Expr:
        """The fraction of the forward's FLOP/s at which a GEMM's dgrad and wgrad run in ``dtype``:
        1 for 16-bit formats, ``gemm_backward_efficiency_8bit`` for narrower ones. The symbolic
        chip's, for no dtype, is its symbol, which :meth:`symbol_values` binds to the dtype's value."""
        if dtype is None and self.is_symbolic:
            return self.gemm_backward_efficiency_8bit
        return self._by_format(dtype, sp.Integer(1), self.gemm_backward_efficiency_8bit, None)

    def quantize_bytes_for(self, dtype: DataType | str | None) -> sp.Expr:
        """HBM bytes per input element that quantizing a GEMM input to ``dtype`` moves: 0 for
        16-bit formats, ``quantize_bytes_8bit`` for 8-bit ones, ``quantize_bytes_4bit`` (``None``:
        the 8-bit value) below a byte. The symbolic chip's, for no dtype, is its symbol ``q``,
        which :meth:`symbol_values` binds to the dtype's value (0 for 16-bit formats)."""
        if dtype is None and self.is_symbolic:
            return self.quantize_bytes_8bit
        return self._by_format(dtype, sp.Integer(0), self.quantize_bytes_8bit, self.quantize_bytes_4bit)

    @property
    def gemm_hbm_bandwidth(self) -> sp.Expr:
        """HBM bytes/s of bandwidth-bound GEMMs: ``hbm_bandwidth * gemm_memory_efficiency``
        (``memory_efficiency`` when unset)."""
        eff = self.memory_efficiency if self.gemm_memory_efficiency is None else self.gemm_memory_efficiency
        return self.hbm_bandwidth * eff

    def effective_peak(self, dtype: DataType | str | None) -> sp.Expr:
        """Matmul FLOP/s the time model uses: ``peak(dtype) * matmul_efficiency_for(dtype)``."""
        if dtype is None:
            if not self.is_symbolic:
                raise ConfigError(
                    f"{self.name}: binding hardware needs a concrete dtype (got a symbolic one); "
                    "pass dtype='bf16' or similar")
            return sym.peak_flops * self.matmul_efficiency
        return self.peak_flops_expr(dtype) * self.matmul_efficiency_for(dtype)

    def attention_peak(self, dtype: DataType | str | None) -> sp.Expr:
        """FLOP/s of the attention kernels: ``attention_efficiency`` times the 16-bit peak for
        8-bit dtypes (engines run attention in bf16/fp16 even when the GEMMs run in FP8;
        docs/conventions.md §17), else the dtype's own peak."""
        return self._attention_base_peak(dtype) * self.attention_efficiency

    def attention_backward_peak(self, dtype: DataType | str | None) -> sp.Expr:
        """FLOP/s of a flash backward kernel on a 10.x chip, its whole kernel in the rate:
        :attr:`backward_attention_share` times the peak :meth:`attention_peak` takes.

        >>> from symcost import hardware
        >>> b200 = hardware.get("B200")
        >>> b200.attention_backward_peak("bf16") / 10**12    # 2250 TFLOP/s * 263/500 = 1183.5
        2367/2
        """
        return self._attention_base_peak(dtype) * self.backward_attention_share

    @property
    def backward_share_missing(self) -> bool:
        """Whether a flash backward on this chip needs ``attention_backward_peak_efficiency`` and the
        chip lacks it (compute capability 10.x, not the ideal chip)."""
        return (self.attention_backward_peak_efficiency is None and self.attention_pingpong
                and not self.is_ideal)

    @property
    def backward_attention_share(self) -> sp.Expr:
        """``eta_abpk``: ``attention_backward_peak_efficiency``, else ``attention_efficiency *
        attention_backward_efficiency`` (the forward's matmul share times the backward ratio), a
        value for :meth:`symbol_values` only: a 10.x chip's flash backward without the field is
        refused, and below 10.x (or on the ideal chip) the backward does not use it."""
        if self.attention_backward_peak_efficiency is not None:
            return self.attention_backward_peak_efficiency
        return self.attention_efficiency * self.attention_backward_efficiency

    @property
    def backward_attention_time(self) -> sp.Expr:
        """``t_abwd``: the seconds of one flash backward call per (sequence, query head) on a 10.x
        chip, ``attention_backward_time``, else 0.

        >>> from symcost import hardware
        >>> hardware.get("B200").backward_attention_time * 10**9    # cuDNN 9.22's fit on GB200's rows, ns
        1046
        """
        return sp.Integer(0) if self.attention_backward_time is None else self.attention_backward_time

    def _attention_base_peak(self, dtype: DataType | str | None) -> sp.Expr:
        """The peak the attention kernels run against: the 16-bit peak for 8-bit dtypes, else the
        dtype's own (``F_16`` on the symbolic chip, which binds it per dtype)."""
        if any(isinstance(v, sp.Basic) and v.free_symbols for v in self.peak_flops.values()):
            # F_16 binds to the dtype's own peak for 16-bit and wider dtypes (symbol_values)
            return sym.peak_flops_16bit
        if dtype is None:
            raise ConfigError(f"{self.name}: binding hardware needs a concrete dtype (got a symbolic one); "
                             "pass dtype='bf16' or similar")
        dt = DataType.parse(dtype)
        if dt.bytes < 2:
            for half in (DataType.BF16, DataType.FP16):
                if half in self.peak_flops:
                    return self.peak_flops_expr(half)
        return self.peak_flops_expr(dt)

    def peak_flops_expr(self, dtype: DataType | str) -> sp.Expr:
        """:meth:`peak` as a SymPy number."""
        return as_expr(self.peak(dtype), "peak_flops")

    @property
    def effective_hbm_bandwidth(self) -> sp.Expr:
        """HBM bytes/s the time model uses: ``hbm_bandwidth * memory_efficiency``."""
        return self.hbm_bandwidth * self.memory_efficiency

    @property
    def attention_hbm_bandwidth(self) -> sp.Expr:
        """HBM bytes/s of decode attention over the KV cache:
        ``hbm_bandwidth * attention_memory_efficiency`` (``memory_efficiency`` when unset)."""
        eff = self.memory_efficiency if self.attention_memory_efficiency is None else self.attention_memory_efficiency
        return self.hbm_bandwidth * eff

    @property
    def peer_bandwidth(self) -> sp.Expr:
        """Bytes/s per direction between one pair of chips inside the scale-up domain:
        ``scale_up_peer_bandwidth``, else ``scale_up_bandwidth`` (a switch, NVSwitch, gives a
        chip its whole link to any peer; a direct mesh or torus one of its links)."""
        return self.scale_up_bandwidth if self.scale_up_peer_bandwidth is None else self.scale_up_peer_bandwidth

    @property
    def out_efficiency(self) -> sp.Expr:
        """The collectives' fraction of the scale-out link: ``scale_out_efficiency``, else
        ``network_efficiency``."""
        return self.network_efficiency if self.scale_out_efficiency is None else self.scale_out_efficiency

    def link_bandwidth(self, span: Any) -> sp.Expr:
        """Bytes/s per chip for a group spread over ``span`` chips: the scale-up link when the
        group fits in one scale-up domain, else the scale-out link; times the network
        efficiency. A comparison SymPy cannot decide stays a ``Piecewise``."""
        fits = sp.Le(as_expr(span, "span"), self.scale_up_domain)
        up = self.scale_up_bandwidth * self.network_efficiency
        out = self.scale_out_bandwidth * self.out_efficiency
        if fits is sp.true:
            return up
        if fits is sp.false:
            return out
        return sp.Piecewise((up, fits), (out, True))

    @property
    def net_latency(self) -> sp.Expr:
        """α_net: seconds of one collective hop over the scale-out network
        (``scale_out_latency``, else ``collective_latency``)."""
        return self.collective_latency if self.scale_out_latency is None else self.scale_out_latency

    def symbol_values(self, dtype: DataType | str) -> dict[sp.Symbol, sp.Expr]:
        """Values of the hardware symbols for this chip and ``dtype``: substitute them into
        metrics computed on the symbolic chip to bind this one. The efficiency model's symbols
        (:meth:`symbolic` with ``realistic=True``) take this chip's values; the rates stay raw.
        A collective algorithm the chip lacks (no tree, no NVLink SHARP) takes ``oo`` seconds per
        call, so the ``Min`` over algorithms never picks it.

        >>> from symcost import hardware, symbols as sym
        >>> hardware.get("H100_SXM").symbol_values("fp8_e4m3")[sym.peak_flops]
        1978900000000000
        """
        dt = DataType.parse(dtype)
        half = next((d for d in (DataType.BF16, DataType.FP16) if d in self.peak_flops), dt)
        eff = self.memory_efficiency if self.attention_memory_efficiency is None else self.attention_memory_efficiency
        values: dict[sp.Symbol, Any] = {
            sym.peak_flops: self.peak_flops_expr(dt),
            sym.peak_flops_16bit: self.peak_flops_expr(half if dt.bytes < 2 else dt),
            sym.vector_flops: self.vector_flops,
            sym.hbm_capacity: self.hbm_capacity,
            sym.hbm_bandwidth: self.hbm_bandwidth,
            sym.scale_up_bandwidth: self.scale_up_bandwidth,
            sym.scale_up_domain: self.scale_up_domain,
            sym.scale_up_peer_bandwidth: self.peer_bandwidth,
            sym.scale_out_bandwidth: self.scale_out_bandwidth,
            sym.collective_latency: self.collective_latency,
            sym.scale_out_latency: self.net_latency,
            sym.tree_latency: sp.oo if self.tree_latency is None else self.tree_latency,
            sym.tree_efficiency: self.tree_efficiency,
            sym.nvls_latency: sp.oo if self.nvls_latency is None else self.nvls_latency,
            sym.nvls_efficiency: self.nvls_efficiency,
            sym.nvls_arch_efficiency: self.nccl_nvls_efficiency,
            sym.matmul_efficiency: self.matmul_efficiency_for(dt),
            sym.matmul_efficiency_8bit: self.matmul_efficiency_for(dt),
            sym.memory_efficiency: self.memory_efficiency,
            sym.attention_memory_efficiency: eff,
            sym.attention_efficiency: self.attention_efficiency,
            sym.network_efficiency: self.network_efficiency,
            sym.scale_out_efficiency: self.out_efficiency,
            sym.kernel_time: self.kernel_time,
            sym.launch_time: 0 if self.runtime.cuda_graphs else self.launch_time,
            sym.collective_base_latency: self.collective_base_latency,
            sym.step_overhead: self.runtime.step_overhead,
            sym.collective_overhead: self.runtime.collective_overhead,
            sym.moe_sync_time: self.runtime.moe_sync_time,
            sym.a2a_overlap_efficiency: self.runtime.a2a_overlap_efficiency,
            sym.tp_overlap_efficiency: self.runtime.tp_overlap_efficiency,
        }
        values.update(self._kernel_symbol_values(dt))
        if self.compute_units is not None:  # none: no tile quantization, nothing to bind N_cu to
            values[sym.compute_units] = self.compute_units
        if not self.backward_share_missing:
            # NB: a 10.x chip (not ideal) without its own share has no backward value: binding
            # metrics that hold eta_abpk is refused (LayerMetrics.subs), as kernels.attention_backward refuses
            values[sym.attention_backward_peak_efficiency] = self.backward_attention_share
        values[sym.attention_backward_time] = self.backward_attention_time
        return values

    def _kernel_symbol_values(self, dt: DataType) -> dict[sp.Symbol, Any]:
        """The kernel classes' symbols for ``dt`` (:meth:`symbol_values`); a term the chip lacks
        (no low-latency protocol, no custom all-reduce under its engine, no separate attention
        input/output pass) is ``oo``, so it drops out of its ``Min`` or divides to 0."""
        custom = self.custom_allreduce_latency if self.allreduce_rule != "nccl" else None
        symm = self.symm_allreduce_latency if self.allreduce_rule == "vllm" else None
        return {
            sym.gemm_time: self.gemm_time_for(dt),
            sym.quantize_bytes: self.quantize_bytes_for(dt),
            sym.gemm_backward_efficiency: self.gemm_backward_efficiency_for(dt),
            sym.gemm_memory_efficiency: (self.memory_efficiency if self.gemm_memory_efficiency is None
                                         else self.gemm_memory_efficiency),
            sym.grouped_gemm_efficiency: self.grouped_gemm_efficiency_for(dt),
            sym.grouped_gemm_time: self.grouped_gemm_time_for(dt),
            sym.grouped_gemm_memory_efficiency: self.grouped_memory_efficiency,
            # NB: unset, the second projection keeps the tiled store (kernels.grouped_gemm): a
            # symbolic chip with the write (structure["grouped_output"]) refuses this one
            sym.grouped_gemm_output_efficiency: sp.oo if self.grouped_gemm_output_efficiency is None
            else self.grouped_gemm_output_efficiency,
            sym.attention_time: self.prefill_attention_time,
            sym.attention_io_efficiency: sp.oo if self.attention_io_efficiency is None
            else self.attention_io_efficiency,
            sym.attention_backward_efficiency: self.attention_backward_efficiency,
            sym.attention_decode_time: self.decode_attention_time,
            sym.grouped_decode_time_8bit: self.grouped_decode_attention_time,
            sym.attention_exp_rate: sp.oo if self.attention_exp_rate is None else self.attention_exp_rate,
            sym.mha_decode_rate: sp.oo if self.mha_decode_rate is None else self.mha_decode_rate,
            sym.decode_ramp_time: 0 if self.decode_ramp_time is None else self.decode_ramp_time,
            # NB: without decode_ramp_bytes the numeric chip takes the whole t_ramp; one byte binds
            # Min(1, bytes/M_ramp) to 1 for every kernel (a decode kernel moves at least a byte)
            sym.decode_ramp_bytes: 1 if self.decode_ramp_bytes is None else self.decode_ramp_bytes,
            sym.ll_base_latency: sp.oo if self.ll_base_latency is None else self.ll_base_latency,
            sym.ll_latency: self.ll_latency,
            sym.ll_efficiency: self.ll_efficiency,
            sym.custom_allreduce_latency: sp.oo if custom is None else custom,
            sym.custom_allreduce_efficiency: self.custom_allreduce_efficiency,
            sym.custom_allreduce_peer_latency: self.custom_allreduce_peer_latency,
            sym.custom_allreduce_two_shot_latency: sp.oo if custom is None else self.custom_two_shot_latency,
            sym.custom_allreduce_block_rate: sp.oo if self.custom_allreduce_block_rate is None
            else self.custom_allreduce_block_rate,
            sym.symm_allreduce_latency: sp.oo if symm is None else symm,
            sym.symm_allreduce_efficiency: self.symm_allreduce_efficiency,
            sym.all_to_all_latency: self.a2a_latency,
            sym.all_to_all_peer_latency: self.a2a_peer_latency,
            sym.all_to_all_ll_latency: sp.oo if self.all_to_all_ll_latency is None else self.all_to_all_ll_latency,
            sym.all_to_all_ll_efficiency: self.all_to_all_ll_efficiency,
            sym.all_to_all_efficiency: self.all_to_all_efficiency,
        }

    # -- construction and files --------------------------------------------------------------

    @classmethod
    def symbolic(cls, name: str = "symbolic", realistic: bool = False,
                 matmul_tile: tuple[int, int] = (64, 128),
                 matmul_tile_4bit: Optional[tuple[int, int]] = None, matmul_stream_k: bool = False,
                 allreduce: AllreduceRule = "custom", compute_capability: Optional[str] = None,
                 grouped_gemm: Literal["fused", "per_expert"] = "fused",
                 symm_allreduce: Optional[tuple[tuple[int, int, int], ...]] = None,
                 grouped_output: bool = True, moe_sort: MoESortRule = "tensorrt-llm") -> "Hardware":
        """The unbound chip: every rate a canonical symbol. With ``realistic=True`` the efficiency
        model is symbolic too (η_mm, η_mem, η_attn, η_net, t_k, α₀, N_cu, ...), so times print with
        it; otherwise efficiencies are 1 and overheads 0 (the roofline). ``matmul_tile`` and
        ``matmul_tile_4bit`` stay numbers (the tile shapes of the chips it will be bound to; the
        sub-byte tile applies where the GEMMs are timed with their dtype), ``matmul_stream_k`` a
        flag (their tile scheduler); ``allreduce`` and ``compute_capability`` the engine's all-reduce
        rule and the GPU's size table (:func:`symcost.hardware.timing.vllm_allreduce_window`), which
        structure an all-reduce's time as the tile shapes structure a GEMM's; ``grouped_gemm`` the
        engine's grouped-GEMM mode (:attr:`Runtime.grouped_gemm`) and ``moe_sort`` its MoE sort rule
        (:attr:`Runtime.moe_sort`); ``symm_allreduce`` (vLLM's rule:
        ``None``, the capability's symmetric-memory windows with its terms symbols; ``()``, a chip
        without them; else it must be the capability's windows); ``grouped_output`` whether the
        experts' second projection writes its output after its main loop (``eta_ggout`` a symbol;
        ``False``: unset, as on A100): build it as the chips it will be bound to
        (``Hardware.symbolic(realistic=True, **chip.structure)``), or binding refuses them.

        >>> from symcost import hardware
        >>> h100 = hardware.get("H100_SXM").with_runtime("vllm")
        >>> Hardware.symbolic(realistic=True, **h100.structure).structure == h100.structure
        True
        """
        if allreduce not in _ALLREDUCE_RULES:
            raise HardwareError(f"allreduce must be one of {', '.join(_ALLREDUCE_RULES)}, got {allreduce!r}")
        compute_capability = _compute_capability(compute_capability)
        _check_symm_windows(compute_capability, symm_allreduce)
        fields: dict[str, Any] = _symbolic_rates(name)
        if realistic:
            # every efficiency-model field is the symbol of its name (quantize_bytes_8bit: q), but
            # those only a format class or an engine profile sets, which bind through it
            fields.update({name: sym.TABLE[name].symbol for name in _MODEL_FIELDS if name in sym.TABLE})
            fields.update(quantize_bytes_8bit=sym.quantize_bytes,
                          grouped_gemm_efficiency_8bit=sym.grouped_gemm_efficiency,
                          gemm_backward_efficiency_8bit=sym.gemm_backward_efficiency, matmul_tile=matmul_tile,
                          matmul_tile_4bit=matmul_tile_4bit, matmul_stream_k=matmul_stream_k,
                          compute_capability=compute_capability,
                          runtime=Runtime(name="symbolic", cuda_graphs=False, step_overhead=sym.step_overhead,
                                          collective_overhead=sym.collective_overhead, allreduce=allreduce,
                                          moe_sync_time=sym.moe_sync_time,
                                          a2a_overlap_efficiency=sym.a2a_overlap_efficiency,
                                          tp_overlap_efficiency=sym.tp_overlap_efficiency,
                                          grouped_gemm=grouped_gemm, moe_sort=moe_sort))
            if symm_allreduce is not None and not symm_allreduce:
                fields.update(symm_allreduce_latency=None, symm_allreduce_efficiency=sp.Integer(1))
            if not grouped_output:
                fields["grouped_gemm_output_efficiency"] = None
            if not (compute_capability or "").startswith(PINGPONG_COMPUTE_CAPABILITY + "."):
                fields["attention_backward_peak_efficiency"] = None   # 10.x fields only (validator)
                fields["attention_backward_time"] = None
        return cls(**fields)

    def ideal(self) -> "Hardware":
        """The pure roofline of this chip: efficiencies 1, no overheads, no tile quantization,
        ring collectives only (α per hop kept), the ideal runtime (what ``bound`` analyses use;
        docs/conventions.md §14).

        >>> from symcost import hardware
        >>> ideal = hardware.get("H100_SXM").ideal()
        >>> ideal.memory_efficiency, ideal.kernel_time, ideal.name
        (1, 0, 'H100_SXM (ideal)')
        """
        return _ideal(self)

    def _build_ideal(self) -> "Hardware":
        one, zero = sp.Integer(1), sp.Integer(0)
        name = self.name if self.name.endswith("(ideal)") else f"{self.name} (ideal)"
        return Hardware(**{**self._fields(), **dict(
            name=name, matmul_efficiency=one, matmul_efficiency_8bit=None, memory_efficiency=one,
            attention_memory_efficiency=None, attention_efficiency=one, network_efficiency=one,
            scale_out_efficiency=None,
            kernel_time=zero, launch_time=zero, collective_base_latency=zero, compute_units=None,
            tree_latency=None, tree_efficiency=one, nvls_latency=None, nvls_efficiency=one,
            matmul_efficiency_4bit=None, gemm_time=None, gemm_time_8bit=None, gemm_time_4bit=None,
            quantize_bytes_8bit=zero, quantize_bytes_4bit=None, gemm_memory_efficiency=None,
            grouped_gemm_efficiency=None, grouped_gemm_efficiency_8bit=None,
            grouped_gemm_time=None, grouped_gemm_memory_efficiency=None, grouped_gemm_output_efficiency=None,
            attention_time=None,
            attention_io_efficiency=None, attention_backward_efficiency=one, attention_backward_peak_efficiency=None,
            attention_backward_time=None,
            gemm_backward_efficiency_8bit=one,
            attention_decode_time=None,
            grouped_decode_time_8bit=None, attention_exp_rate=None, mha_decode_rate=None, decode_ramp_time=None,
            decode_ramp_bytes=None,
            ll_base_latency=None, ll_latency=zero, ll_efficiency=one, custom_allreduce_latency=None,
            custom_allreduce_efficiency=one, custom_allreduce_peer_latency=zero, custom_allreduce_two_shot_latency=None,
            custom_allreduce_block_rate=None, symm_allreduce_latency=None, symm_allreduce_efficiency=one,
            all_to_all_latency=None, all_to_all_peer_latency=None,
            all_to_all_ll_latency=None, all_to_all_ll_efficiency=one, all_to_all_efficiency=one,
            runtime=Runtime(name="ideal"))})

    @property
    def is_ideal(self) -> bool:
        """True when the chip has no efficiency model (a pure roofline)."""
        return (self.matmul_efficiency == 1 and self.matmul_efficiency_8bit in (None, 1)
                and self.memory_efficiency == 1 and self.attention_memory_efficiency in (None, 1)
                and self.attention_efficiency == 1 and self.network_efficiency == 1
                and self.scale_out_efficiency in (None, 1)
                and self.kernel_time == 0 and self.collective_base_latency == 0
                and self.compute_units is None and self.tree_latency is None and self.nvls_latency is None
                and self.tree_efficiency == 1 and self.nvls_efficiency == 1
                and self.matmul_efficiency_4bit in (None, 1) and self.gemm_time in (None, 0)
                and self.gemm_time_8bit in (None, 0) and self.gemm_time_4bit in (None, 0)
                and self.quantize_bytes_8bit == 0 and self.quantize_bytes_4bit in (None, 0)
                and self.gemm_memory_efficiency in (None, 1)
                and self.grouped_gemm_efficiency in (None, 1) and self.grouped_gemm_efficiency_8bit in (None, 1)
                and self.grouped_gemm_time in (None, 0)
                and self.grouped_gemm_memory_efficiency in (None, 1) and self.attention_time in (None, 0)
                and self.grouped_gemm_output_efficiency in (None, 1)
                and self.attention_io_efficiency is None and self.attention_decode_time in (None, 0)
                and self.grouped_decode_time_8bit in (None, 0) and self.attention_exp_rate is None
                and self.mha_decode_rate is None and self.decode_ramp_time in (None, 0)
                and self.attention_backward_efficiency == 1 and self.gemm_backward_efficiency_8bit == 1
                and self.attention_backward_peak_efficiency is None and self.attention_backward_time in (None, 0)
                and self.ll_base_latency is None
                and self.all_to_all_latency is None and self.all_to_all_peer_latency is None
                and self.all_to_all_ll_latency is None and self.all_to_all_efficiency == 1
                and (self.custom_allreduce_latency is None or self.runtime.allreduce == "nccl")
                and self.runtime.step_overhead == 0
                and self.runtime.collective_overhead == 0 and self.runtime.moe_sync_time == 0
                and self.runtime.a2a_overlap_efficiency == 1 and self.runtime.tp_overlap_efficiency == 1
                and (self.runtime.cuda_graphs or self.launch_time == 0))

    @property
    def allreduce_rule(self) -> str:
        """How the engine picks its all-reduce on this chip (:meth:`Runtime.allreduce_for`).

        >>> from symcost import hardware
        >>> hardware.get("A100_SXM_80GB").with_runtime("tensorrt-llm").allreduce_rule
        'trtllm-1.0'
        """
        return self.runtime.allreduce_for(self.name)

    def with_runtime(self, profile: "Runtime | str") -> "Hardware":
        """A copy running under another engine profile (a :class:`Runtime` or a name from
        :func:`symcost.hardware.runtimes`), with the chip fields the profile measured for this
        chip (:meth:`Runtime.overrides_for`) in place of the chip's own. Switching profiles
        starts from the chip as it was before any profile's fields.

        >>> from symcost import hardware
        >>> h100 = hardware.get("H100_SXM")
        >>> h100.with_runtime("tensorrt-llm").runtime.allreduce
        'custom'
        >>> h100.with_runtime("tensorrt-llm").with_runtime("neutral") == h100
        True
        """
        engine = runtime(profile)
        base = self._base if self._base is not None else self
        fields = {**base._fields(), **engine.overrides_for(base.name), "runtime": engine}
        chip = Hardware(**fields)
        chip._efficiency_from = base._efficiency_from
        if chip != base:
            chip._base = base
        return chip

    def with_efficiency(self, *, matmul: Any = None, memory: Any = None,
                        network: Any = None, **fields: Any) -> "Hardware":
        """A copy with the given efficiency factors (or any other fields) replaced. Under an
        engine profile (:meth:`with_runtime`) the chip before the profile changes alike, so
        switching profiles afterwards keeps the change and drops the profile's fields."""
        update = dict(fields)
        for field, value in (("matmul_efficiency", matmul), ("memory_efficiency", memory),
                             ("network_efficiency", network)):
            if value is not None:
                update[field] = value
        chip = Hardware(**{**self._fields(), **update})
        chip._efficiency_from = self._efficiency_from
        if self._base is not None:
            chip._base = self._base.with_efficiency(**{k: v for k, v in update.items() if k != "runtime"})
        return chip

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).model_fields}

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-ready dict: integers as ints, other exact numbers as ``"p/q"`` strings."""
        if self.is_symbolic:
            raise HardwareError(f"{self.name}: a symbolic chip cannot be saved")

        def plain(value: Any) -> Any:
            value = exact_value(value)
            return value if isinstance(value, int) else str(value)

        # NB: a chip under an engine profile is written as the chip before the profile and the
        # profile, which reading it back applies again (from_mapping): switching profiles works
        # on the reloaded chip as on this one
        own = self._base if self._base is not None else self
        out: dict[str, Any] = {"name": self.name,
                               "peak_flops": {d.value: plain(v) for d, v in own.peak_flops.items()}}
        for field in type(self).model_fields:
            value = self.runtime if field == "runtime" else getattr(own, field)
            if field in out:
                continue
            if value is None or isinstance(value, bool):
                out[field] = value
            elif isinstance(value, tuple):
                out[field] = list(value)
            elif isinstance(value, Runtime):
                # NB: the profile's chip fields are already this chip's fields; not written twice
                out[field] = {"name": value.name, "backend": value.backend, "version": value.version,
                              "cuda_graphs": value.cuda_graphs,
                              "step_overhead": plain(value.step_overhead),
                              "collective_overhead": plain(value.collective_overhead),
                              "prefill_emits_first_token": value.prefill_emits_first_token,
                              "allreduce": value.allreduce, "grouped_gemm": value.grouped_gemm,
                              "moe_sync_time": plain(value.moe_sync_time),
                              "a2a_overlap_efficiency": plain(value.a2a_overlap_efficiency),
                              "tp_overlap_efficiency": plain(value.tp_overlap_efficiency)}
                if value.allreduce_chips:
                    out[field]["allreduce_chips"] = dict(value.allreduce_chips)
            else:
                out[field] = plain(value)
        return out

    def to_file(self, path: str | Path) -> None:
        """Write the chip to ``path``: JSON for ``.json``, YAML for ``.yaml``/``.yml``."""
        path = Path(path)
        kind = _file_kind(path)
        data = self.to_dict()
        if kind == "json":
            path.write_text(json.dumps(data, indent=2) + "\n")
        else:
            import yaml

            path.write_text(yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def from_file(cls, path: str | Path) -> "Hardware":
        """Read a chip from a JSON or YAML file: a flat mapping of its fields, as :meth:`to_file`
        writes them or by hand (``examples/chips/`` holds one per family), read by :meth:`from_mapping`.

        Raises :class:`~symcost.errors.HardwareError`, one line naming the file: unreadable or
        malformed content, every missing field, every bad value.
        """
        path = Path(path)
        kind = _file_kind(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise HardwareError(f"{path}: cannot read hardware file ({err.strerror})") from None
        try:
            if kind == "json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as err:  # the parsers' own error types differ
            raise HardwareError(f"{path}: malformed {kind.upper()} ({err})") from None
        if not isinstance(data, dict):
            raise HardwareError(f"{path}: expected a mapping of hardware fields, got {type(data).__name__}")
        if "fields" in data:
            raise HardwareError(f"{path}: a preset data file (name, fields): load it with "
                                "symcost.hardware.load_file or symcost.hardware.presets.load")
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "hardware") -> "Hardware":
        """A chip from a flat mapping of its fields, plus one of two keys saying what the fields it
        leaves out are: ``base: <preset>`` (e.g. ``h100``) takes them from that preset, the realistic
        chip (its efficiency model, engine profile, tiles, ...), whatever fields :class:`Hardware`
        has; ``ideal: true`` leaves them at their defaults, the pure roofline (efficiencies 1, no
        overheads). A mapping that sets every field needs neither.

        The datasheet fields (those without a default: ``name``, ``peak_flops``, ``vector_flops``,
        ``hbm_capacity``, ``hbm_bandwidth``, ``scale_up_bandwidth``, ``scale_up_domain``,
        ``scale_out_bandwidth``, ``collective_latency``) are always the mapping's own.
        Raises :class:`~symcost.errors.HardwareError`, one line starting with ``source``: every
        missing datasheet field, an efficiency model neither given nor chosen, every bad value.

        >>> from symcost import hardware
        >>> sheet = {k: v for k, v in hardware.get("h100").to_dict().items() if Hardware.model_fields[k].is_required()}
        >>> slow = Hardware.from_mapping({**sheet, "name": "slow-h100", "hbm_bandwidth": "2e12", "base": "h100"},
        ...                              "slow.yaml")
        >>> slow.hbm_bandwidth, slow.memory_efficiency, slow.efficiency_from
        (2000000000000, 183/200, 'base H100_SXM')
        >>> Hardware.from_mapping({"name": "x", "ideal": True}, "x.yaml")
        Traceback (most recent call last):
        ...
        symcost.errors.HardwareError: x.yaml: missing peak_flops, vector_flops, hbm_capacity, hbm_bandwidth,
        scale_up_bandwidth, scale_up_domain, scale_out_bandwidth, collective_latency (every chip file gives the
        datasheet's figures; examples/chips/ has one per family)
        """
        fields = dict(data)
        base, ideal = fields.pop("base", None), fields.pop("ideal", False)
        if not isinstance(ideal, bool):
            raise HardwareError(f"{source}: ideal must be true or false, got {ideal!r}")
        if base is not None and ideal:
            raise HardwareError(f"{source}: give one of base and ideal (got base: {base} and ideal: true)")
        required = [name for name, field in cls.model_fields.items() if field.is_required()]
        missing = [name for name in required if name not in fields]
        if missing:
            raise HardwareError(f"{source}: missing {', '.join(missing)} (every chip file gives the datasheet's "
                                "figures; examples/chips/ has one per family)")
        unset = [name for name in cls.model_fields if name not in fields]
        origin = None
        if base is not None:
            chip = _base_chip(base, source)
            fields.update({name: getattr(chip, name) for name in unset})
            origin = f"base {chip.name}"
        elif ideal:
            origin = "ideal"
        elif unset:
            raise HardwareError(
                f"{source}: no efficiency model: {', '.join(unset)} not set; add 'base: h100' (or another preset) "
                "to take a preset's, or 'ideal: true' for the pure roofline")
        try:
            chip = cls(**fields)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'hardware'}: "
                                 f"{e['msg'].removeprefix('Value error, ')}" for e in err.errors())
            raise HardwareError(f"{source}: {problems}") from None
        chip._efficiency_from = origin
        return _with_registered_profile(chip)


def _with_registered_profile(chip: Hardware) -> Hardware:
    """``chip`` under its runtime's registered profile when the runtime is one, as
    :meth:`Hardware.to_dict` writes it (without its chip fields): that profile's own fields for
    this chip applied, so that a profiled chip read back from a file is the chip it was."""
    registered = RUNTIMES.get(chip.runtime.name.lower())
    if registered is not None and registered.overrides_for(chip.name) and (
            registered.model_copy(update={"overrides": ()}) == chip.runtime):
        return chip.with_runtime(registered)
    return chip


def _base_chip(name: Any, source: str) -> Hardware:
    """The preset a chip file names as its ``base`` (through the registry :mod:`symcost.hardware`
    registers in :mod:`symcost.core.binding`: the presets sit above this module)."""
    from ..core import binding

    if not isinstance(name, str):
        raise HardwareError(f"{source}: base must be a preset's name, got {name!r}")
    try:
        chip = binding.time_model().resolve(name)
    except HardwareError as err:
        raise HardwareError(f"{source}: base: {str(err).removeprefix('hardware: ')}") from None
    if not isinstance(chip, Hardware):
        raise HardwareError(f"{source}: base {name!r} is not a chip preset")
    return chip


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise HardwareError(f"{path}: hardware files are .json, .yaml or .yml")


@functools.lru_cache(maxsize=64)
def _ideal(chip: Hardware) -> Hardware:
    """:meth:`Hardware.ideal`, built once per chip (every layer's roofline asks for it)."""
    return chip._build_ideal()

"""Kernel classes: one time function per class of GPU kernel (docs/conventions.md §17).

Every op says its class (:attr:`symcost.core.ops.Op.kernel`); :func:`time_of` looks the class up
in :data:`KERNELS` and calls its function, which turns the op's FLOPs and bytes into an
:class:`OpTime` on a chip. Each class has its own fixed time (its floor) and efficiency terms,
fitted on measurements of that class of kernel (``symcost.hardware.fit``); on the ideal chip
every term is the roofline's. A user adds a class with :func:`kernel`:

>>> @kernel("my.scan")
... def my_scan(op, chip, peak, dtype):
...     return OpTime(compute=op.vector_flops / chip.vector_flops, memory=op.hbm_bytes / chip.hbm_bandwidth)
>>> "my.scan" in KERNELS
True
>>> del KERNELS["my.scan"]

The classes shipped here, per op on a chip with matmul FLOP/s ``peak`` (efficiency applied):

- ``gemm`` (and ``gemm.grouped``, whose floor an engine running one GEMM per expert pays per
  expert): ``max(C / peak, bytes / (B eta_gmem)) + q m k / B + W + t_gemm``
  with ``C`` the FLOPs the matrix units spend, tiles and waves included
  (:func:`matmul_compute_flops`); ``q`` the HBM bytes per input element that quantizing an
  8-bit (or narrower) GEMM's input moves, ``W`` the bf16 output write that a kernel in whole
  waves without split-K (the 4-bit one) does after its main loop (:func:`_epilogue`), ``t_gemm``
  the floor of the dtype's format class;
- ``attn.prefill``: ``max(Max(F / (F_16 eta_attn) + V / F_vec + P / F_exp, L), bytes / (B eta_mem))
  + io / (B eta_aio) + t_attn``: the core's FLOPs at a fraction of the 16-bit peak, its softmax on the
  vector units and its ``P`` exponentials (one per scored pair) on the special-function units,
  at least as long as its longest thread block takes on one SM (``L``, :func:`longest_tile`; a
  head wider than 256 V columns split over blocks that each recompute the scores), and the Q, K,
  V, O traffic of the kernels around the core (RoPE, the KV-cache write) as a pass of its own;
- ``attn.decode``: ``max(F / (F_16 eta_attn) + V / F_vec + (1 - G) N_kv / R_mha, bytes / (B
  eta_kv) + t_ramp Min(1, bytes / M_ramp)) + (1 - G E) t_dec + G E t_dec8``: streaming the KV
  cache after the ramp of its loads, with ``G`` 1 when the core
  groups several query heads per KV head (0 for multi-head attention) and ``E`` 1 for an 8-bit (or
  narrower) KV cache: the grouped kernel over an 8-bit cache has its own floor ``t_dec8``, and a
  multi-head kernel works through the cached K and V elements on the CUDA cores at ``R_mha`` per
  second, in waves of thread blocks over the SMs (``N_kv / R_mha`` when they divide evenly;
  :func:`_mha_elements`);
- ``attn.backward``: the prefill form without the extra pass, its core at ``F_16 eta_attn
  eta_abwd`` (the backward kernels' own fraction of the forward's rate), and for flash the
  forward's exponentials per matmul FLOP at the same fraction; a 10.x flash backward at ``F_16
  eta_abpk`` after ``t_abwd`` per sequence and query head of a call (both fitted on cuDNN's
  rows, :mod:`symcost.hardware.cudnn`);
- ``elementwise``: ``max(V / F_vec, bytes / (B eta_mem)) + t_k``;
- ``host.sync``: the engine's ``moe_sync_time`` (what an eagerly run MoE layer's forward exposes of the
  host: a dropless dispatcher's device-to-host sync, a padded one's launches).

Without CUDA graphs an op takes at least its kernels' host launch time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import sympy as sp

from ..core._expr import Ceil, extreme
from ..core.dtypes import DataType
from ..core.ops import (
    BACKWARD_VECTOR_FACTOR,
    DGRAD,
    VECTOR_FLOPS,
    WGRAD,
    AttentionCore,
    ExpertMapSort,
    Matmul,
    Op,
    window_pairs,
)
from ..errors import ConfigError
from .chip import Hardware

__all__ = ["FUSED_OPS", "KERNELS", "KernelTime", "OpTime", "attention_core", "eight_bit_cache", "grouped_heads",
           "GEMM_OUTPUT_BYTES", "SCATTERED_OUTPUTS", "kernel", "kernels", "last_block", "longest_tile",
           "matmul_compute_flops", "pingpong", "time_of", "whole_tile_pairs", "whole_tiles"]

FUSED_OPS = frozenset({
    # NB: what a fusing engine (TensorRT-LLM, vLLM, FasterTransformer) runs inside another
    # kernel: the residual add inside the next norm (fused add + RMSNorm/LayerNorm), the up
    # projection inside one gate_up GEMM, the gate multiply inside the activation (SiLU·gate),
    # bias adds in the GEMM epilogue, position embeddings inside the embedding gather.
    "residual", "up", "gate_multiply", "out_bias", "down_bias", "positions",
    # Mamba-2 (symcost/layers/mamba2.py): the SSD kernels' elementwise work (decay, scaling, the
    # D skip) inside the chunk-state and chunk-scan kernels, the decode readout inside the
    # state update (mamba_ssm's selective_state_update)
    "ssd_decay", "ssd_scale_x", "ssd_output", "ssm_dt", "ssm_readout", "ssm_output",
})
"""Op names (before any ``.`` suffix) that add no kernel of their own."""


def kernels(op: Op) -> int:
    """Kernels ``op`` launches: 0 when fused into another op's kernel (:data:`FUSED_OPS`), else 1."""
    return 0 if op.name.split(".")[0] in FUSED_OPS else 1


@dataclass(frozen=True)
class OpTime:
    """One op's time terms in seconds: the roofline terms (``compute``, ``memory``, which overlap),
    ``serial`` work in kernels of its own that overlaps neither (an FP8 GEMM quantizing its input,
    prefill attention's RoPE and KV-cache write), the fixed
    ``overhead`` of its kernels, and the host's ``launch`` time that paces it without CUDA graphs."""

    compute: sp.Expr
    memory: sp.Expr
    overhead: sp.Expr = sp.Integer(0)
    launch: sp.Expr = sp.Integer(0)
    serial: sp.Expr = sp.Integer(0)

    @property
    def time(self) -> sp.Expr:
        """``max(compute, memory) + serial + overhead``, at least ``launch``: the op waits for
        the slower of its units, then for its separate passes and its kernels' fixed cost;
        without CUDA graphs the host's launches can pace it.

        NB: with symbols the ``Max`` is left unevaluated: SymPy's search for a provable order
        between two rational functions costs milliseconds per op and rarely succeeds; it
        evaluates as soon as numbers are substituted.
        """
        evaluate = bool(self.compute.is_number and self.memory.is_number)
        busy = sp.Max(self.compute, self.memory, evaluate=evaluate) + self.serial + self.overhead
        if self.launch == 0:
            return busy
        return sp.Max(busy, self.launch, evaluate=evaluate and bool(self.overhead.is_number)
                      and bool(sp.sympify(self.serial).is_number))


KernelTime = Callable[[Op, Hardware, sp.Expr, Optional[DataType]], OpTime]
"""A kernel class's time function: ``(op, chip, peak, dtype) -> OpTime``, SymPy in and out."""

KERNELS: dict[str, KernelTime] = {}
"""The kernel classes by name (the value of :attr:`Op.kernel`), each with its time function."""


def kernel(name: str) -> Callable[[KernelTime], KernelTime]:
    """Register the decorated function as the time of kernel class ``name``; a second
    registration of the same name raises :class:`~symcost.errors.ConfigError` (one source of truth)."""
    def register(function: KernelTime) -> KernelTime:
        if name in KERNELS:
            raise ConfigError(f"kernel class {name!r} is registered already ({KERNELS[name].__name__})")
        KERNELS[name] = function
        return function
    return register


def time_of(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType] = None) -> OpTime:
    """``op``'s time terms on ``chip`` by its kernel class; an unknown class is a one-line
    :class:`~symcost.errors.ConfigError` listing the known ones."""
    try:
        function = KERNELS[op.kernel]
    except KeyError:
        raise ConfigError(f"op {op.name!r}: unknown kernel class {op.kernel!r}; known: {', '.join(KERNELS)}") from None
    return function(op, chip, peak, dtype)


def matmul_compute_flops(op: Matmul, hardware: Hardware, dtype: Optional[DataType] = None) -> sp.Expr:
    """FLOPs the matrix units spend on ``op`` in ``dtype``, tiles and waves included (the op's own
    FLOPs on a chip without ``compute_units``): ``2 k T_M T_N U w`` with ``U`` units and ``w`` waves
    of ``T = ceil(m / T_M) ceil(n / T_N)`` tiles (the dtype's tile, :meth:`Hardware.gemm_tiling`),
    ``w = min(T / U, 1) + ceil(max(T - U, 0) / U)`` where the kernel splits k below one wave,
    ``w = T / U`` where a stream-K scheduler splits the last wave too (``matmul_stream_k``),
    ``w = ceil(T / U)`` where it splits none.

    >>> from symcost import hardware
    >>> from symcost.core.dtypes import DataType
    >>> b200, mm = hardware.get("B200"), Matmul("w", m=1, n=1024, k=4096, dtype_bytes=2)
    >>> matmul_compute_flops(mm, b200, DataType.NVFP4) == 2 * 4096 * 128 * 256 * 148  # one wave
    True
    >>> matmul_compute_flops(mm, b200, DataType.BF16) == 2 * 4096 * 64 * 128 * 8  # 8 tiles, split k
    True
    """
    if hardware.compute_units is None:
        return op.matmul_flops
    (tm, tn), split_k = hardware.gemm_tiling(dtype)
    units = hardware.compute_units
    tiles = op.batch * Ceil(op.m / tm) * Ceil(op.n / tn)
    if split_k and hardware.matmul_stream_k:
        # NB: a stream-K scheduler splits the last wave's k loops over every unit too
        waves = tiles / units
    elif split_k:
        # waves = tiles/U below one full wave (split-K spreads the tiles over every unit), else
        # ceil(tiles/U); written without a Piecewise: min(tiles/U, 1) + ceil(max(tiles - U, 0)/U)
        waves = extreme(sp.Min, tiles / units, 1) + Ceil(extreme(sp.Max, tiles - units, 0) / units)
    else:
        # NB: one tile per unit over the whole k: a partial wave takes as long as a full one
        waves = Ceil(tiles / units)
    # each wave: every unit computes one T_M x T_N tile over the whole k
    return 2 * op.k * tm * tn * units * waves


def _launch(n: int, chip: Hardware) -> sp.Expr:
    """Host time that paces ``n`` kernels without CUDA graphs (0 with them)."""
    return sp.Integer(0) if chip.runtime.cuda_graphs else n * chip.launch_time


def _backward_peak(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType]) -> sp.Expr:
    """``peak`` for a forward GEMM; for a backward one (a dgrad or wgrad, :meth:`Matmul.backward`)
    ``peak`` times the chip's backward fraction in ``dtype`` (:meth:`Hardware.gemm_backward_efficiency_for`:
    split accumulation of 8-bit GEMMs)."""
    if not op.name.endswith((DGRAD, WGRAD)):
        return peak
    return peak * chip.gemm_backward_efficiency_for(dtype)


GEMM_OUTPUT_BYTES = 2
"""Bytes per output element a narrow-format GEMM kernel writes: bf16, whatever its inputs' format
(TensorRT-LLM's FP8 and NVFP4 GEMMs return a 16-bit activation; the next GEMM quantizes it again,
the ``quantize_bytes`` pass that reads 2 bytes per element)."""


def _epilogue(op: Matmul, chip: Hardware, dtype: Optional[DataType]) -> sp.Expr:
    """Seconds a GEMM in whole waves of tiles without split-K (:meth:`Hardware.gemm_tiling`: the
    4-bit kernels' ``matmul_tile_4bit``) spends writing its output after its main loop:
    ``2 b m n / (B eta_gmem)``, the ``b m n`` outputs in bf16 (:data:`GEMM_OUTPUT_BYTES`); 0 for
    the split-K kernels, whose output write overlaps (the roofline's ``max``), and on a chip
    without ``compute_units`` (no tiles: the ideal chip's roofline).

    NB: each thread block computes one tile over the whole k, then stores it; the store is not
    hidden behind another tile's main loop. Checked on the NVFP4 tables (B200, B300, GB200): at
    ``k = 1024`` and ``m >= 128`` they run up to twice the roofline ``max`` (the output write as
    long as the main loop), and with the write serial the fitted rows' error falls from 7.8, 14.3
    and 7.9 % to 4.3, 10.4 and 4.8 % (docs/explanation/time-model.md).

    >>> from symcost import hardware
    >>> b200, mm = hardware.get("B200"), Matmul("w", m=1, n=1024, k=4096, dtype_bytes=sp.Rational(1, 2))
    >>> _epilogue(mm, b200, DataType.NVFP4) == 2 * 1024 / b200.gemm_hbm_bandwidth
    True
    >>> _epilogue(mm, b200, DataType.BF16)
    0
    """
    _, split_k = chip.gemm_tiling(dtype)
    if split_k or chip.compute_units is None:  # no tiles (the ideal chip): the roofline's overlap
        return sp.Integer(0)
    return GEMM_OUTPUT_BYTES * op.batch * op.m * op.n / chip.gemm_hbm_bandwidth


def _counted_output(op: Matmul, epilogue: sp.Expr) -> sp.Expr:
    """The output bytes ``hbm_bytes`` counts (in the op's dtype), where the epilogue times the
    write instead (:func:`_epilogue` nonzero), else 0."""
    return sp.Integer(0) if epilogue == 0 else op.dtype_bytes * op.batch * op.m * op.n


@kernel("gemm")
def gemm(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType]) -> OpTime:
    """A GEMM: ``max(C / peak + V / F_vec, bytes / (B eta_gmem)) + n q m k / B + W + n t_gemm``
    (``C`` from :func:`matmul_compute_flops`, ``n`` its kernels, ``q`` and ``t_gemm`` of the
    dtype's format class, ``W`` the output write of a kernel in whole waves without split-K,
    :func:`_epilogue`, whose output bytes then leave ``bytes``)."""
    assert isinstance(op, Matmul)
    n = kernels(op)
    compute = matmul_compute_flops(op, chip, dtype) / _backward_peak(op, chip, peak, dtype) \
        + op.vector_flops / chip.vector_flops
    epilogue = _epilogue(op, chip, dtype)
    memory = (op.hbm_bytes - _counted_output(op, epilogue)) / chip.gemm_hbm_bandwidth
    # NB: every GEMM of an 8-bit model is costed as an 8-bit one, its fixed time and quantizing
    # pass included, products of two activations (weight=False) and the router and LM head too,
    # which engines often keep in bf16 (docs/conventions.md §17); the symbolic chip binds one
    # GEMM class per dtype
    fmt = dtype
    # NB: a fused op (no kernel of its own) still has its output written by its partner's kernel
    return OpTime(compute, memory, n * chip.gemm_time_for(fmt), _launch(n, chip), _quantize(op, chip, fmt) + epilogue)


def _quantize(op: Matmul, chip: Hardware, dtype: Optional[DataType]) -> sp.Expr:
    """Seconds a GEMM's kernels spend quantizing its input: ``n q b m k / B`` (``q`` of the
    dtype's format class, 0 at 16 bits).

    NB: the input (m x k per product) is quantized once per kernel: a fused op (the up
    projection inside gate_up) shares its partner's quantized input."""
    return kernels(op) * chip.quantize_bytes_for(dtype) * op.batch * op.m * op.k / chip.hbm_bandwidth


SCATTERED_OUTPUTS = frozenset({"down", "fc2"})
"""Grouped GEMMs (by the last part of the op's name) whose output leaves through the MoE epilogue's
scatter: the experts' second projection, whose rows go back to their tokens' order (and, with
TensorRT-LLM's finalize fusion, are scaled by the routing weight and added into the token's row
with atomic reductions) instead of a tiled store (:func:`grouped_gemm`)."""


@kernel("gemm.grouped")
def grouped_gemm(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType]) -> OpTime:
    """A grouped GEMM (MoE experts, one kernel over every local expert): the dense GEMM's compute
    at ``eta_gg`` of its rate, its bytes at the grouped kernels' own HBM fraction,
    ``max(C / eta_gg, bytes / (B eta_ggmem)) + serial + n t_gg``; the experts' second projection
    (:data:`SCATTERED_OUTPUTS`) on a chip with tiles and ``eta_ggout`` (``grouped_gemm_output_efficiency``)
    set writes its ``b m n`` outputs in bf16 (its own format where wider) after its main loop,
    ``+ max(2, e) b m n / (B eta_ggout)``, its output bytes then out of ``bytes``. Under an
    engine that runs one GEMM per expert (``Runtime.grouped_gemm == "per_expert"``), the dense
    GEMM's terms with the floor and the host's launch paid ``batch`` times (an op fused into its
    partner's kernel, the ``up`` half of a gate-and-up fc1, adds none).

    NB: CUTLASS's grouped kernels, which TensorRT-LLM's MoE GEMMs are, schedule whole tiles with the group
    scheduler, never stream-K ("Ptr-Array Cooperative and Grouped Gemm Cooperative kernel only supports the
    default scheduler", include/cutlass/gemm/kernel/ sm90_gemm_array_tma_warpspecialized_cooperative.hpp; SM100:
    PersistentTileSchedulerSm100Group), and the second projection's epilogue scatters each row to its token:
    TensorRT-LLM's finalize fusion (``mayHaveFinalizeFused()`` in
    cpp/tensorrt_llm/kernels/cutlass_kernels/include/ moe_kernels.h: TMA warp-specialized GEMMs, SM90 at
    NVIDIA/TensorRT-LLM 04f0e58, SM90 and later in the copy FlashInfer vendors) scales each row by its routing
    weight and adds it into the token's output row with ``red.global.add`` of bf16 pairs
    (``SM90_RED_ADD_NOFTZ_BF16x2_V4``, cutlass_extensions/epilogue/collective/epilogue_moe_finalize.hpp): the
    write is not hidden behind the next tile's main loop. The MoE layer keeps its combine op as well: without it
    B200 fitted no better than 11.9 % (two output rates tried), against 10.9 % with it, before the same-work rule.
    Checked on the MoE tables: from 4,096 tokens up, at 256 columns per GPU or fewer and EP 1, each further
    token-expert pair costs ``h`` times 3.2 to 3.5 ps on B200 and 5.1 to 6.3 ps on H100, where the output in the
    roofline counted 2.0 to 2.3 and 3.8 to 4.2 ps (docs/explanation/fidelity.md).

    >>> from symcost import hardware
    >>> from symcost.core.ops import Matmul
    >>> b200 = hardware.get("B200")
    >>> down = Matmul("experts.down", m=4, n=4096, k=1024, dtype_bytes=2, batch=8, grouped=True)
    >>> op_time = grouped_gemm(down, b200, b200.effective_peak(DataType.BF16), DataType.BF16)
    >>> op_time.serial == 2 * 8 * 4 * 4096 / (b200.hbm_bandwidth * b200.grouped_gemm_output_efficiency)
    True
    """
    assert isinstance(op, Matmul)
    dense = gemm(op, chip, peak, dtype)
    if chip.runtime.grouped_gemm == "per_expert":
        n = 0 if any(part in FUSED_OPS for part in op.name.split(".")) else op.batch
        serial = dense.serial if n != 0 else _epilogue(op, chip, dtype)  # its partner writes its output
        return OpTime(dense.compute, dense.memory, n * chip.gemm_time_for(dtype), _launch(1, chip) * n, serial)
    eta = chip.grouped_gemm_efficiency_for(dtype)
    fixed = kernels(op) * chip.grouped_gemm_time_for(dtype)
    # NB: a forward grouped GEMM takes its input quantized (GroupedInputQuantize, the activation
    # kernel); the backward products keep the dense GEMM's own pass
    serial = dense.serial if op.name.endswith((DGRAD, WGRAD)) else dense.serial - _quantize(op, chip, dtype)
    rate = chip.grouped_gemm_output_efficiency
    # NB: no tiles (the ideal chip): every output in the roofline's overlap, as the dense GEMM's;
    # no eta_ggout (A100's SM80 MoE GEMMs store whole tiles into the expanded buffer, the finalize
    # kernel, the MoE layer's combine, scatters; MI300X: no such kernel cited): the tiled store too
    if chip.compute_units is None or rate is None or op.name.split(".")[-1] not in SCATTERED_OUTPUTS:
        written = _counted_output(op, _epilogue(op, chip, dtype))  # timed in dense.serial where nonzero
        memory = (op.hbm_bytes - written) / (chip.hbm_bandwidth * chip.grouped_memory_efficiency)
        return OpTime(dense.compute / eta, memory, fixed, dense.launch, serial)
    outputs = op.batch * op.m * op.n
    memory = (op.hbm_bytes - op.dtype_bytes * outputs) / (chip.hbm_bandwidth * chip.grouped_memory_efficiency)
    # the output in bf16, or in the op's format where wider (fp32): its bytes leave `memory` once,
    # and the scattered write replaces a 4-bit kernel's tile store (_epilogue) in the serial time
    scatter = sp.Max(GEMM_OUTPUT_BYTES, op.dtype_bytes) * outputs / (chip.hbm_bandwidth * rate)
    return OpTime(dense.compute / eta, memory, fixed, dense.launch, serial - _epilogue(op, chip, dtype) + scatter)


@kernel("gemm.grouped.quantize")
def grouped_input_quantize(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType]) -> OpTime:
    """A fused MoE's input quantization (:class:`~symcost.core.ops.GroupedInputQuantize`): for a
    narrow format (``dtype`` below 16 bits) under a fused grouped-GEMM engine, the elementwise
    pass ``bytes / (B eta_mem) + t_k`` over the layer's ``T h`` tokens; nothing at 16 bits, and
    nothing under ``Runtime.grouped_gemm == "per_expert"``, whose GEMMs quantize their own input.

    NB: TensorRT-LLM's fused MoE (the CUTLASS backend the MoE tables time) casts the tokens' input
    to FP8 once, before the permutation (``static_quantize_e4m3_per_tensor`` in
    tensorrt_llm/_torch/modules/fused_moe/ ``quantize_input``; the expansion kernel,
    ``expandInputRowsKernel`` in cpp/tensorrt_llm/kernels/cutlass_kernels/moe_gemm/moe_kernels.cu,
    copies the FP8 rows, converting only to FP4), and the second GEMM's input is cast inside the
    activation kernel (``doActivation`` with the ``fc2`` quantization scale): neither grouped GEMM
    quantizes its permuted rows, :func:`grouped_gemm`. Checked on the MoE tables' FP8 rows (H100):
    the per-GEMM pass over ``P`` permuted rows put the model 1.22x the measured time above 2,048
    tokens; one pass over the ``T`` tokens, 0.99 (docs/explanation/fidelity.md).

    >>> from symcost import hardware
    >>> from symcost.core.ops import GroupedInputQuantize
    >>> h100, x = hardware.get("H100_SXM"), GroupedInputQuantize("q", elements=8, read_bytes=16, write_bytes=8)
    >>> t = grouped_input_quantize(x, h100, h100.effective_peak("fp8_e4m3"), DataType.FP8_E4M3).time
    >>> t == 24 / h100.effective_hbm_bandwidth + h100.kernel_time
    True
    >>> grouped_input_quantize(x, h100, h100.effective_peak("bf16"), DataType.BF16).time
    0
    """
    zero = OpTime(sp.Integer(0), sp.Integer(0))
    if chip.runtime.grouped_gemm == "per_expert":
        return zero
    # NB: the symbolic chip without a dtype: the op's own indicator (bound by the dtype's size)
    narrow = getattr(op, "narrow", sp.Integer(1)) if dtype is None and chip.is_symbolic else sp.Integer(1)
    if narrow == 1 and chip.format_class(dtype) == "16bit" and not (dtype is None and chip.is_symbolic):
        return zero
    t = elementwise(op, chip, peak, dtype)
    return OpTime(t.compute, t.memory, narrow * t.overhead, narrow * t.launch, t.serial)


@kernel("gemm.grouped.prologue")
def expert_map_sort(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType]) -> OpTime:
    """A fused MoE's expert-map sort (:class:`~symcost.core.ops.ExpertMapSort`) under a fused
    grouped-GEMM engine: ``n t_k`` with, under ``Runtime.moe_sort == "tensorrt-llm"``, ``n = 1 + 2 [T > L]``
    kernels for ``T`` rows and the fused path's limit ``L`` (256; 0 where it never applies),
    ``[T > L] = min(1, ceil(max(T - L, 0)))``; under ``"moe-align"`` (vLLM, SGLang)
    ``n = 1 + max([T k >= 1024], [E > 64])`` (:func:`_moe_align_general`); nothing under ``"none"`` or
    ``Runtime.grouped_gemm == "per_expert"`` (Transformer Engine's GEMMs take host-side splits, no
    such kernel).

    NB: TensorRT-LLM's fused MoE (the CUTLASS backend the MoE tables time) sorts the token-expert
    choices in one single-CTA kernel (``fusedBuildExpertMapsSortFirstTokenKernel``, a CUB radix rank)
    for at most 256 tokens, and above that ("Number of tokens %d is greater than 256, which is not
    supported for fused moe prologues", ``fusedBuildExpertMapsSortFirstTokenBlockSize``) falls back to
    ``threeStepBuildExpertMapsSortFirstToken``: ``blockExpertPrefixSumKernel``,
    ``globalExpertPrefixSumKernel`` and ``mergeExpertPrefixSumKernel``, three kernels
    (cpp/tensorrt_llm/kernels/cutlass_kernels/moe_gemm/moe_kernels.cu, ``runMoe``). Each is a small
    kernel at the chip's elementwise floor ``t_k``. Checked on the MoE tables: measured times step up
    by about 2.3 us per call from 256 to 320 tokens in bf16 and FP8 on every chip; with the term the
    FP8 family fits at 9.6 % on B300 (was 10.4 %; docs/explanation/fidelity.md).

    >>> from symcost import hardware
    >>> from symcost.core.ops import ExpertMapSort
    >>> h100 = hardware.get("H100_SXM")
    >>> sort = ExpertMapSort("expert_map_sort", tokens=sp.Integer(320))
    >>> expert_map_sort(sort, h100, h100.effective_peak("bf16"), DataType.BF16).time == 3 * h100.kernel_time
    True
    """
    assert isinstance(op, ExpertMapSort)
    rule = chip.runtime.moe_sort
    if chip.runtime.grouped_gemm == "per_expert" or rule == "none":
        return OpTime(sp.Integer(0), sp.Integer(0))
    tokens = sp.sympify(op.tokens)
    n = 1 + (_moe_align_general(tokens * op.top_k, op.num_experts) if rule == "moe-align"
             else 2 * extreme(sp.Min, 1, Ceil(extreme(sp.Max, tokens - sp.sympify(op.fused_limit), 0))))
    return OpTime(sp.Integer(0), sp.Integer(0), n * chip.kernel_time, sp.Integer(0) if chip.runtime.cuda_graphs
                  else n * chip.launch_time)


MOE_ALIGN_SMALL_PAIRS = 1024
"""vLLM's ``moe_align_block_size`` takes its one-kernel small-batch path while ``topk_ids.numel() <
1024`` (``small_batch_expert_mode``, csrc/moe/moe_align_sum_kernels.cu; the same in SGLang's sgl-kernel)."""

MOE_ALIGN_SMALL_EXPERTS = 64
"""... and ``num_experts <= 64`` (the same condition)."""


def _moe_align_general(pairs: sp.Expr, experts: Any) -> sp.Expr:
    """1 where vLLM's ``moe_align_block_size`` runs its two-kernel general path (``pairs >=`` 1024
    or more than 64 experts), else 0: ``max([P >= 1024], [E > 64])`` with ``[P >= 1024] =
    min(1, ceil(max(P - 1023, 0)))`` for a whole pair count ``P``."""
    many = extreme(sp.Min, 1, Ceil(extreme(sp.Max, pairs - (MOE_ALIGN_SMALL_PAIRS - 1), 0)))
    wide = sp.Piecewise((0, sp.sympify(experts) <= MOE_ALIGN_SMALL_EXPERTS), (1, True))
    return extreme(sp.Max, many, wide)


def _attention_compute(op: Op, chip: Hardware, dtype: Optional[DataType]) -> sp.Expr:
    """The core's matmul FLOPs at the attention kernels' rate, its softmax on the vector units."""
    return op.matmul_flops / chip.attention_peak(dtype) + op.vector_flops / chip.vector_flops


def attention_core(op: Op) -> AttentionCore:
    """The :class:`~symcost.core.ops.AttentionCore` an attention kernel runs: ``op`` itself, or the
    core a wrapper delegates to (``core``: MLA's absorbed decode core; ``forward``: a backward);
    an op of an attention class with neither is a one-line
    :class:`~symcost.errors.ConfigError` (its heads and pairs set terms of the class)."""
    for core in (op, getattr(op, "core", None), getattr(op, "forward", None)):
        if isinstance(core, AttentionCore):
            return core
    raise ConfigError(f"op {op.name!r}: kernel class {op.kernel!r} needs an AttentionCore (or an op wrapping one "
                      "as .core or .forward) for its heads and pairs")


def _exponentials(op: Op, chip: Hardware) -> sp.Expr:
    """Seconds of the softmax's exponentials on the special-function units: one per scored
    (query, key) pair of ``op``'s core, ``batch * heads * pairs / F_exp`` (0 without
    ``attention_exp_rate``)."""
    if chip.attention_exp_rate is None:
        return sp.Integer(0)
    core = attention_core(op)
    return core.batch * core.heads * core.pairs / chip.attention_exp_rate


PREFILL_TILE_Q = 64
"""Query rows one thread block (CTA) of a context attention kernel covers: the Q step of
TensorRT-LLM's fmha_v2 flash-attention kernels, 64 query rows and 128 keys per step
(``fmha_v2_flash_attention_fp16_64_128_S_qkv_128_sm80``, and the same ``64_128_S`` for sm86,
sm87 and sm89, in the cubin list of NVIDIA's TensorRT Edge-LLM,
cpp/kernels/contextAttentionKernels/cubin/fmha_cubin.h); assumed the same for Hopper. NB:
Blackwell's trtllm-gen context kernels step 256 query rows per block (two tiles of 128,
:data:`PINGPONG_TILE`; ``mStepQ`` 256 at head dimensions 64 and 128, 128 at 256); with the
overlapped, whole-tile terms a block of 256 (128 at 256) makes B200's fitted rows worse (9.2 ->
9.4 %, B300 9.0 -> 10.0 %) while its full grid improves (23.0 -> 15.3 %): a lone block runs about
1.25x faster per SM than the loaded chip, for which there is no source yet, so one constant is
kept, the one with a source for the kernels of the other chips (docs/explanation/fidelity.md)."""

PREFILL_MAX_DV = 256
"""Columns of V (and O) one context-attention thread block accumulates at most; a wider head
(``d_v = 512``) is split over ``ceil(d_v / 256)`` blocks, each of which recomputes the whole
``Q K^T``, its softmax and exponentials. Source: an SM100 SM's tensor memory holds 512 columns of
32-bit accumulators (128 lanes; PTX ISA, "Tensor Memory"), of which two 128 x 128 fp32 score tiles
(the two softmax warp groups) take 256, leaving 256 for O; FlashAttention-2 and -3 stop at head
dimension 256 for the same reason (registers). Checked on B200's table: its 270 rows at
``d = 512`` run at 0.55 of the predicted speed at 16 k tokens without the split, 0.78 with it."""


def _dv_blocks(core: AttentionCore) -> sp.Expr:
    """``c = ceil(d_v / 256)``: the thread blocks that share one head's V columns (:data:`PREFILL_MAX_DV`).

    >>> _dv_blocks(AttentionCore("c", head_dim=128)), _dv_blocks(AttentionCore("c", head_dim=512))
    (1, 2)
    """
    return Ceil(sp.sympify(core.d_v) / PREFILL_MAX_DV)


def pingpong(chip: Hardware) -> bool:
    """Whether the chip's context attention kernels overlap their matmuls with their exponentials
    (:data:`~symcost.hardware.chip.PINGPONG_COMPUTE_CAPABILITY`, :attr:`Hardware.attention_pingpong`): its
    ``compute_capability`` is 10.x; other chips (and the unbound chip unless built with one) sum
    them. NB: the summed form elsewhere is an empirical fit of TensorRT-LLM's fmha_v2 kernels'
    tables on Hopper and Ampere, not a property of the hardware: FlashAttention-3 overlaps them on
    H100 too (Shah et al. 2024, §3.1, "pingpong scheduling"). Only a flash (fused) kernel overlaps;
    training's forward on 10.x takes the overlap measured on TensorRT-LLM's kernels for cuDNN's
    without a source; the backward there runs at its own cited share of the peak
    (:func:`attention_backward`).

    >>> from symcost import hardware
    >>> pingpong(hardware.get("B200")), pingpong(hardware.get("B300")), pingpong(hardware.get("H100_SXM"))
    (True, True, False)
    """
    return chip.attention_pingpong


PINGPONG_TILE = 128
"""Query rows and keys of one tile of the SM100 context attention kernels (:func:`pingpong`):
``mTileSizeQ`` 128 and ``mTileSizeKv`` 128 (``mStepKv`` 128) for every ``*Context`` kernel in
``sTllmGenFmhaKernelMetaInfos`` (flashinfer-ai/flashinfer include/flashinfer/trtllm/fmha/cubin/
kernelMetaInfo.h; "Q128Kv128" in the kernel names TensorRT-LLM launches, e.g.
``fmhaSm100fKernel_QkvBfloat16OBfloat16H128PagedKvCausalP64VarSeqQ128Kv128PersistentContext``). A
tile's scores are computed whole, the causal diagonal's and a sliding window's edges masked after:
:func:`whole_tile_pairs`."""


def whole_tile_pairs(core: AttentionCore) -> sp.Expr:
    """(query, key) pairs per head and sequence an SM100 context attention kernel computes, in whole
    tiles of ``T`` = :data:`PINGPONG_TILE` queries by ``T`` keys, its ``s`` = ``q_len`` queries after
    ``o = kv_len - q_len`` cached keys, ``n = ceil(s / T)`` query tiles: causally ``T^2 (n (n - 1) / 2
    + (n - 1) ceil(o / T) + ceil((o + s) / T))`` (``T^2 n (n + 1) / 2`` without cached keys, ``T^2 (n
    (n + 1) / 2 + n o / T)`` where T divides s and o), under a window w ``T^2 (W(n - 1, A + n - 2, B)
    + ceil((o + s) / T) - Max(0, n - 1 + floor((o - w + 1) / T)))`` with ``A = ceil(o / T) + 1``, ``B
    = A - floor((o - w + 1) / T)`` and ``W`` :func:`~symcost.core.ops.window_pairs`. Under context
    parallelism or chunked attention, or without a causal mask, the core's own pairs.

    Derivation: query tile i (0-based) holds the chunk's rows ``iT .. Min((i + 1) T, s) - 1``, at
    positions ``o + iT ..``; its last row sees keys up to ``o + Min((i + 1) T, s) - 1``, so it runs
    key tiles ``0 .. ceil((o + Min((i + 1) T, s)) / T) - 1``. For ``i < n - 1`` that is ``ceil(o /
    T) + i + 1`` tiles, summing to ``n (n - 1) / 2 + (n - 1) ceil(o / T)``; the last tile ends at
    the sequence, ``ceil((o + s) / T)`` tiles (``n`` at ``o = 0``: ``n (n + 1) / 2`` in all). Both
    terms grow with o, so a cached key never makes the prefill cheaper. Under a window the first row
    of tile i reaches back to key ``o + iT - w + 1``, in key tile ``i + floor((o - w + 1) / T)``
    (tile 0 at least), so tile ``i < n - 1`` runs ``Min(A + i, B)`` tiles (``A = ceil(o / T) + 1``,
    ``B`` the width once the window binds), summing to ``W(n - 1, A + n - 2, B)`` (the sum of
    ``Min(j, B)`` over ``j = A .. A + n - 2``), and the last ``ceil((o + s) / T) - Max(0, n - 1 +
    floor((o - w + 1) / T))``; at ``o = 0`` (``A = 1``, ``B = K + 1``, ``K = ceil((w - 1) / T)``)
    the sum of ``Min(i, K) + 1``, ``W(n, n, K + 1)``. 300 tokens: n = 3, 6 tiles, 98,304 pairs (the
    mask keeps 45,150); after 212 cached keys 3 + 2 * 2 + 4 = 11 tiles, 180,224 pairs. A window of
    128 over 512 tokens: 1 + 2 + 2 + 2 = 7 tiles, 114,688 pairs (the window keeps 57,408).

    >>> whole_tile_pairs(AttentionCore("c", q_len=300, kv_len=300, causal=True, decode=False))
    98304
    >>> whole_tile_pairs(AttentionCore("c", q_len=300, kv_len=512, causal=True, decode=False))
    180224
    >>> whole_tile_pairs(AttentionCore("c", q_len=512, kv_len=512, causal=True, decode=False, window=128))
    114688
    """
    if not core.causal or core.attention_chunk is not None or sp.sympify(core.context_parallel) != 1:
        return core.pairs
    s = sp.sympify(core.q_len)
    offset = sp.sympify(core.kv_len) - s
    n = Ceil(s / PINGPONG_TILE)
    last = Ceil((offset + s) / PINGPONG_TILE)
    if core.window is None:
        return PINGPONG_TILE**2 * (n * (n - 1) / 2 + (n - 1) * Ceil(offset / PINGPONG_TILE) + last)
    # NB: floor(x) = -ceil(-x): the key tile of the first row's first key, relative to the query tile
    back = -Ceil((sp.sympify(core.window) - 1 - offset) / PINGPONG_TILE)
    first, width = Ceil(offset / PINGPONG_TILE) + 1, Ceil(offset / PINGPONG_TILE) + 1 - back
    return PINGPONG_TILE**2 * (window_pairs(n - 1, first + n - 2, width) + last
                               - extreme(sp.Max, 0, n - 1 + back))


def whole_tiles(op: Op, chip: Hardware) -> bool:
    """Whether ``chip`` computes the scores of ``op``'s core in whole tiles
    (:func:`whole_tile_pairs`): a flash core on a chip whose kernels overlap (:func:`pingpong`)
    and that has its SM count (``compute_units``; the ideal chip, without one, is the roofline).
    The tile count is affine in the cached keys only in steps of :data:`PINGPONG_TILE` and
    without a window (symcost.plan.inference.chunk_attention_time sums chunks in closed form only then).

    >>> from symcost import hardware
    >>> core = AttentionCore("c", q_len=300, kv_len=300, causal=True, decode=False)
    >>> whole_tiles(core, hardware.get("B200")), whole_tiles(core, hardware.get("B200").ideal())
    (True, False)
    """
    return pingpong(chip) and attention_core(op).flash and chip.compute_units is not None


def _scores_compute(op: Op, chip: Hardware, dtype: Optional[DataType], tiled: bool = True) -> sp.Expr:
    """Seconds of a context attention kernel's work spread evenly over the chip: ``F / (F_16
    eta_attn) + V / F_vec + P / F_exp + (c - 1) R`` (:func:`_attention_compute`,
    :func:`_exponentials`; ``R`` the ``Q K^T``, softmax and exponentials each of the ``c - 1``
    further V slices' blocks recomputes, :func:`_dv_blocks`); where the kernel overlaps its matmuls
    with its exponentials (:func:`pingpong`; a flash kernel only: an eager one, ``flash`` False,
    runs its matmuls and softmax as kernels of their own, summed) ``(Max(F / (F_16 eta_attn) + (c - 1) F_qk / (F_16
    eta_attn), c P / F_exp) + c V / F_vec) P_T / P``, the softmax's other vector work (max, sum,
    rescale) in the same warps as the exponentials but not on the special-function units, over the
    ``P_T`` pairs of its whole tiles (:func:`whole_tile_pairs`; on a chip with ``compute_units``,
    as the other tile terms: the ideal chip has none; not with ``tiled`` False, as for the
    longest block's own pairs, :func:`longest_tile`) of the core's ``P`` (no ``Max`` where the
    chip has no exponential rate: the matmuls alone). Every term is
    one per scored pair, so it is the core's pairs times the time of one pair.

    Derivation (one causal head of 4 tokens: 10 pairs, ``d = 128``, ``c`` = 1): ``F = 4 * 10 *
    128 = 5120``; with ``F_16 eta_attn = 5120`` FLOP/s and ``F_exp = 5`` per second the matmuls
    take 1 s and the 10 exponentials 2 s: summed 3 s plus the vector work, overlapped 2 s plus it,
    times the one whole tile's 128 * 129 / 2 = 8,256 pairs over 10.
    """
    core = attention_core(op)
    exps = _exponentials(op, chip)
    blocks = _dv_blocks(core)
    qk = core.qk_flops / chip.attention_peak(dtype)
    if pingpong(chip) and core.flash:
        matmuls = op.matmul_flops / chip.attention_peak(dtype) + (blocks - 1) * qk
        both = matmuls if exps == 0 else extreme(sp.Max, matmuls, blocks * exps)
        per_pairs = both + blocks * op.vector_flops / chip.vector_flops
        # NB: tiles only where the chip has its SM count (the ideal chip, without one, is the roofline)
        # and not for the last block's own pairs (longest_tile: one query per row, its keys untiled)
        pairs = core.pairs
        tiles = whole_tile_pairs(core) if tiled and whole_tiles(op, chip) else pairs
        return per_pairs if tiles == pairs else per_pairs * tiles / pairs
    # NB: each further V slice's block recomputes the scores (Q K^T at d_qk), their softmax and exponentials
    redo = (blocks - 1) * (qk + core.vector_flops / chip.vector_flops + exps)
    return _attention_compute(op, chip, dtype) + exps + redo


def last_block(core: AttentionCore) -> AttentionCore:
    """The (query, key) pairs of a context attention kernel's last thread block as a core of their
    own: ``T`` = :data:`PREFILL_TILE_Q` queries, one head, each scored against the keys the core's
    last query sees (its pairs at a ``q_len`` of 1, the whole sequence on this chip): ``T kv_len``
    (causal or not, without a window), ``T Min(kv_len, w)`` under a window w, ``T (((kv_len - 1)
    mod c) + 1)`` under chunked attention of chunk c (the last chunk's keys).

    Derivation: with the queries in blocks of ``T`` the last block holds the last ``T`` queries;
    under a window each sees at most ``w`` keys (``T w`` pairs once ``kv_len >= T + w - 1``),
    causally without one the last sees all ``kv_len`` keys and the block's key loop runs to it
    (the tiles it skips are those of the diagonal, fewer than ``T`` keys per query). A context-
    parallel chip holds a chunk at the end of the sequence, so its last query sees them all too.

    >>> window = AttentionCore("c", batch=2, heads=8, q_len=32768, kv_len=32768, causal=True, window=4096)
    >>> last_block(window).batch * last_block(window).heads * last_block(window).pairs   # 64 * 4096
    262144
    """
    return replace(core, batch=PREFILL_TILE_Q, heads=1, kv_heads=1, q_len=1, context_parallel=1)


def longest_tile(op: Op, chip: Hardware, dtype: Optional[DataType]) -> sp.Expr:
    """Seconds a context attention kernel's longest thread block takes on one of the chip's ``N``
    SMs, a floor under the kernel's time: ``Min(N C, N C_T / c)`` with ``C`` the kernel's work
    spread over the chip (:func:`_scores_compute`), ``C_T`` that of its last block's pairs
    (:func:`last_block`) and ``c`` the blocks that split a head's V columns (:func:`_dv_blocks`);
    0 without ``compute_units``.

    One SM runs a block at ``1/N`` of the chip's rate, so the block of ``T`` =
    :data:`PREFILL_TILE_Q` queries takes ``N`` times its own pairs' time at the chip's rate, of
    which a V slice's block does ``1/c`` (its ``P V`` share and the recomputed scores). No block
    holds more than the whole kernel's pairs: at most ``N C``, which is 0 for no tokens.

    Derivation (causal prefill of ``s`` tokens, one sequence, one head, ``P = s (s + 1) / 2``
    pairs, ``c`` = 1): ``N C_T / C = N T s / P = 2 N T / (s + 1)``; 16,383 tokens, 132 SMs:
    ``2 * 132 * 64 / 16,384 = 33/32`` times the even share. Under a window of 4,096 at 32,768
    tokens the last block holds ``64 * 4096`` of 125,831,168 pairs: ``132 * 64 * 4096`` is
    below them, so the even share binds. (On an SM100 chip the even share counts whole tiles,
    :func:`whole_tile_pairs`.)

    >>> from symcost import hardware
    >>> chip = hardware.get("H100_SXM")
    >>> core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=16383, kv_len=16383, head_dim=128,
    ...                      causal=True, decode=False)
    >>> longest_tile(core, chip, DataType.BF16) / _scores_compute(core, chip, DataType.BF16)
    33/32
    """
    if chip.compute_units is None:
        return sp.Integer(0)
    core = attention_core(op)
    units = sp.sympify(chip.compute_units)
    block = _scores_compute(last_block(core), chip, dtype, tiled=False) / _dv_blocks(core)
    return extreme(sp.Min, units * _scores_compute(op, chip, dtype), units * block)


@kernel("attn.prefill")
def attention_prefill(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType]) -> OpTime:
    """Prefill (context) attention: ``max(Max(C, L), bytes / (B eta_mem)) + io / (B eta_aio) +
    t_attn`` with ``C = F / (F_16 eta_attn) + V / F_vec + P / F_exp + (c - 1) R`` the work spread
    over the chip (:func:`_scores_compute`, :func:`_exponentials` ``P / F_exp``), ``L`` the longest
    thread block's time on one SM (:func:`longest_tile`), ``c`` the blocks that split a head's V
    columns (:func:`_dv_blocks`), each of the ``c - 1`` extra ones recomputing ``Q K^T``, its
    softmax and exponentials (``R``), ``io`` the new tokens' Q, K, V and O bytes (a pass of its
    own: RoPE and the KV-cache write); without ``attention_io_efficiency`` no separate pass."""
    n = kernels(op)
    io = sp.Integer(0)
    if chip.attention_io_efficiency is not None:
        io = n * op.new_io_bytes / (chip.hbm_bandwidth * chip.attention_io_efficiency)  # type: ignore[attr-defined]
    compute = _scores_compute(op, chip, dtype)
    if chip.compute_units is not None:
        compute = extreme(sp.Max, compute, longest_tile(op, chip, dtype))
    return OpTime(compute, op.hbm_bytes / chip.effective_hbm_bandwidth, n * chip.prefill_attention_time,
                  _launch(n, chip), io)


def grouped_heads(op: Op) -> sp.Expr:
    """``G``: 1 when the attention core (:func:`attention_core`) groups several query heads per KV
    head (grouped-query, multi-query or MLA's absorbed attention), 0 when each query head has its
    own (multi-head attention): ``Min(heads / kv_heads - 1, 1)``, exact for a whole number of query
    heads per KV head.

    >>> from symcost.core.ops import AttentionCore
    >>> grouped_heads(AttentionCore("c", heads=32, kv_heads=8)), grouped_heads(AttentionCore("c", heads=8, kv_heads=8))
    (1, 0)
    """
    core = attention_core(op)
    return extreme(sp.Min, sp.sympify(core.heads) / core.kv_heads - 1, 1)


def eight_bit_cache(op: Op) -> sp.Expr:
    """``E``: 1 for a KV cache (:func:`attention_core`'s) of at most one byte per element, 0 for 16
    bits and wider:
    ``Min(Max(2 - e_kv, 0), 1)``, exact for the cache dtypes (1/2, 1, 2 or 4 bytes).

    >>> from symcost.core.ops import AttentionCore
    >>> eight_bit_cache(AttentionCore("c", kv_dtype_bytes=1)), eight_bit_cache(AttentionCore("c"))
    (1, 0)
    """
    return extreme(sp.Min, extreme(sp.Max, 2 - sp.sympify(attention_core(op).e_kv), 0), 1)


MHA_THREADS_PER_BLOCK = 256
"""Threads of one block of TensorRT-LLM's masked multi-head attention kernel: ``THDS_PER_BLOCK`` 256
(``mmha_launch_kernel_dispatch``,
cpp/tensorrt_llm/kernels/decoderMaskedMultiheadAttention/decoderMaskedMultiheadAttentionLaunch.h), one
block per SM. NB: ``mmha_launch_kernel_ex`` widens a block to 512 or 1024 threads where the occupancy
query (``cudaOccupancyMaxActiveBlocksPerMultiprocessor``) allows several 256-thread blocks per SM; the
measured tables show one per SM: on H200's 132 SMs, 8 sequence-heads at 8,192 keys take two waves of
``8 ceil(132/8) = 136`` blocks (27.5 us), 4 at 16,384 keys one wave of 132 (17.3 us, the same bytes;
docs/explanation/fidelity.md), which 1024-thread blocks (at least 512 keys each: 128 blocks, one wave
both) would not."""

MHA_KEY_LOOP_UNROLL = 8
"""Keys per thread group of one pass of the kernel's key loop: ``seq_len_per_kv_loop =
divUp(block_size, threads_per_value) * 8`` ("unroll size is default at 8", ``multi_block_grid_setup``,
decoderMaskedMultiheadAttentionLaunch.h; ``K_LOOP_UNROLL = 8``, decoderMaskedMultiheadAttentionTemplate.h)."""


def mha_keys_per_block(head_dim: Any) -> sp.Expr:
    """Keys one block of the masked multi-head kernel covers at least (``multi_block_grid_setup``'s
    ``seq_len_per_kv_loop``): ``8 ceil(256 / threads_per_value)`` with ``threads_per_value = dh_max *
    2 / 16`` for the 16-bit compute type and ``dh_max = next_power_of_two(max(d, 32))``
    (``threads_per_value<T>``, ``dh_max``, decoderMaskedMultiheadAttentionTemplate.h).

    >>> mha_keys_per_block(128), mha_keys_per_block(64), mha_keys_per_block(80), mha_keys_per_block(256)
    (128, 256, 128, 64)
    """
    d = sp.sympify(head_dim)
    if d.is_Integer:
        dh_max: sp.Expr = sp.Integer(1 << (max(int(d), 32) - 1).bit_length())
    else:
        dh_max = 2 ** sp.ceiling(sp.log(extreme(sp.Max, d, 32), 2))
    return MHA_KEY_LOOP_UNROLL * Ceil(MHA_THREADS_PER_BLOCK / (dh_max * 2 / 16))


def _mha_elements(op: Op, chip: Hardware) -> sp.Expr:
    """Seconds a multi-head decode kernel's thread blocks spend on the cached elements on the CUDA
    cores (0 for a grouped core, :func:`grouped_heads` ``G`` 1, and without ``mha_decode_rate``):
    ``(1 - G) W N ceil(s / T) (d + d_v) / R_mha``.

    TensorRT-LLM's masked multi-head kernel runs one block per (sequence, head) and, below one
    block per SM (``b h < N``), splits each sequence over ``T = Min(ceil(N / (b h)), ceil(s / L))``
    blocks (multi-block mode: as many as fill the ``N`` SMs once, each at least ``L`` =
    :func:`mha_keys_per_block` keys, 128 at head_dim 128, 256 at 64); the ``b h T`` blocks run in
    ``W = ceil(b h T / N)`` waves of one block per SM (:data:`MHA_THREADS_PER_BLOCK`), each block
    working through ``ceil(s / T)`` keys of ``d + d_v`` elements at ``R_mha / N`` elements per
    second. Without ``compute_units`` (no SM count): ``N_kv / R_mha``, the ``N_kv`` cached K and V
    elements at the chip's whole rate.

    Derivation of the limits: with ``b h`` a multiple of ``N`` (``T`` = 1, ``W = b h / N``) the term
    is ``b h s (d + d_v) / R_mha = N_kv / R_mha``; one sequence and head of 128 at 16,384 keys on
    132 SMs splits into ``T = 128`` blocks of 128 keys in one wave, ``132 * 128 * 256 / R_mha``.
    """
    if chip.mha_decode_rate is None:
        return sp.Integer(0)
    core = attention_core(op)
    multi_head = 1 - grouped_heads(op)
    width = core.head_dim + core.d_v
    if chip.compute_units is None:
        return multi_head * core.kv_bytes / core.e_kv / chip.mha_decode_rate
    units, heads, keys = sp.sympify(chip.compute_units), core.batch * core.heads, sp.sympify(core.keys_read)
    split = extreme(sp.Min, Ceil(units / heads), Ceil(keys / mha_keys_per_block(core.head_dim)))
    waves = Ceil(heads * split / units)
    return multi_head * waves * units * Ceil(keys / split) * width / chip.mha_decode_rate


@kernel("attn.decode")
def attention_decode(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType]) -> OpTime:
    """Decode attention over the KV cache: ``max(F / (F_16 eta_attn) + V / F_vec + (1 - G) N_kv /
    R_mha, bytes / (B eta_kv) + t_ramp Min(1, bytes / M_ramp)) + (1 - G E) t_dec + G E t_dec8``
    (:func:`_decode_ramp`, :func:`grouped_heads` ``G``,
    :func:`eight_bit_cache` ``E``, :func:`_mha_elements` ``N_kv / R_mha`` with the thread blocks'
    waves over the SMs); without
    ``grouped_decode_time_8bit`` every decode kernel's floor is ``t_dec``, without
    ``mha_decode_rate`` no element term."""
    n = kernels(op)
    floor = chip.decode_attention_time
    if chip.grouped_decode_time_8bit is not None:
        grouped_8bit = grouped_heads(op) * eight_bit_cache(op)
        floor = (1 - grouped_8bit) * floor + grouped_8bit * chip.grouped_decode_time_8bit
    return OpTime(_attention_compute(op, chip, dtype) + _mha_elements(op, chip),
                  op.hbm_bytes / chip.attention_hbm_bandwidth + _decode_ramp(op, chip), n * floor, _launch(n, chip))


def _decode_ramp(op: Op, chip: Hardware) -> sp.Expr:
    """Seconds a decode kernel loses to the ramp of its loads: ``t_ramp Min(1, bytes / M_ramp)``
    (0 without ``decode_ramp_time``; without ``decode_ramp_bytes`` the whole ``t_ramp``)."""
    if chip.decode_ramp_time is None:
        return sp.Integer(0)
    if chip.decode_ramp_bytes is None:
        return sp.sympify(chip.decode_ramp_time)
    return chip.decode_ramp_time * extreme(sp.Min, 1, op.hbm_bytes / chip.decode_ramp_bytes)


def _dropout_vector(core: AttentionCore) -> sp.Expr:
    """Vector FLOPs of a flash backward's dropout: ``2 * 2 b h P`` with dropout (the backward's
    factor 2 of the forward's mask multiply and scale per pair, :data:`VECTOR_FLOPS`), else 0.

    >>> _dropout_vector(AttentionCore("c", batch=1, heads=1, q_len=2, kv_len=2, causal=True, dropout=True))
    12
    """
    if not core.dropout:
        return sp.Integer(0)
    return BACKWARD_VECTOR_FACTOR * core.batch * core.heads * core.pairs * VECTOR_FLOPS["dropout"]


@kernel("attn.backward")
def attention_backward(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType]) -> OpTime:
    """The attention core's backward: ``max(C, bytes / (B eta_mem)) + t_attn`` with, on a chip of
    compute capability 10.x (:func:`pingpong`) for a flash core, ``C = F_b / (F_16 eta_abpk) + D /
    F_vec`` and ``cp b h t_abwd`` for ``t_attn``: the whole kernel at its own share of the 16-bit peak
    (:attr:`Hardware.attention_backward_peak_efficiency`; unset: refused) after ``cp b h t_abwd``
    (:attr:`Hardware.backward_attention_time` per sequence and query head of a call, ``cp`` calls
    under ring context parallelism), the two fitted together on cuDNN's published backward rows of
    one release from 2k to 32k tokens (:mod:`symcost.hardware.cudnn`: the rate's length ramp), its
    exponentials and softmax inside that rate, ``D`` dropout's vector work
    (:func:`_dropout_vector`, off in the cited benchmark);
    elsewhere ``C = F_b / (F_16 eta_attn eta_abwd) + V / F_vec + (F_b / F_f) P / (F_exp eta_abwd)``:
    the forward's summed time per matmul FLOP (``F_f`` the forward's), exponentials included, at
    ``eta_abwd`` of its rate, over the core's own pairs ``P`` (FlashAttention-3's backward over
    forward FLOP/s). On 10.x the forward's ``eta_attn`` is a fit of TensorRT-LLM's inference
    kernels under the overlapped form (:func:`pingpong`): the backward kernel (cuDNN's, which
    Transformer Engine runs) is another kernel, measured on its own. An eager backward reads the
    stored probabilities (no exponential term) and keeps the forward-relative form, as does the
    ideal chip (:meth:`Hardware.ideal`: a roofline, not a measured kernel)."""
    n = kernels(op)
    forward = attention_core(op)
    fixed = n * chip.prefill_attention_time
    memory = op.hbm_bytes / chip.effective_hbm_bandwidth
    if forward.flash and pingpong(chip) and not chip.is_ideal:
        # NB: the cited figure is matmul FLOPs over the kernel's measured time (softmax and
        # exponentials inside it), so only what it ran without is added: dropout (off in the cited
        # benchmark, cudnn-frontend benchmark_single_sdpa.py), its vector work as on H100; the ideal
        # chip (the roofline) keeps the summed form, its matmuls at the peak and its vector work at F_vec
        if chip.attention_backward_peak_efficiency is None:
            raise ConfigError(f"{chip.name}: attention_backward_peak_efficiency must be set on a chip of "
                              f"compute capability {chip.compute_capability} (its flash backward's share of the "
                              "16-bit peak; B200's is 263/500)")
        compute = op.matmul_flops / chip.attention_backward_peak(dtype) + _dropout_vector(forward) / chip.vector_flops
        # NB: t_abwd is per (sequence, query head) of one call (symcost.hardware.cudnn: the kimi/dsv3
        # rows scale with b h); Transformer Engine's ring context parallelism runs one fused_attn_bwd
        # per ring step, cp per layer, each over the chip's b h (AttnFuncWithCPAndKVP2P.backward,
        # transformer_engine/pytorch/attention/dot_product_attention/context_parallel.py, d0067d0)
        per_call = forward.batch * forward.heads * forward.context_parallel * chip.backward_attention_time
        return OpTime(compute, memory, n * per_call, _launch(n, chip))
    eta = chip.attention_backward_efficiency
    # NB: eta_abwd is a whole-kernel ratio (FlashAttention-3's backward over forward FLOP/s), so
    # the backward spends the forward's time per matmul FLOP, its exponentials' included, over eta_abwd:
    # F_b / F_f times the forward's P / F_exp; an eager backward reads the stored probabilities
    exps = (op.matmul_flops / forward.matmul_flops * _exponentials(forward, chip) / eta if forward.flash
            else sp.Integer(0))
    compute = op.matmul_flops / (chip.attention_peak(dtype) * eta) + exps + op.vector_flops / chip.vector_flops
    return OpTime(compute, memory, fixed, _launch(n, chip))


@kernel("host.sync")
def host_sync(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType]) -> OpTime:
    """A device-to-host synchronisation: the engine's ``moe_sync_time``, nothing else."""
    return OpTime(sp.Integer(0), sp.Integer(0), chip.runtime.moe_sync_time)


@kernel("elementwise")
def elementwise(op: Op, chip: Hardware, peak: sp.Expr, dtype: Optional[DataType]) -> OpTime:
    """An elementwise or reduction pass (norms, activations, softmax of eager attention, the MoE
    permutations): ``max(M / peak + V / F_vec, bytes / (B eta_mem)) + t_k``, ``M`` any matmul
    FLOPs it carries."""
    n = kernels(op)
    compute = op.matmul_flops / peak + op.vector_flops / chip.vector_flops
    return OpTime(compute, op.hbm_bytes / chip.effective_hbm_bandwidth, n * chip.kernel_time, _launch(n, chip))

"""Engine profiles: what a serving or training engine adds around the kernels.

A :class:`Runtime` says whether kernels are replayed from CUDA graphs, how long each inference
step spends outside the model, how the engine counts decode steps, which all-reduce it runs and
the chip fields its own kernels were measured at. Named profiles are data files, one per backend
and version (``symcost/hardware/engines/``, read by :mod:`symcost.hardware.engines`);
``"neutral"`` is the default of the realistic chips.

>>> runtime("ideal").cuda_graphs
True
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Mapping

import sympy as sp
from pydantic import BaseModel, BeforeValidator, ConfigDict

from ..errors import ConfigError
from .serving import ServingDefaults
from .validate import Seconds, Share

__all__ = ["IDEAL", "MIB", "Overrides", "Runtime", "RUNTIMES", "VLLM_ALLREDUCE_SIZES", "VLLM_CUSTOM_MAX", "register",
           "NCCL_TUNING", "runtime", "runtimes", "vllm_symm_windows"]

MIB = 2**20
"""A mebibyte (vLLM's ``MiB``)."""

VLLM_ALLREDUCE_SIZES: dict[str, tuple[dict[int, int], dict[int, int]]] = {
    "9.0": ({2: 64 * MIB, 4: 32 * MIB, 6: MIB // 2, 8: MIB // 4}, {2: 64 * MIB, 4: 32 * MIB, 6: 64 * MIB, 8: 64 * MIB}),
    "10.0": ({2: 2 * MIB, 4: 2 * MIB, 6: MIB, 8: MIB}, {2: 8 * MIB, 4: 32 * MIB, 6: 128 * MIB, 8: 128 * MIB}),
    "10.3": ({2: 4 * MIB, 4: 4 * MIB, 6: 8 * MIB, 8: 4 * MIB}, {2: 4 * MIB, 4: 32 * MIB, 6: 32 * MIB, 8: 64 * MIB}),
}
"""vLLM's all-reduce size table per compute capability: ``(custom all-reduce's max_size, symmetric
memory's max_size)`` in bytes per world size (vllm/distributed/device_communicators/
all_reduce_utils.py, ``CUSTOM_ALL_REDUCE_MAX_SIZES`` and ``SYMM_MEM_ALL_REDUCE_MAX_SIZES``, as read
at vllm-project/vllm 00d618a; the 10.3 rows match B300's 0.24.0 table, whose two-shot runs to
4 MiB on 8 GPUs). A capability not listed has no symmetric-memory path (``SymmMemCommunicator``
disables itself) and the custom all-reduce's default ``max_size`` (:data:`VLLM_CUSTOM_MAX`).
Here, beside the profiles, because the chip's :attr:`~symcost.hardware.Hardware.structure` reads it
too; :mod:`symcost.hardware.timing` re-exports it."""
VLLM_CUSTOM_MAX = 8 * MIB
"""``CustomAllreduce(max_size=8192 * 1024)``: the custom all-reduce's buffer without symmetric memory."""

NCCL_TUNING: dict[str, tuple[sp.Expr, sp.Expr]] = {
    "8.0": (sp.Rational(877, 10), 12 * sp.Integer(20)),
    "9.0": (sp.Integer(141), 12 * sp.Rational(367, 10)),
    "10.0": (sp.Integer(282), 16 * sp.Rational(345, 10)),
    "10.3": (sp.Integer(282), 16 * sp.Rational(345, 10)),
}
"""Per compute capability, NCCL's caps in GB/s on one node's ring (NVIDIA/nccl src/graph/tuning.cc):
the LL protocol's bus bandwidth ``llMaxBws`` N1 (Ampere 87.7, Hopper 141.0, Blackwell 2 * 141.0) and
LL128's, ``nChannels * perChMaxRingLL128Bws`` N1 (Ampere 20.0, Hopper 36.7 GB/s per channel;
Blackwell 2 * 36.7 in v2.27.3-1, 34.5 in v2.29.2-1, the B200 tables' version) over the ring graph's
channels (:data:`~symcost.hardware.timing.NCCL_RING_BANDWIDTH_SHARE`: 12 on A100 and H100, 16 on
B200). Only the data-centre parts whose NVLink these tables describe (A100 8.0, H100/H200 9.0,
B200/GB200 10.0, B300 10.3): an 8.6 or 8.9 GPU (A40/A6000 on an NVLink bridge, L40S/L4 on PCIe)
reads NCCL's PCI latencies (``hwLat`` {1.0, 2.5, 5.7} us) and runs LL128 only over NVLink
(``typeIntra <= PATH_NVB``); there, as on every capability not listed, the ring takes the fastest of
its Simple and LL forms (:func:`~symcost.hardware.timing.nccl_ring_tuning`). Here, beside the
profiles, because the chip's :attr:`~symcost.hardware.Hardware.structure` reads it too;
:mod:`symcost.hardware.timing` re-exports it.

NB: the LL128 cap counts these chips' own channels (12, 12, 16), while NCCL's ring bandwidth ``B``
scales with the chip's ``scale_up_bandwidth``: a chip file that raises it (an NVLink of twice the
rate under capability 9.0) keeps Hopper's 12 * 36.7 GB/s cap, as NCCL would only if its ring search
found the same 12 channels."""


def vllm_symm_windows(capability: str | None) -> tuple[tuple[int, int, int], ...]:
    """The bytes vLLM's symmetric-memory all-reduce takes per world size on ``capability``:
    ``(n, lo, hi)``, its window ``lo <= M <= hi`` (``lo``: the custom all-reduce's ``max_size``,
    capped by its :data:`VLLM_CUSTOM_MAX` buffer, below which the custom all-reduce runs; ``hi``:
    symmetric memory's ``max_size``, :data:`VLLM_ALLREDUCE_SIZES`); none for a capability without
    a size table. :func:`symcost.hardware.timing.vllm_allreduce_window` picks by the same limits.

    >>> vllm_symm_windows("9.0")[0], vllm_symm_windows("8.0")
    ((2, 8388608, 67108864), ())
    """
    sizes = VLLM_ALLREDUCE_SIZES.get(capability or "")
    if sizes is None:
        return ()
    return tuple((n, min(sizes[0][n], VLLM_CUSTOM_MAX), hi) for n, hi in sorted(sizes[1].items()))


Overrides = tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
"""Chip fields an engine profile replaces: ``((chip name or "*", ((field, value), ...)), ...)``."""


def _overrides(value: Any) -> Overrides:
    """A mapping ``{chip: {field: value}}`` (or the frozen form) as the frozen, hashable form."""
    if isinstance(value, tuple):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"overrides must map a chip name (or \"*\") to {{field: value}}, got {value!r}")
    out = []
    for chip, fields in value.items():
        if not isinstance(fields, Mapping):
            raise ConfigError(f"overrides[{chip!r}] must map chip fields to values, got {fields!r}")
        out.append((str(chip), tuple(sorted(fields.items()))))
    return tuple(out)


AllreduceRule = Literal["nccl", "custom", "vllm", "trtllm-1.0"]
MoESortRule = Literal["tensorrt-llm", "moe-align", "none"]
"""How an engine picks its all-reduce (:attr:`Runtime.allreduce`)."""
ALLREDUCE_RULES: tuple[str, ...] = ("nccl", "custom", "vllm", "trtllm-1.0")


def _rules(value: Any) -> tuple[tuple[str, str], ...]:
    """A mapping ``{chip: rule}`` (or the frozen form) as the frozen, hashable form, each rule one of
    :data:`ALLREDUCE_RULES`."""
    if isinstance(value, tuple):
        return value
    if not isinstance(value, Mapping) or any(r not in ALLREDUCE_RULES for r in value.values()):
        raise ConfigError(f"allreduce_chips must map a chip name to one of {', '.join(ALLREDUCE_RULES)}, got {value!r}")
    return tuple(sorted((str(chip), str(rule)) for chip, rule in value.items()))


class Runtime(BaseModel):
    """What the serving or training engine adds around the kernels (docs/conventions.md §17).

    ``cuda_graphs``: kernels are replayed from a captured graph, so the host's launch time
    (:attr:`Hardware.launch_time`) never paces the GPU; without graphs a kernel takes at least
    that long. ``step_overhead``: seconds per inference step spent outside the model
    (scheduling, sampling, host synchronisation), added once to each prefill and decode step.
    ``collective_overhead``: seconds the engine adds to every collective call beyond the chip's
    ``collective_base_latency`` (its own synchronisation around the library call).
    ``prefill_emits_first_token``: how many decode steps an engine runs to produce ``n``
    output tokens is ``n - 1`` when the prefill emits the first token (TensorRT-LLM, vLLM), or
    ``n`` when its generation loop runs once per output token (FasterTransformer).
    ``allreduce``: ``"nccl"``, or ``"custom"`` when the engine runs its own one-shot all-reduce
    inside a scale-up domain (TensorRT-LLM, SGLang) and NCCL's only where that is faster
    (the chip's ``custom_allreduce_*`` fields), or ``"vllm"``: vLLM's fixed size switch between
    its own one-shot and two-shot all-reduce, torch symmetric memory and NCCL, per world size and
    compute capability (:func:`symcost.hardware.timing.vllm_allreduce_window`), or
    ``"trtllm-1.0"``: TensorRT-LLM 1.0's switch by token count
    (:func:`symcost.hardware.timing.trtllm_allreduce_window`). ``overrides``: the
    chip fields this engine's own kernels were measured at, per chip name (``"*"``: every chip);
    :meth:`Hardware.with_runtime` applies them. ``backend`` and ``version`` name what the values were measured on.

    >>> Runtime(name="mine", step_overhead="0.002").step_overhead
    1/500
    >>> Runtime(name="mine", overrides={"H100_SXM": {"gemm_time": "0.000003"}}).overrides_for("H100_SXM")
    {'gemm_time': '0.000003'}
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    backend: str = ""
    version: str = ""
    cuda_graphs: bool = True
    step_overhead: Seconds = sp.Integer(0)
    collective_overhead: Seconds = sp.Integer(0)
    prefill_emits_first_token: bool = True
    allreduce: AllreduceRule = "nccl"
    allreduce_chips: Annotated[tuple[tuple[str, AllreduceRule], ...], BeforeValidator(_rules)] = ()
    """Per chip name, the all-reduce rule of the backend version that chip's own values were
    measured at, where it is not ``allreduce`` (:meth:`allreduce_for`): the ``tensorrt-llm``
    profile's A100 values come from TensorRT-LLM 1.0's tables, whose AUTO strategy is
    ``"trtllm-1.0"`` (:func:`symcost.hardware.timing.trtllm_allreduce_window`)."""
    moe_sync_time: Seconds = sp.Integer(0)
    """Seconds an eagerly run MoE layer's training forward exposes of the host (the ``host.sync``
    kernel class, one op per forward): a dropless dispatcher's device-to-host synchronisation (the
    host reads the routing counts; the GPU then idles until the host has launched what follows) or,
    padded to capacity, no sync but the same many small launches pacing the GPU; none for a layer
    replayed whole from a CUDA graph (:attr:`~symcost.layers.moe.MoELayer.cuda_graph`). 0 for
    engines without."""
    a2a_overlap_efficiency: Share = sp.Integer(1)
    """The share of a layer's hidden collectives (:attr:`~symcost.core.ops.Collective.hidden`: the EP
    all-to-alls under Megatron-Core's ``overlap_moe_expert_parallel_comm``) that the other
    micro-batch's compute actually covers: the layer takes ``ops + hidden - eta * min(ops, hidden)``
    (1: ``max(ops, hidden)``, perfect overlap; 0: none). Below 1 when the all-to-all's kernels take
    SMs and memory bandwidth from the compute they overlap, and when the schedule's warm-up and
    cool-down micro-batches have no partner."""
    tp_overlap_efficiency: Share = sp.Integer(1)
    """The share of what the TP overlap could hide (``overlap=True``: Transformer Engine's
    userbuffers chunk pipeline and bulk overlaps, :func:`~symcost.hardware.timing.exposed_comm`) that
    the engine actually hides: ``eta_tp * share * min(C_tp, G)`` (1: all of it). Below 1 where the
    userbuffers' kernels take SMs and HBM bandwidth from the GEMMs they run beside, the GEMM chunks
    run below the whole GEMM's rate, and a layer's small GEMMs (the attention projections) cannot
    hide the collectives they are paired with, which the layer-wide ``min(C_tp, G)`` lets the large
    ones cover."""
    grouped_gemm: Literal["fused", "per_expert"] = "fused"
    """How the engine runs a grouped GEMM (MoE experts): one kernel for every expert (``"fused"``:
    CUTLASS/Triton grouped kernels of the serving engines), or one GEMM per expert, each with its
    own fixed time (``"per_expert"``: Transformer Engine's FP8 ``GroupedLinear``, one cuBLAS GEMM
    per expert over its compute streams)."""
    moe_sort: MoESortRule = "tensorrt-llm"
    """How the engine's fused MoE sorts its token-expert choices by expert (the ``expert_map_sort``
    op, kernel class ``gemm.grouped.prologue``): ``"tensorrt-llm"``, one kernel up to 256 rows
    (top-k 1, 2, 4, 6, 8, at most 510 experts per rank), else three (TensorRT-LLM's
    ``fusedBuildExpertMapsSortFirstToken`` / ``threeStepBuildExpertMapsSortFirstToken``,
    cpp/tensorrt_llm/kernels/cutlass_kernels/moe_gemm/moe_kernels.cu); the default, as the neutral
    profile's kernel values are fitted on TensorRT-LLM's MoE tables; ``"moe-align"``, vLLM's
    ``moe_align_block_size`` (csrc/moe/moe_align_sum_kernels.cu, the same rule in SGLang's
    sgl-kernel): one ``moe_align_block_size_small_batch_expert_kernel`` while ``T k < 1024`` and
    ``E <= 64`` (``small_batch_expert_mode``, ``E`` the global expert count), else two
    (``moe_align_block_size_kernel`` and ``count_and_sort_expert_tokens_kernel``); ``"none"``: no
    such kernel. Nothing under ``grouped_gemm == "per_expert"`` whatever the rule."""
    overrides: Annotated[Overrides, BeforeValidator(_overrides)] = ()
    serving: ServingDefaults = ServingDefaults()
    """What the engine does by default with the chip's memory and its steps when it serves: token
    budget, memory fraction and rule, KV block size (:class:`~symcost.hardware.serving.ServingDefaults`;
    empty: the planner's own defaults)."""

    def allreduce_for(self, chip: str) -> AllreduceRule:
        """The all-reduce rule on the chip called ``chip``: its entry of :attr:`allreduce_chips`,
        else :attr:`allreduce`.

        >>> mine = Runtime(name="mine", allreduce="custom", allreduce_chips={"A100_SXM_80GB": "trtllm-1.0"})
        >>> mine.allreduce_for("A100_SXM_80GB"), mine.allreduce_for("H100_SXM")
        ('trtllm-1.0', 'custom')
        """
        return dict(self.allreduce_chips).get(chip, self.allreduce)

    def decode_steps(self, output_len: Any) -> Any:
        """Decode steps that produce ``output_len`` tokens after the prefill."""
        return output_len - 1 if self.prefill_emits_first_token else output_len

    def overrides_for(self, chip: str) -> dict[str, Any]:
        """The chip fields this profile sets on the chip called ``chip``: those for every chip
        (``"*"``), then the chip's own."""
        table = dict(self.overrides)
        return {**dict(table.get("*", ())), **dict(table.get(chip, ()))}

    @property
    def label(self) -> str:
        """``name`` with the backend version its values were measured on, e.g. ``"vllm (0.24.0)"``."""
        return f"{self.name} ({self.version})" if self.version else self.name


RUNTIMES: dict[str, Runtime] = {}
"""Every named engine profile by name: :data:`IDEAL` here, the others read from the data files of
``symcost/hardware/engines/`` (one per backend and version, a source per value)."""


def register(profile: Runtime) -> Runtime:
    """Make ``profile`` known by its name to :func:`runtime` (a later profile of the same name replaces it)."""
    RUNTIMES[profile.name.lower()] = profile
    return profile


IDEAL = register(Runtime(name="ideal"))
"""No engine: the roofline's runtime."""


def runtime(name: "str | Runtime") -> Runtime:
    """A named engine profile (case-insensitive); one-line :class:`~symcost.errors.ConfigError` listing the names."""
    if isinstance(name, Runtime):
        return name
    key = str(name).strip().lower()
    if key not in RUNTIMES:
        raise ConfigError(f"runtime: unknown engine profile {name!r}; known: {', '.join(RUNTIMES)}")
    return RUNTIMES[key]


def runtimes() -> list[str]:
    """The names of the engine profiles."""
    return list(RUNTIMES)

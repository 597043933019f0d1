"""The training step: pipeline stages, data-parallel synchronisation and ZeRO, assembled from
the per-stage values (see :mod:`symcost.plan.step` for the model)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence, cast

import sympy as sp

from ..core import symbols as sym
from ..core._expr import check_divides, dim, exact_value, extreme, substitute
from ..core.assumptions import collecting, merge
from ..core.binding import on_register
from ..core.compiled import Program
from ..core.dtypes import DataType
from ..core.ops import Collective, CollectiveKind
from ..core.parallelism import Parallelism, ParallelismLike
from ..errors import ConfigError
from ..hardware import Hardware
from ..hardware import get as get_hardware
from ..hardware.timing import collective_time
from ..layers.base import TRAINING_TENSOR_BYTES, Recompute
from ..models.model import Model
from . import compiled as csteps
from .pipeline import (
    GRADIENT_BYTES,
    OPTIMIZER_BYTES,
    TrainingStep,
    block_recompute_stages,
    check_expert_parallel,
    checked_recompute_layers,
    checked_stage_layers,
    checked_switch,
    in_flight,
    max_all,
    model_parts,
    resolve_parallelism,
    span_time,
    stage_split,
    stages_from_parts,
)

# placeholders for one stage's parameters (all, and routed experts): the ZeRO/DP terms are affine
# in them, built once and evaluated per stage
_PARAMS = sp.Symbol("_stage_params", positive=True)
_EXPERT = sp.Symbol("_stage_expert_params", positive=True)
_SHARED = sp.Symbol("_stage_shared_params", nonnegative=True)
_GROUP = sp.Symbol("_stage_in_embedding_group", nonnegative=True)
_GEMM = sp.Symbol("_stage_gemm_params", nonnegative=True)
_TP_SUMMED = sp.Symbol("_stage_tp_summed_params", nonnegative=True)
_BUFFER = sp.Symbol("_stage_buffer_params", nonnegative=True)
_LATENCY = sp.Symbol("_stage_latency", positive=True)
_INDEX = sp.Symbol("_stage_index", integer=True, nonnegative=True)

# NB: Megatron-Core's default bucket: max(40,000,000, 1,000,000 * dp) parameters
# (megatron/core/distributed/distributed_data_parallel_config.py, ``bucket_size``: "larger DP
# sizes need larger buckets to ensure collectives do not become latency-bound")
BUCKET_PARAMS = sp.Integer(40_000_000)
BUCKET_PARAMS_PER_RANK = sp.Integer(1_000_000)
# NB: the share of a micro-batch's time its backward takes (recomputation included) and its
# forward: 2/3 and 1/3, the matmul FLOPs' split (docs/conventions.md §4: backward = 2 x forward);
# with full recomputation the backward's share is 3/4, so 2/3 is the smaller window
BACKWARD_SHARE = sp.Rational(2, 3)
FORWARD_SHARE = sp.Rational(1, 3)
# NB: the optimizer step's HBM traffic per parameter of the stage's optimizer shard, once per step
# (Megatron-Core's distributed optimizer, optimizer/distrib_optimizer.py, with a fused multi-tensor
# Adam: Apex/Transformer Engine ``multi_tensor_adam``): the gradient norm reads the gradient
# (``multi_tensor_l2norm``, clip_grads.py); Adam reads the gradient and the fp32 master weight and
# moments and writes the three back (2 x 12); ``_copy_main_params_to_model_params`` reads the fp32
# master weight (4) and writes the model's weight (e): 2 g + 24 + 4 + e bytes (38 at fp32 gradients
# and bf16 weights). Beside it ``zero_grad_buffer`` writes the whole gradient buffer (the stage's
# gradient bytes). Each pass streams at the chip's HBM bandwidth (no reuse: one read, one write).
MASTER_WEIGHT_BYTES = sp.Integer(4)
# NB: a router's tokens_per_expert counts are fp32 (Megatron-Core megatron/core/transformer/moe/router.py,
# TopKRouter: register_buffer('local_tokens_per_expert', torch.zeros(num_moe_experts, dtype=torch.float32)))
TOKEN_COUNT_BYTES = sp.Integer(4)
# a router's score-correction bias stays fp32 in a bf16 model (Megatron-Core router.py,
# TopKRouter._maintain_float32_expert_bias): per buffer element the bias and its expert's token count
BUFFER_BYTES = sp.Integer(4) + TOKEN_COUNT_BYTES


@dataclass(frozen=True)
class StepComm:
    """How a step's data-parallel and pipeline communication runs.

    ``dp_overlap`` hides the data-parallel sync behind the backward and the forward
    (Megatron-Core's ``overlap_grad_reduce`` and ``overlap_param_gather``, see
    :func:`_data_parallel`); ``grad_reduce_in_fp32`` keeps and reduces the gradients in fp32
    (Megatron-LM's ``--accumulate-allreduce-grads-in-fp32``, its default for bf16 training), else
    in the weights' bf16 (Megatron-Bridge's performance recipes set ``grad_reduce_in_fp32 =
    False``); ``pp_overlap`` hides an interleaved pipeline's stage-to-stage sends behind its
    chunks' compute (Megatron's ``overlap_p2p_comm``, which Megatron-LM and Megatron-Bridge turn on
    with virtual stages), leaving exposed only the ``2 (p - 1)`` of the fill and the drain.

    >>> StepComm().gradient_bytes, StepComm(grad_reduce_in_fp32=False).gradient_bytes
    (4, 2)
    """

    dp_overlap: bool = True
    grad_reduce_in_fp32: bool = True
    pp_overlap: bool = True

    @property
    def gradient_bytes(self) -> sp.Expr:
        """Bytes per parameter of the gradient buffer and of its reduction: 4 (fp32), or 2."""
        return GRADIENT_BYTES if self.grad_reduce_in_fp32 else TRAINING_TENSOR_BYTES


@dataclass(frozen=True)
class TrainingOptions:
    """How a training step runs, apart from its model, chip, format and parallelism: the
    recompute mode, the interleaving degree ``v`` (virtual stages per pipeline stage), the ZeRO
    stage, TP/SP communication overlap, the blocks per pipeline stage (``None``:
    :func:`~symcost.plan.pipeline.pipeline_stages`), the DP/PP communication (:class:`StepComm`)
    and, under ``recompute="full"``, ``recompute_layers``: ``None`` recomputes every block, an int
    ``N`` only the first ``N`` of each pipeline stage (of each chunk when interleaved), Megatron-Core's
    ``--recompute-method block --recompute-num-layers N``
    (:func:`~symcost.plan.pipeline.block_recompute_stages`). ``interleave`` may be a symbol (``v > 1``).

    >>> TrainingOptions(zero_stage=3).key()
    ('none', 1, 3, False, None, True, True, True, None)
    >>> TrainingOptions("selective", recompute_layers=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    symcost.errors.ConfigError: recompute_layers needs recompute='full' (...), got recompute='selective'
    """

    recompute: str = "none"
    interleave: Any = 1
    zero_stage: int = 1
    overlap: bool = False
    stage_layers: Optional[tuple[int, ...]] = None
    sync: StepComm = StepComm()
    recompute_layers: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "recompute_layers", checked_recompute_layers(self.recompute_layers, self.recompute))

    def key(self) -> tuple[Any, ...]:
        """The options as plain values, for the compiled steps' cache (:func:`~symcost.plan.compiled.front`)."""
        return (self.recompute, self.interleave, self.zero_stage, self.overlap, self.stage_layers,
                self.sync.dp_overlap, self.sync.grad_reduce_in_fp32, self.sync.pp_overlap, self.recompute_layers)


@dataclass(frozen=True)
class TrainingRun:
    """What a training step costs, resolved: the model, the chip, the GEMMs' format, the
    parallelism (degrees numbers or symbols) and the :class:`TrainingOptions`. The step keeps,
    saves and sends its tensors in :attr:`tensors` (:func:`tensor_format`).

    >>> from symcost import models
    >>> run = TrainingRun(models.get("llama-3-8b"), get_hardware("H100_SXM"), DataType.FP8_E4M3, Parallelism())
    >>> run.tensors, run.weight_copy
    (<DataType.BF16: 'bf16'>, 2)
    """

    model: Model
    chip: Hardware
    datatype: DataType
    par: Parallelism
    options: TrainingOptions = TrainingOptions()

    @property
    def tensors(self) -> DataType:
        """The format of the tensors the step keeps, saves and sends (:func:`tensor_format`)."""
        return tensor_format(self.datatype)[0]

    @property
    def weight_copy(self) -> Any:
        """Bytes per GEMM-weight parameter of its copies in the GEMMs' format: 0 for a format of 2
        bytes or more (:func:`tensor_format`); a per-tensor-scaled FP8 weight's
        ``chip.fp8_weight_copies`` (Hopper: 2, the weight and its transpose for the dgrad GEMM;
        Blackwell: 1); a block-scaled one's 2, its row-wise and column-wise quantizations
        (Transformer Engine's ``MXFP8Tensor``/``NVFP4Tensor`` keep both: the blocks run along the
        contraction dimension, which the dgrad GEMM transposes), scales included.

        >>> from symcost import models
        >>> def run(chip, dtype):
        ...     return TrainingRun(models.get("llama-3-8b"), get_hardware(chip), DataType.parse(dtype), Parallelism())
        >>> [run(chip, dtype).weight_copy for chip, dtype in
        ...  (("H100_SXM", "fp8_e4m3"), ("B200", "fp8_e4m3"), ("B200", "mxfp8"), ("H100_SXM", "bf16"))]
        [2, 1, 33/16, 0]
        """
        copy = tensor_format(self.datatype)[1]
        if copy == 0:
            return copy
        return copy * (2 if self.datatype.is_block_scaled else self.chip.fp8_weight_copies)


def assemble_training(values: Sequence[dict[str, Any]], run: TrainingRun, *, s: Any, B: Any,
                      b: Any) -> dict[str, Any]:
    """The step's time and memory from its pipeline stages' per-micro-batch values (``values``:
    :func:`stages_from_parts`; see the module docstring) for ``run`` at sequence length ``s``,
    global batch ``B`` and micro-batch ``b``; every degree and size may be a number or a symbol
    (``p == 1`` and ``v == 1`` decide the pipeline's form, so symbols there mean p > 1 and v > 1).
    The slowest stage sets ``T_mb``; the fullest stage sets the memory and its terms.

    The context-parallel degree ``c``: a replica spans ``t*u*c`` chips, each holding ``s/(u*c)``
    tokens, and the CP ranks, which hold the same weights, join the data-parallel gradient
    reduction and ZeRO sharding (Megatron-LM's data-parallel group with context parallelism:
    ``d*c`` ranks). The micro-batches per replica stay ``B/(d*b)``: CP ranks share sequences.
    The routed experts run on Megatron's expert grid (``par.etp``); ``options.sync`` says how the
    data-parallel sync runs (:class:`StepComm`); the weights carry a narrow-format copy of
    ``run.weight_copy`` bytes per parameter (:func:`tensor_format`)."""
    chip, par, sync = run.chip, run.par, run.options.sync
    e, hidden_size = run.tensors.bytes, run.model.hidden_size
    t, u, p, d, c, v = par.tp, par.sp, par.pp, par.dp, par.cp, run.options.interleave
    m = B / (d * b)
    chips = t * u * c * p * d
    t_mb = max_all([st["latency"] for st in values])
    bubble = (p - 1) / v * t_mb
    compute = m * t_mb + bubble

    # stage-to-stage sends: 2 per micro-batch and chunk, 1/(t*sp*cp) of the b x s x h activations
    sends = sp.Integer(0)
    if p != 1:
        payload = b * s * hidden_size * e / (t * u * c)
        # NB: interleaved with overlap_p2p_comm (Megatron-Core model_parallel_config.py: "some of the
        # peer to peer communication for pipeline parallelism will overlap with computation";
        # p2p_communication.py posts each isend/irecv with wait_on_reqs=not overlap_p2p_comm and the
        # interleaved schedule waits on a receive only before the chunk that reads it). Derivation:
        # in the steady state a stage receives the next chunk's input while it computes the current
        # one, so no send waits. In the fill, stage k has nothing to compute before micro-batch 0's
        # first chunk reaches it: the sends 0 -> 1 -> ... -> p-1 lie on the critical path, p - 1 of
        # them; the wrap-around send p-1 -> 0 into chunk 1 arrives while stage 0 computes chunk 0 of
        # micro-batches 1..p-1 (hidden). In the drain, mirrored, the last micro-batch's gradient
        # crosses p-1 -> ... -> 0 with nothing left to hide it: p - 1 more. Hence 2 (p - 1), not the
        # 2 v m of the synchronous schedule (tests/plan/test_step.py, p = 2 and p = 4 by hand).
        count = 2 * (p - 1) if v != 1 and sync.pp_overlap else 2 * v * m
        sends = count * span_time("p2p", 2, payload, chip, t * u * c * d)

    weights, gradients, optimizer, dp_comm = _data_parallel(values, run, m)
    dp_comm, weights, gradients, optimizer, activations, memory, step_bytes = _fullest_stage(
        values, (weights, gradients, optimizer, dp_comm), e=e, p=p, m=m, v=v, grad=sync.gradient_bytes)
    optimizer_time = step_bytes / chip.effective_hbm_bandwidth
    step = compute + sends + dp_comm + optimizer_time
    model_flops = B * flops_per_sequence(run.model, s, run.datatype)
    return {
        "step_time": step, "compute_time": compute, "bubble_time": bubble, "pipeline_comm_time": sends,
        "dp_comm_time": dp_comm, "memory_per_chip": memory, "weight_memory": weights,
        "gradient_memory": gradients, "optimizer_memory": optimizer, "activation_memory": activations,
        "model_flops": model_flops, "mfu": model_flops / (step * chips * chip.peak_flops_expr(run.datatype)),
        "tokens_per_second": B * s / step, "num_microbatches": m, "num_chips": chips,
        "microbatch_time": t_mb, "optimizer_time": optimizer_time,
    }


def _data_parallel(values: Sequence[dict[str, Any]], run: TrainingRun, m: Any) -> tuple[Any, Any, Any, Any]:
    """One stage's weight, gradient and optimizer bytes and its gradient sync time, in the
    placeholders ``_PARAMS``, ``_EXPERT``, ``_SHARED`` and ``_GROUP`` (each stage's values are
    substituted later).

    A tied embedding under pipeline parallelism (stages with ``embedding_group``: see
    :func:`~symcost.plan.pipeline.stages_from_parts`): after the data-parallel reduction the first
    and the last stage all-reduce the table's fp32 gradient between them, Megatron-LM's
    ``finalize_model_grads`` -> ``_allreduce_word_embedding_grads`` over its embedding group: two
    ranks, the ends of one pipeline, ``p`` stages of ``stride * d`` chips apart at most.

    Routed-expert parameters are data-parallel over the ranks the expert grid leaves: ``t*d /
    (expert_tp*ep)`` (``d/ep`` when ``expert_tp = t``), ``expert_tp*ep`` ranks apart (Megatron's
    expert rank order, expert-TP innermost, then EP, then expert-DP).

    ``sync.dp_overlap`` (Megatron-Core's ``overlap_grad_reduce`` and ``overlap_param_gather``; see
    :func:`_sync_phases`): each phase's traffic costs what the compute it hides behind leaves
    (:func:`_exposed`), the backward ``2/3`` and the forward ``1/3`` of the stage's micro-batch
    time; without it, all of it."""
    chip, par, sync, zero_stage = run.chip, run.par, run.options.sync, run.options.zero_stage
    e, weight_copy, p, t = run.tensors.bytes, run.weight_copy, par.pp, par.tp
    # the CP ranks join the data-parallel group (assemble_training), ``t*u`` ranks apart
    d, stride, ep, expert_tp = par.dp * par.cp, par.tp * par.sp, par.ep, par.etp
    # buffers (Layer.buffer_params) are held whole, without gradient, optimizer state or sync, in fp32
    # with their experts' fp32 token counts (BUFFER_BYTES)
    buffer = _BUFFER if any(st.get("buffer", 0) != 0 for st in values) else 0
    params = _PARAMS - buffer
    # routed-expert parameters (MoE) are data-parallel over the expert-DP ranks only; the rest over d
    expert = _EXPERT if any(st.get("expert_weight", 0) != 0 for st in values) else 0
    groups = [(params - expert, d, stride)]
    if expert != 0:
        groups.append((expert, d * t / (expert_tp * ep), stride / t * expert_tp * ep))
    # the GEMM weights' narrow copies (TrainingRun.weight_copy): the routed experts' all GEMM weights
    copies = [] if weight_copy == 0 else [(_GEMM - expert, d), *([(expert, groups[1][1])] if expert != 0 else [])]
    weights, gradients, optimizer = buffer * BUFFER_BYTES, sp.Integer(0), sp.Integer(0)
    for n_params, n in copies:
        weights += n_params * weight_copy / (n if zero_stage == 3 else 1)
    for n_params, n, _ in groups:
        weights += n_params * e / (n if zero_stage == 3 else 1)
        gradients += n_params * sync.gradient_bytes / (n if zero_stage >= 2 else 1)
        optimizer += n_params * OPTIMIZER_BYTES / (n if zero_stage >= 1 else 1)
    dp_comm = sp.Integer(0)
    for phase in _sync_phases(groups, e=e, m=m, zero_stage=zero_stage, grad=sync.gradient_bytes):
        traffic = phase.traffic
        whole = sp.Add(*(span_time(kind, n, size * nbytes, chip, step) for kind, n, size, nbytes, step in traffic))
        exposed = _exposed(traffic, phase.share, whole, run, phase.per_micro_batch) if sync.dp_overlap else whole
        dp_comm += phase.count * exposed
    if any(st.get("embedding_group", 0) != 0 for st in values):
        group = Collective("all_reduce", "pp", 2, _SHARED * sync.gradient_bytes, span=p * stride * d)
        dp_comm += _GROUP * collective_time(group, chip)
    return weights, gradients, optimizer, dp_comm + _tp_summed_sync(values, run) + _expert_bias_sync(values, run)


def _expert_bias_sync(values: Sequence[dict[str, Any]], run: TrainingRun) -> Any:
    """Seconds of a stage's all-reduce of the token counts that move its router score-correction
    biases (``_BUFFER`` elements, :attr:`~symcost.layers.base.Layer.buffer_params`), once per step:
    ``min(1, n) * all_reduce(t u c d, 4 n)``.

    Megatron-Core (NVIDIA/Megatron-LM ``megatron/core/distributed/finalize_model_grads.py``
    ``_update_router_expert_bias``, after the data-parallel reduction, before the optimizer step)
    stacks the ``local_tokens_per_expert`` of every router of the rank's model chunks (fp32
    buffers of ``E`` each, ``megatron/core/transformer/moe/router.py`` ``TopKRouter``) and
    ``megatron/core/transformer/moe/moe_utils.py`` ``get_updated_expert_bias`` all-reduces them
    once, under ``torch.no_grad()``, over ``get_tensor_and_data_parallel_group(with_context_parallel=True)``:
    every rank of the stage (``t * u * cp * d``, adjacent: pipeline outermost). Exposed in full,
    synchronous as the TP-summed gradients' (:func:`_tp_summed_sync`); ``min(1, n)`` drops it for a
    stage without such a router."""
    if all(st.get("buffer", 0) == 0 for st in values):
        return sp.Integer(0)
    par = run.par
    ranks = par.tp * par.sp * par.cp * par.dp
    counts = Collective("all_reduce", "dp", ranks, _BUFFER * TOKEN_COUNT_BYTES, span=ranks)
    return extreme(sp.Min, 1, _BUFFER) * collective_time(counts, run.chip)


def _tp_summed_sync(values: Sequence[dict[str, Any]], run: TrainingRun) -> Any:
    """Seconds of a stage's all-reduce, over its TP group, of the gradients of the parameters every
    TP rank holds whole but computes from its own part of the work (``tp_summed``:
    :attr:`~symcost.layers.base.Layer.tp_summed_params`; the norms under Megatron sequence
    parallelism, MLA's down-projections, a router, the Q/K norms), ``_TP_SUMMED`` elements at the
    gradients' ``sync.gradient_bytes`` each: ``min(1, n) * all_reduce(t, n * grad)``.

    NB: exposed in full. Megatron-Core runs it in ``finalize_model_grads`` (NVIDIA/Megatron-LM
    megatron/core/distributed/finalize_model_grads.py, ``_allreduce_layernorm_grads``; later
    ``_allreduce_non_tensor_model_parallel_grads``): after ``finish_grad_sync`` has waited for the
    data-parallel reduction and before the optimizer step, one synchronous ``all_reduce`` of the
    coalesced (``_flatten_dense_tensors``) ``main_grad`` tensors of every parameter marked
    ``sequence_parallel`` (or named ``q_layernorm``/``k_layernorm``) over the TP group, timed on its
    own ("layernorm-grads-all-reduce"): nothing runs beside it. The TP ranks are adjacent (span
    ``t``). ``min(1, n)`` drops it for a stage with none (a collective of no bytes is not issued).

    NB: the same count under ``zero_stage >= 2`` (FSDP2, Meta FSDP), a simplification
    (docs/conventions.md §16 item 5): torch FSDP2 with TP leaves the sum to DTensor, each
    replicated parameter's partial gradient reduced on its own at every gradient reduction, so
    once per micro-batch (``torch/distributed/tensor/parallel/style.py`` ``SequenceParallel``,
    ``torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py`` ``foreach_reduce``); Megatron-FSDP
    all-reduces only the rank's data-parallel shard, ``n/d`` elements
    (``megatron/core/distributed/finalize_model_grads.py`` on ``megatron/core/distributed/fsdp/``'s
    sharded buffers). Neither is modelled."""
    t = run.par.tp
    if t == 1 or all(st.get("tp_summed", 0) == 0 for st in values):
        return sp.Integer(0)
    summed = Collective("all_reduce", "tp", t, _TP_SUMMED * run.options.sync.gradient_bytes, span=t)
    return extreme(sp.Min, 1, _TP_SUMMED) * collective_time(summed, run.chip)


def _exposed(traffic: list[tuple[CollectiveKind, Any, Any, Any, Any]], share: Any, whole: Any,
             run: TrainingRun, each: bool = False) -> Any:
    """What a stage's overlapped sync phase (``traffic``, taking ``whole`` seconds, behind
    ``share`` of a micro-batch) leaves exposed, as Megatron-Core's DistributedDataParallel runs it
    (NVIDIA/Megatron-LM ``megatron/core/distributed/distributed_data_parallel.py``):

    - only the first pipeline stage is bucketed ("Turn off bucketing if we are on a pipeline stage
      that is not the first (since data-parallel communication on these stages is not on the
      critical path)": ``bucket_size = None`` for ``pp_rank > 0``); the bucket is ``max(4e7, 1e6 *
      dp)`` parameters with ``dp`` ``get_data_parallel_world_size()``, the dense DP size without
      CP, for the expert buffers too. Stage 0 exposes ``max(one bucket, whole - share T_mb)``;
    - stage ``k > 0`` syncs in one bucket: its reduction starts once its last backward is done,
      ``k`` backwards (a chunk's, ``share T_mb / v``) before stage 0's, which the step waits for
      (the optimizer's grad-norm all-reduce spans the pipeline); its gather, dispatched by every
      stage at the step's start (``align_param_gather``), is waited for ``k`` forwards later:
      ``max(0, whole - k share T_mb / v)``;
    - a phase repeated for ``each`` micro-batch (ZeRO-2/3, FSDP: every stage gathers and
      reduce-scatters its own layers while its micro-batch runs, prefetching the next layer's) is
      hidden behind that micro-batch on every stage as on the first: ``max(one bucket, whole -
      share T_mb)``."""
    par, v = run.par, run.options.interleave
    # NB: (1, 0) on one stage: the expression is the bucketed one alone
    one_stage = par.pp == 1 or each
    first, later = (sp.Integer(1), sp.Integer(0)) if one_stage else (1 - extreme(sp.Min, 1, _INDEX), _INDEX)
    bucket = sp.Add(*(span_time(kind, n, extreme(sp.Min, size, _bucket(par.dp)) * nbytes, run.chip, step)
                      for kind, n, size, nbytes, step in traffic))
    return extreme(sp.Max, first * bucket, whole - share * _LATENCY * (first + later / v))


def _bucket(n: Any) -> Any:
    """Megatron-Core's default bucket for a data-parallel size ``n``: ``max(4e7, 1e6 n)`` parameters."""
    return extreme(sp.Max, BUCKET_PARAMS, BUCKET_PARAMS_PER_RANK * n)


class _SyncPhase(NamedTuple):
    """One data-parallel sync phase of a step (:func:`_sync_phases`)."""

    count: Any
    """Times per step."""
    share: Any
    """Share of the micro-batch time that hides it."""
    traffic: list[tuple[CollectiveKind, Any, Any, Any, Any]]
    """``[(kind, ranks, parameters, bytes per parameter, rank stride)]``."""
    per_micro_batch: bool
    """Run in every micro-batch (``count`` is ``m``), not once per step."""


def _sync_phases(groups: Sequence[tuple[Any, Any, Any]], *, e: Any, m: Any, zero_stage: int,
                 grad: Any = GRADIENT_BYTES) -> list[_SyncPhase]:
    """The data-parallel traffic of a step by the compute it can hide behind (:class:`_SyncPhase`).

    - ZeRO-0: one all-reduce of the gradients (``grad`` bytes each), in the last micro-batch's backward;
    - ZeRO-1 (Megatron's distributed optimizer) keeps whole gradients and reduce-scatters them once,
      at the accumulation boundary (the last backward); ZeRO-2/3 keep a shard, so every
      micro-batch's backward reduce-scatters (DeepSpeed stage_1_and_2.py reduces "if
      partition_gradients or at the boundary");
    - ZeRO-1/2 gather the updated weights once, waited for in the next step's first forward;
      ZeRO-3 gathers them for each micro-batch's forward and again in its backward (3 Psi per
      micro-batch, Rajbhandari et al. 2020, section 7.2.2).

    With pipeline stages every stage is costed, nothing refused (DeepSpeed's pipeline engine
    asserts "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism", but torchtitan and Meta
    run FSDP with pipeline stages): ZeRO-2 is Meta's Llama 3 FSDP (The Llama 3 Herd of Models, 2024,
    section 3.3.2: weights not resharded after the forward, so gathered once per step), ZeRO-3
    FSDP2's ``reshard_after_forward=True``; torchtitan's default under PP
    (``reshard_after_forward=False``, the gradient sync skipped until the last micro-batch by
    torch/distributed/pipelining/stage.py ``backward_maybe_with_nosync``) moves and keeps what
    ZeRO-1 does: ``zero_stage=1``."""
    def traffic(kind: CollectiveKind, nbytes: Any) -> list[tuple[CollectiveKind, Any, Any, Any, Any]]:
        return [(kind, n, size, nbytes, step) for size, n, step in groups]

    if zero_stage == 0:
        return [_SyncPhase(1, BACKWARD_SHARE, traffic("all_reduce", grad), False)]
    reduce = traffic("reduce_scatter", grad)
    if zero_stage == 3:
        gather = traffic("all_gather", e)
        return [_SyncPhase(m, FORWARD_SHARE, gather, True), _SyncPhase(m, BACKWARD_SHARE, gather + reduce, True)]
    each = zero_stage == 2
    return [_SyncPhase(m if each else 1, BACKWARD_SHARE, reduce, each),
            _SyncPhase(1, FORWARD_SHARE, traffic("all_gather", e), False)]


def _fullest_stage(values: Sequence[dict[str, Any]], per_params: tuple[Any, Any, Any, Any], *, e: Any, p: Any,
                   m: Any, v: Any, grad: Any = GRADIENT_BYTES) -> tuple[Any, Any, Any, Any, Any, Any, Any]:
    """Every stage syncs its own parameters at once: the slowest sync and the fullest stage count.
    Returns the sync time, the weight, gradient, optimizer and activation bytes, their total and
    the largest stage's optimizer-step bytes (:func:`optimizer_step_bytes`; ``grad`` bytes per
    gradient)."""
    per_stage = _stage_terms(values, per_params, e=e, p=p, m=m, v=v)
    totals = [w + g + o + a for w, g, o, _, a in per_stage]
    dp_comm = max_all([x[3] for x in per_stage])
    step_bytes = max_all([optimizer_step_bytes(x[1], x[2], grad, e) for x in per_stage])
    if all(sp.sympify(x).is_number for x in totals):
        fullest = per_stage[max(range(len(totals)), key=lambda i: totals[i])]
        weights, gradients, optimizer, activations = (exact_value(fullest[i]) for i in (0, 1, 2, 4))
        memory = max(totals)
    else:  # symbolic: each term's largest over the stages; memory the largest stage total
        weights, gradients, optimizer, activations = (max_all([x[i] for x in per_stage]) for i in (0, 1, 2, 4))
        memory = max_all(totals)
    return dp_comm, weights, gradients, optimizer, activations, memory, step_bytes


def optimizer_step_bytes(gradients: Any, optimizer: Any, grad: Any, e: Any) -> Any:
    """HBM bytes a stage's optimizer step moves, from its ``gradients`` and ``optimizer`` bytes
    (the shard's parameters: ``optimizer / 12``), ``grad`` bytes per gradient and ``e`` per
    weight: ``gradients + optimizer / 12 * (2 grad + 2*12 + 4 + e)`` (see ``MASTER_WEIGHT_BYTES``).

    >>> optimizer_step_bytes(4 * 10, 12 * 5, 4, 2)   # 10 parameters, a shard of 5: 40 + 5 * 38
    230
    """
    return gradients + optimizer / OPTIMIZER_BYTES * (2 * grad + 2 * OPTIMIZER_BYTES + MASTER_WEIGHT_BYTES + e)


def _stage_terms(values: Sequence[dict[str, Any]], per_params: tuple[Any, Any, Any, Any], *, e: Any, p: Any,
                 m: Any, v: Any) -> list[list[Any]]:
    """Each stage's ``[weights, gradients, optimizer, dp sync, activations]``."""
    per_stage = []
    for st in values:
        at = {_PARAMS: st["weight"] / e, _EXPERT: st.get("expert_weight", 0) / e,
              _SHARED: st.get("shared_weight", 0) / e, _GROUP: st.get("embedding_group", 0),
              _GEMM: st.get("gemm_weight", 0) / e, _TP_SUMMED: st.get("tp_summed", 0), _BUFFER: st.get("buffer", 0),
              _LATENCY: st["latency"], _INDEX: st["index"]}
        terms = [substitute(x, at) for x in per_params]  # NB: Max/Min left unevaluated (extreme)
        # NB: a recomputed block rebuilt during the oldest micro-batch's backward (rebuild_peak)
        terms.append(st["activation"] * in_flight(st["index"], p, m, v) + st.get("recompute_peak", 0))
        per_stage.append(terms)
    return per_stage


def tensor_format(datatype: DataType) -> tuple[DataType, Any]:
    """``(the format of the tensors a training step keeps and sends, bytes per parameter of a
    weight copy in the GEMMs' format)``: ``(datatype, 0)``, or for a format narrower than 2 bytes
    ``(bf16, its bytes)``: Transformer Engine keeps bf16 weights, activations and communication
    and caches an FP8 copy of each weight for the step's micro-batches (its ``is_first_microbatch``
    weight cache; docs/conventions.md §16).

    >>> tensor_format(DataType.FP8_E4M3), tensor_format(DataType.BF16)
    ((<DataType.BF16: 'bf16'>, 1), (<DataType.BF16: 'bf16'>, 0))
    """
    if datatype.bytes < TRAINING_TENSOR_BYTES:
        return DataType.BF16, datatype.bytes
    return datatype, sp.Integer(0)


def training_step(model: "Model", hardware: Hardware | str, seq_len: Any, global_batch: Any,
                  micro_batch: Any = 1, dtype: Any = "bf16", parallelism: ParallelismLike = None,
                  recompute: str = "none", interleave: Any = 1, zero_stage: int = 1,
                  overlap: bool = False, *, stage_layers: Optional[Sequence[int]] = None,
                  dp_overlap: bool = True, grad_reduce_in_fp32: bool = True, pp_overlap: bool = True,
                  recompute_layers: Optional[int] = None, exact: bool = True) -> TrainingStep:
    """Time, memory and MFU of one training step (see the module docstring for the model).

    ``dp_overlap`` hides the data-parallel gradient reduction behind the backward and the weights'
    gather behind the forward, bucket by bucket, as Megatron-Core's ``overlap_grad_reduce`` and
    ``overlap_param_gather`` do (on in Megatron-Bridge's and NeMo's recipes); ``False`` exposes
    the whole sync (Megatron-LM 2021, Narayanan et al.). ``grad_reduce_in_fp32=False`` keeps the
    gradients in bf16, 2 bytes per parameter in memory and in the reduction (Megatron-Bridge's
    performance recipes), instead of fp32; ``pp_overlap=False`` exposes every stage-to-stage send
    of an interleaved pipeline (:class:`StepComm`). ``recompute_layers=N`` with ``recompute="full"``
    recomputes only the first ``N`` blocks of each pipeline stage (of each chunk when interleaved)
    and keeps the others' activations, Megatron-Core's ``--recompute-method block
    --recompute-num-layers N`` (:func:`~symcost.plan.pipeline.block_recompute_stages`).

    ``parallelism`` adds to the model's own (:func:`resolve_parallelism`); ``stage_layers`` gives
    the blocks per pipeline stage (default :func:`pipeline_stages`; the split used is
    ``result.stage_layers``). With positive int sizes the step is evaluated by a program compiled
    once per configuration (:func:`compile_step`); ``exact=False`` returns its float64 values."""
    options = TrainingOptions(recompute, interleave, zero_stage, checked_switch(overlap, "overlap"),
                              checked_stage_layers(stage_layers),
                              StepComm(checked_switch(dp_overlap, "dp_overlap"),
                                       checked_switch(grad_reduce_in_fp32, "grad_reduce_in_fp32"),
                                       checked_switch(pp_overlap, "pp_overlap")), recompute_layers)
    exact = checked_switch(exact, "exact")
    sizes = csteps.sizes(seq_len, global_batch, micro_batch) if csteps.USE_COMPILED else None
    result = csteps.run(None if sizes is None else training_front(model, hardware, dtype, parallelism, options),
                        sizes, exact)
    if result is not None:
        return result
    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    datatype = DataType.parse(dtype)
    _check_zero(zero_stage)
    s, B, b, v = (dim(seq_len, "seq_len"), dim(global_batch, "global_batch"),
                  dim(micro_batch, "micro_batch"), dim(interleave, "interleave"))
    check_divides(B, par.dp * b, "global_batch", by="data_parallel * micro_batch")
    split = stage_split(model, par.pp, v, stage_layers)
    check_expert_parallel(par)
    run = TrainingRun(model, chip, datatype, par, dataclasses.replace(options, interleave=v))
    values, _ = _stage_values(model.with_parallelism(par), run, (b, s), split)
    fields = assemble_training(values, run, s=s, B=B, b=b)
    return TrainingStep(hardware=chip, stage_layers=split, **{k: exact_value(v) for k, v in fields.items()})


def flops_per_sequence(model: "Model", s: Any, datatype: DataType) -> Any:
    """The model's training matmul FLOPs for one sequence, without recomputation (MFU's numerator):
    the whole model's, whatever parallelism ``model`` was built with."""
    return _flops_per_sequence(model.with_parallelism(None), sp.sympify(s), datatype)


@functools.lru_cache(maxsize=64)
def _flops_per_sequence(model: "Model", s: sp.Expr, datatype: DataType) -> Any:
    # NB: cached: a search assembles up to eight programs of one model and sequence length
    one = model.compute_metrics(batch_size=1, seq_len=s, phase="training", dtype=datatype)
    return sp.sympify(one.matmul_flops_per_chip)


_GLOBAL = sp.Symbol("B", positive=True, integer=True)  # the global batch, free in training programs
_MEMORY = ("weight_memory", "gradient_memory", "optimizer_memory", "activation_memory", "memory_per_chip")


@functools.lru_cache(maxsize=64)
def _training_program(run: TrainingRun) -> Optional[csteps.CompiledStep]:
    model, chip, par, options = run.model, run.chip, run.par, run.options
    if not csteps.compilable(model, par, chip):
        return None
    s, B, b = sym.seq_len, _GLOBAL, sym.batch_size
    split = stage_split(model, par.pp, options.interleave, options.stage_layers)
    with collecting() as rules:
        check_divides(B, par.dp * b, "global_batch", by="data_parallel * micro_batch")
        values, rows = _stage_values(model.with_parallelism(par), run, (b, s), split)
    m = B / (par.dp * b)
    fields = assemble_training(values, run, s=s, B=B, b=b)
    terms = _stage_terms(values, _data_parallel(values, run, m), e=run.tensors.bytes, p=par.pp, m=m,
                         v=options.interleave)
    exprs = {k: x for k, x in fields.items() if k not in _MEMORY}
    exprs.update({f"stage{i}.{j}": x for i, st in enumerate(terms) for j, x in enumerate(st) if j != 3})
    found = merge(rules, *(metrics.assumptions for _, _, metrics in rows))
    return csteps.CompiledStep("training", Program.build("training", (s, B, b), exprs, found), len(terms), chip, split,
                        lambda *sizes: [])


def _stage_values(sharded: "Model", run: TrainingRun, sizes: tuple[Any, Any],
                  split: Optional[tuple[int, ...]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """The pipeline stages' per-micro-batch values of ``sharded`` (the model under ``run.par``) at
    micro-batch and sequence ``sizes``, and the breakdown rows they came from: every block under
    ``run.options.recompute``, or with ``recompute_layers`` the first ones of each stage recomputed
    in full and the others not (:func:`~symcost.plan.pipeline.block_recompute_stages`)."""
    options, (b, s) = run.options, sizes

    def parts(mode: str) -> tuple[list[Any], dict[str, Any]]:
        rows = sharded.breakdown(b, s, "training", run.datatype, run.chip, cast(Recompute, mode), options.overlap)
        return rows, model_parts(sharded, rows, run.tensors, run.weight_copy != 0)

    if options.recompute_layers is None and options.recompute != "full":
        rows, one = parts(options.recompute)
        return stages_from_parts(one, run.par.pp, split), rows
    rows, kept = parts("none")
    full_rows, full = parts("full")
    values = block_recompute_stages(kept, full, run.par.pp, split, options.interleave, options.recompute_layers)
    return values, rows + full_rows


def _training_compiled(model: "Model", hardware: Hardware | str, dtype: Any, parallelism: ParallelismLike,
                       options: TrainingOptions) -> Optional[csteps.CompiledStep]:
    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    datatype = DataType.parse(dtype)
    _check_zero(options.zero_stage)
    if options.recompute not in ("none", "selective", "full"):
        return None  # the uncompiled step raises the layer's own error
    check_expert_parallel(par)
    return _training_program(TrainingRun(model, chip, datatype, par, dataclasses.replace(
        options, interleave=int(options.interleave), overlap=bool(options.overlap))))


def training_front(model: "Model", hardware: Hardware | str, dtype: Any, parallelism: ParallelismLike,
                   options: TrainingOptions = TrainingOptions()) -> Optional[csteps.CompiledStep]:
    """The training step of ``model`` on ``hardware`` in ``dtype`` with ``parallelism`` (as the
    caller gave them) and ``options``, compiled once (``None`` where it cannot be)."""
    if csteps.sizes(options.interleave) is None:
        return None

    def build() -> Optional[csteps.CompiledStep]:
        return _training_compiled(model, hardware, dtype, parallelism, options)

    return csteps.front("training", build, model, hardware, dtype, parallelism, *options.key())


def _check_zero(zero_stage: Any) -> None:
    if isinstance(zero_stage, bool) or zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")


on_register(_training_program.cache_clear)  # its times are the registered time model's

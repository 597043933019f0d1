"""Training and inference steps of a whole model on a cluster: time, memory, MFU.

Training (Megatron-LM conventions, Narayanan et al. 2021; Korthikanti et al. 2022):

- ``m = global_batch / (dp * micro_batch)`` micro-batches per step; each pipeline stage holds
  ``L/p`` blocks (the first also the embedding, the last the final norm and LM head);
  one micro-batch costs ``T_mb`` = the slower stage's forward + backward (+ recompute) latency;
- 1F1B schedule with ``v`` interleaved chunks: ``m * T_mb`` plus a bubble ``(p - 1)/v * T_mb``
  (bubble fraction ``(p - 1)/(v * m)``);
- stage-to-stage sends: ``2 * v * m`` point-to-point messages per step of
  ``b * s * h * e / (t * sp)`` bytes (Megatron's scatter/gather over the TP ranks);
- data parallelism: an all-reduce of the fp32 gradients once per step; ZeRO-1 (Megatron's
  distributed optimizer) a reduce-scatter of the gradients at the accumulation boundary and an
  all-gather of the updated weights; ZeRO-2 (DeepSpeed stage 2) keeps only a gradient shard, so
  it reduce-scatters every micro-batch's gradients (``m`` per step) and gathers the weights once;
  ZeRO-3 also reduce-scatters per micro-batch and all-gathers the weights for every
  micro-batch's forward and backward, and nothing after the step (3 Psi per micro-batch,
  Rajbhandari et al. 2020, section 7.2.2). ZeRO-2/3 with pipeline parallelism is refused: no
  framework runs it (DeepSpeed's pipeline engine asserts "ZeRO-2 and ZeRO-3 are incompatible
  with pipeline parallelism"; Megatron-LM pairs its pipelines with the distributed optimizer);
- memory per chip: weights (activation dtype), fp32 gradients, Adam's fp32 master weights and two
  moments (12 bytes per parameter), sharded over ``dp`` by ZeRO stage (stage 1 is Megatron's
  distributed optimizer: ``6 + 12/d`` bytes per parameter), and the first stage's in-flight
  activations: ``min(p, m)`` micro-batches, times ``1 + (p - 1)/(p * v)`` when interleaved.

MFU is the model's training matmul FLOPs (no recomputation) per step over ``step_time * chips *
peak``. Every result is an expression; with numbers it is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import sympy as sp

from . import symbols as S
from ._expr import check_divides, dim, exact
from .dtypes import DataType
from .hardware import Hardware
from .hardware import get as get_hardware
from .layers.moe import MoELayer
from .metrics import LayerMetrics
from .ops import Collective
from .parallel import Parallelism, ParallelismLike
from .roofline import collective_time

if TYPE_CHECKING:
    from .model import Model

__all__ = ["TrainingStep", "InferenceStep", "training_step", "inference_step", "check_zero_stage",
           "GRADIENT_BYTES", "OPTIMIZER_BYTES"]

# NB: Megatron-LM accumulates gradients in fp32 "main grads" and keeps Adam's fp32 master weights,
# first and second moments: 4 and 4 + 4 + 4 bytes per parameter beside the weights themselves.
GRADIENT_BYTES = sp.Integer(4)
OPTIMIZER_BYTES = sp.Integer(12)


def _fits(memory: Any, chip: Hardware) -> Optional[bool]:
    verdict = sp.Le(sp.sympify(memory), sp.sympify(chip.hbm_capacity))
    return None if verdict not in (sp.true, sp.false) else bool(verdict)


def _min(a: Any, b: Any) -> Any:
    return exact(sp.Min(a, b))


def _max(a: Any, b: Any) -> Any:
    return exact(sp.Max(a, b))


@dataclass(frozen=True)
class TrainingStep:
    """One optimizer step: times in seconds, memory in bytes per chip (the fullest chip)."""

    step_time: Any
    compute_time: Any
    bubble_time: Any
    pipeline_comm_time: Any
    dp_comm_time: Any
    memory_per_chip: Any
    weight_memory: Any
    gradient_memory: Any
    optimizer_memory: Any
    activation_memory: Any
    model_flops: Any
    mfu: Any
    tokens_per_second: Any
    num_microbatches: Any
    num_chips: Any
    microbatch_time: Any
    hardware: Hardware

    @property
    def fits(self) -> Optional[bool]:
        """Whether ``memory_per_chip`` fits the chip's HBM (``None`` while symbolic)."""
        return _fits(self.memory_per_chip, self.hardware)

    def breakdown(self) -> dict[str, Any]:
        """Step time and memory, term by term (for display)."""
        return {"compute": self.compute_time - self.bubble_time, "bubble": self.bubble_time,
                "pipeline_comm": self.pipeline_comm_time, "dp_comm": self.dp_comm_time,
                "weights": self.weight_memory, "gradients": self.gradient_memory,
                "optimizer": self.optimizer_memory, "activations": self.activation_memory}


@dataclass(frozen=True)
class InferenceStep:
    """Serving one batch: time to first token, time per output token, memory and throughput."""

    ttft: Any
    tpot: Any
    kv_cache_memory: Any
    weight_memory: Any
    activation_memory: Any
    memory_per_chip: Any
    tokens_per_second: Any
    prefill_rows: tuple
    decode_rows: tuple
    hardware: Hardware

    @property
    def prefill(self) -> LayerMetrics:
        """The whole model's prefill metrics (all layers on one chip)."""
        return sum((m if n == 1 else m * n for _, n, m in self.prefill_rows), 0)

    @property
    def decode(self) -> LayerMetrics:
        """The whole model's decode metrics (all layers on one chip)."""
        return sum((m if n == 1 else m * n for _, n, m in self.decode_rows), 0)

    @property
    def fits(self) -> Optional[bool]:
        """Whether ``memory_per_chip`` fits the chip's HBM (``None`` while symbolic)."""
        return _fits(self.memory_per_chip, self.hardware)


_FIELDS = {"latency": "latency", "weight": "weight_memory_per_chip",
           "activation": "activation_memory_per_chip", "kv": "kv_cache_memory_per_chip"}


def part_values(model: "Model", b: Any, s: Any, phase: str, dtype: Any, chip: Hardware, recompute: str,
                overlap: bool) -> dict[tuple[str, str], Any]:
    """``{(part, quantity): value}`` for part in embedding, blocks (all of them, counts applied),
    tail (final norm + LM head) and quantity in latency, weight, activation, kv."""
    values = values_from_rows(model.breakdown(b, s, phase, dtype, chip, recompute, overlap))
    values[("blocks", "expert_weight")] = sp.Add(*(
        n * blk.mlp.expert_params_per_chip * DataType.parse(dtype).bytes
        for blk, n in model.blocks if isinstance(blk.mlp, MoELayer)))
    return values


def values_from_rows(rows: list[tuple[str, Any, LayerMetrics]]) -> dict[tuple[str, str], Any]:
    """:func:`part_values` from a model's :meth:`~symcost.model.Model.breakdown` rows."""
    values: dict[tuple[str, str], Any] = {}
    for key, field in _FIELDS.items():
        get = {name: (n, sp.sympify(getattr(m, field))) for name, n, m in rows}
        values[("embedding", key)] = get["embedding"][1]
        values[("blocks", key)] = sp.Add(*(n * x for name, (n, x) in get.items() if name.startswith("blocks")))
        values[("tail", key)] = get["final_norm"][1] + get["lm_head"][1]
    return values


def _stages(values: dict[tuple[str, str], Any], key: str, p: Any) -> tuple[Any, Any]:
    """(first stage, last stage) of one quantity; the whole model when p = 1."""
    emb, blocks, tail = values[("embedding", key)], values[("blocks", key)], values[("tail", key)]
    if p == 1:
        whole = emb + blocks + tail
        return whole, whole
    return emb + blocks / p, blocks / p + tail


def _span_time(kind: str, n: Any, payload: Any, chip: Hardware, stride: Any, count: Any = 1) -> Any:
    if n == 1:
        return sp.Integer(0)
    return collective_time(Collective(kind, "dp", n, payload, count, span=stride * n), chip)


def assemble_training(values: dict[tuple[str, str], Any], *, chip: Hardware, e: Any, s: Any, B: Any,
                      b: Any, t: Any, u: Any, p: Any, d: Any, v: Any, zero_stage: int, hidden_size: Any,
                      flops_per_sequence: Any, peak: Any, ep: Any = 1) -> dict[str, Any]:
    """The step's time and memory from its layers' per-micro-batch values (see the module
    docstring); every argument may be a number or a symbol (``p == 1`` and ``v == 1`` decide the
    pipeline's form, so symbols there mean p > 1 and v > 1)."""
    m = B / (d * b)
    chips = t * u * p * d
    first, last = _stages(values, "latency", p)
    t_mb = first if p == 1 else _max(first, last)
    bubble = (p - 1) / v * t_mb
    compute = m * t_mb + bubble

    # stage-to-stage sends: 2 per micro-batch and chunk, 1/(t*sp) of the b x s x h activations
    sends = sp.Integer(0)
    if p != 1:
        payload = b * s * hidden_size * e / (t * u)
        sends = 2 * v * m * _span_time("p2p", 2, payload, chip, t * u * d)

    # parameters on the fullest chip: its L/p blocks and the larger of the two ends
    w_first, w_last = _stages(values, "weight", p)
    weight_bytes = w_first if p == 1 else _max(w_first, w_last)
    params = weight_bytes / e
    # routed-expert parameters (MoE) are data-parallel over d/ep ranks only; the rest over d
    expert = values.get(("blocks", "expert_weight"), 0) / e / p
    groups = [(params - expert, d, t * u)]
    if expert != 0:
        groups.append((expert, d / ep, t * u * ep))
    dp_comm = sp.Integer(0)
    weights = gradients = optimizer = sp.Integer(0)
    for n_params, n, stride in groups:
        if zero_stage == 0:
            dp_comm += _span_time("all_reduce", n, n_params * GRADIENT_BYTES, chip, stride)
        else:
            # ZeRO-1 keeps whole gradients and reduce-scatters them once, at the accumulation
            # boundary; ZeRO-2/3 keep a shard, so every micro-batch's backward reduce-scatters
            # (DeepSpeed stage_1_and_2.py reduces "if partition_gradients or at the boundary")
            reductions = 1 if zero_stage == 1 else m
            dp_comm += _span_time("reduce_scatter", n, n_params * GRADIENT_BYTES, chip, stride,
                                  count=reductions)
            if zero_stage == 3:  # each micro-batch gathers the weights for its forward and backward
                dp_comm += _span_time("all_gather", n, n_params * e, chip, stride, count=2 * m)
            else:  # the updated weights, gathered once after the optimizer step
                dp_comm += _span_time("all_gather", n, n_params * e, chip, stride)
        weights += n_params * e / (n if zero_stage == 3 else 1)
        gradients += n_params * GRADIENT_BYTES / (n if zero_stage >= 2 else 1)
        optimizer += n_params * OPTIMIZER_BYTES / (n if zero_stage >= 1 else 1)
    step = compute + sends + dp_comm
    a_first, a_last = _stages(values, "activation", p)
    if p == 1:
        activations = a_first
    else:
        in_flight = _min(p, m) * (1 + (p - 1) / (p * v) if v != 1 else 1)
        activations = _max(a_first * in_flight, a_last)
    memory = weights + gradients + optimizer + activations
    model_flops = B * flops_per_sequence
    return {
        "step_time": step, "compute_time": compute, "bubble_time": bubble, "pipeline_comm_time": sends,
        "dp_comm_time": dp_comm, "memory_per_chip": memory, "weight_memory": weights,
        "gradient_memory": gradients, "optimizer_memory": optimizer, "activation_memory": activations,
        "model_flops": model_flops, "mfu": model_flops / (step * chips * peak),
        "tokens_per_second": B * s / step, "num_microbatches": m, "num_chips": chips,
        "microbatch_time": t_mb,
    }


def check_zero_stage(zero_stage: int, pipeline_parallel: Any) -> None:
    """Refuse ZeRO-2/3 with pipeline stages (a symbolic degree counts as p > 1): DeepSpeed's
    pipeline engine asserts "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism" and
    Megatron-LM's pipelines run with its distributed optimizer (ZeRO-1) only."""
    if zero_stage >= 2 and pipeline_parallel != 1:
        raise ValueError(
            f"zero_stage={zero_stage} with pipeline_parallel={pipeline_parallel}: ZeRO-2 and ZeRO-3 are "
            "incompatible with pipeline parallelism (DeepSpeed and Megatron-LM run neither); use "
            "zero_stage 0 or 1, or pipeline_parallel=1")


def training_step(model: "Model", hardware: Hardware | str, seq_len: Any, global_batch: Any,
                  micro_batch: Any = 1, dtype: Any = "bf16", parallelism: ParallelismLike = None,
                  recompute: str = "none", interleave: Any = 1, zero_stage: int = 1,
                  overlap: bool = False) -> TrainingStep:
    """Time, memory and MFU of one training step (see the module docstring for the model)."""
    chip = get_hardware(hardware)
    par = Parallelism.coerce(parallelism)
    datatype = DataType.parse(dtype)
    if isinstance(zero_stage, bool) or zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    check_zero_stage(zero_stage, par.pp)
    s, B, b, v = (dim(seq_len, "seq_len"), dim(global_batch, "global_batch"),
                  dim(micro_batch, "micro_batch"), dim(interleave, "interleave"))
    check_divides(B, par.dp * b, "global_batch must be divisible by data_parallel * micro_batch")
    check_divides(model.num_layers, par.pp * v, "num_layers must be divisible by pipeline_parallel * interleave")
    check_divides(par.dp, par.ep, "data_parallel must be divisible by expert_parallel (experts are sharded "
                  "within the data-parallel group)")
    sharded = model.with_parallelism(par)
    values = part_values(sharded, b, s, "training", datatype, chip, recompute, overlap)
    fields = assemble_training(values, chip=chip, e=datatype.bytes, s=s, B=B, b=b, t=par.tp, u=par.sp,
                               p=par.pp, d=par.dp, v=v, zero_stage=zero_stage,
                               hidden_size=sharded.blocks[0][0].hidden_size,
                               flops_per_sequence=flops_per_sequence(model, s, datatype),
                               peak=chip.peak_flops_expr(datatype), ep=par.ep)
    return TrainingStep(hardware=chip, **{k: exact(v) for k, v in fields.items()})


def flops_per_sequence(model: "Model", s: Any, datatype: DataType) -> Any:
    """The model's training matmul FLOPs for one sequence, without recomputation (MFU's numerator):
    the whole model's, whatever parallelism ``model`` was built with."""
    one = model.with_parallelism(None).compute_metrics(batch_size=1, seq_len=s, phase="training", dtype=datatype)
    return sp.sympify(one.matmul_flops_per_chip)


def inference_step(model: "Model", hardware: Hardware | str, batch_size: Any, seq_len: Any,
                   dtype: Any = "bf16", parallelism: ParallelismLike = None,
                   overlap: bool = False) -> InferenceStep:
    """Prefill of ``seq_len`` tokens (TTFT) and one decode step attending to ``seq_len`` keys
    (TPOT) for ``batch_size`` sequences. With ``p`` pipeline stages a token passes every stage in
    turn (plus one send between stages); memory is the fullest stage's."""
    chip = get_hardware(hardware)
    par = Parallelism.coerce(parallelism)
    datatype = DataType.parse(dtype)
    b, s = (S.batch_size if batch_size is None else dim(batch_size, "batch_size"),
            S.seq_len if seq_len is None else dim(seq_len, "seq_len"))
    p = par.pp
    sharded = model.with_parallelism(par)
    prefill_rows = sharded.breakdown(b, s, "prefill", datatype, chip, "none", overlap)
    decode_rows = sharded.breakdown(b, s, "decode", datatype, chip, "none", overlap)
    prefill, decode = values_from_rows(prefill_rows), values_from_rows(decode_rows)
    h = sharded.blocks[0][0].hidden_size
    e = datatype.bytes
    hops = (p - 1) if p != 1 else 0
    stride = par.tp * par.sp * par.dp
    ttft, tpot = _stages(prefill, "latency", 1)[0], _stages(decode, "latency", 1)[0]
    if p != 1:
        # the activations of one stage boundary, split over the TP (and Ulysses) ranks
        ttft += hops * _span_time("p2p", 2, b * s * h * e / (par.tp * par.sp), chip, stride)
        tpot += hops * _span_time("p2p", 2, b * h * e / par.tp, chip, stride)
    w_first, w_last = _stages(decode, "weight", p)
    kv_first, kv_last = _stages(decode, "kv", p)
    # inference activations are a transient peak: the largest layer's, whatever the depth
    peaks = [m.activation_memory_per_chip for _, _, m in prefill_rows]
    act = max(peaks) if not any(isinstance(x, sp.Basic) for x in peaks) else exact(sp.Max(*peaks))
    if p == 1:
        weights, kv = w_first, kv_first
        memory = weights + kv + act
    else:
        weights, kv = _max(w_first, w_last), _max(kv_first, kv_last)
        memory = _max(w_first + kv_first, w_last + kv_last) + act
    return InferenceStep(ttft=exact(ttft), tpot=exact(tpot), kv_cache_memory=exact(kv),
                         weight_memory=exact(weights), activation_memory=exact(act),
                         memory_per_chip=exact(memory), tokens_per_second=exact(b / tpot),
                         prefill_rows=tuple(prefill_rows), decode_rows=tuple(decode_rows), hardware=chip)



def max_batch_size(model: "Model", hardware: Hardware | str, seq_len: Any, dtype: Any = "bf16",
                   parallelism: ParallelismLike = None):
    """The largest batch whose weights, KV cache at ``seq_len`` and activations fit one chip's
    HBM (a :class:`~symcost.solve.IntegerSolution`, verified at n and n + 1)."""
    from .solve import max_integer

    chip = get_hardware(hardware)
    step = inference_step(model, chip, None, seq_len, dtype, parallelism)
    return max_integer(step.memory_per_chip, S.batch_size, chip.hbm_capacity)


def max_context(model: "Model", hardware: Hardware | str, batch_size: Any = 1, dtype: Any = "bf16",
                parallelism: ParallelismLike = None):
    """The longest context (``seq_len``) whose weights, KV cache and activations fit one chip's
    HBM for ``batch_size`` sequences, verified at n and n + 1 (a multiple of the Ulysses degree)."""
    from .solve import max_integer

    chip = get_hardware(hardware)
    par = Parallelism.coerce(parallelism)
    if not par.sp.is_Integer:
        raise ValueError(f"max_context: sequence_parallel must be a number, got {par.sp}")
    step = inference_step(model, chip, batch_size, None, dtype, par)
    return max_integer(step.memory_per_chip, S.seq_len, chip.hbm_capacity, multiple_of=int(par.sp))

"""Training and inference steps of a whole model on a cluster: time, memory, MFU.

Training (Megatron-LM conventions, Narayanan et al. 2021; Korthikanti et al. 2022):

- ``m = global_batch / (dp * micro_batch)`` micro-batches per step; pipeline stage ``k`` holds
  ``n_k`` consecutive blocks (the first also the embedding, the last the final norm and LM head;
  see :func:`pipeline_stages` for the split, even or not); one micro-batch costs ``T_mb`` = the
  slowest stage's forward + backward (+ recompute) latency: the slowest stage sets the pace;
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
  distributed optimizer: ``6 + 12/d`` bytes per parameter), and the stage's in-flight
  activations: stage ``k`` of 1F1B holds ``min(p - k, m)`` micro-batches; interleaved,
  ``min(2(p - k - 1) + (v - 1)p + 1, m v)`` chunks of ``n_k/v`` blocks (Megatron-LM's warm-up
  count plus one; ``p(1 + (p - 1)/(p v))`` micro-batches on the first stage). The fullest stage
  (the largest sum of those terms) sets the memory per chip, and its terms are reported.
- parallelism: the model's own (set by its builder or :meth:`~symcost.model.Model.with_parallelism`)
  with the degrees given to the step added (:func:`resolve_parallelism`); expert parallelism
  follows one rule in training and inference (:func:`check_expert_parallel`).

MFU is ``model_flops / (step_time * chips * peak)``, with ``model_flops`` the model's own counted
training matmul FLOPs per step (no recomputation) under its ``causal`` setting and attention
kernel: ``6 N`` per token for the N matmul weights plus the attention core. For an eager,
non-causal model (``Model.gpt``) that is PaLM's definition, ``6N + 12 L h s`` per token (Chowdhery
et al. 2022, appendix B); a flash, causal model (the Llama-style presets) counts ``6N +
7 L h (s + 1)``: half the pairs, and the flash backward's recomputed Q Kᵀ. Every result is an
expression; with numbers it is exact.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, cast

import sympy as sp

from ..core import symbols as sym
from ..core._expr import check_divides, dim, exact
from ..core.assumptions import collecting, merge
from ..core.compiled import Program, normal
from ..core.dtypes import DataType
from ..core.metrics import LayerMetrics
from ..core.ops import AttentionCore, Collective, CollectiveKind
from ..core.parallelism import Parallelism, ParallelismLike
from ..errors import ConfigError
from ..hardware import Hardware
from ..hardware import get as get_hardware
from ..hardware.timing import collective_time, op_time
from ..layers.base import Recompute, is_numeric
from ..models.model import Model, register_steps

__all__ = ["GRADIENT_BYTES", "OPTIMIZER_BYTES", "CompiledStep", "InferenceStep", "TrainingStep",
           "check_expert_parallel", "check_zero_stage", "compile_step", "inference_step", "pipeline_stages",
           "resolve_parallelism", "stage_layout", "training_step"]

# NB: Megatron-LM accumulates gradients in fp32 "main grads" and keeps Adam's fp32 master weights,
# first and second moments: 4 and 4 + 4 + 4 bytes per parameter beside the weights themselves.
_exact_value = exact  # the steps' ``exact`` argument shadows the function there
GRADIENT_BYTES = sp.Integer(4)
OPTIMIZER_BYTES = sp.Integer(12)


def _fits(memory: Any, chip: Hardware) -> Optional[bool]:
    verdict = sp.Le(sp.sympify(memory), sp.sympify(chip.hbm_capacity))
    return None if verdict not in (sp.true, sp.false) else bool(verdict)


def _min(a: Any, b: Any) -> Any:
    return exact(sp.Min(a, b))


def _max(a: Any, b: Any) -> Any:
    return exact(sp.Max(a, b))


def _max_all(values: Sequence[Any]) -> Any:
    """The largest of a few stage values (distinct ones only; plain ``max`` for numbers)."""
    distinct = list(dict.fromkeys(sp.sympify(x) for x in values))
    if len(distinct) == 1:
        return exact(distinct[0])
    if all(x.is_number for x in distinct):
        return exact(max(distinct))
    return exact(sp.Max(*distinct))


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
    """``model_flops / (step_time * chips * peak)``: the model's own counted training matmul FLOPs
    under its ``causal`` setting (PaLM's 6N + 12 L h s per token only for eager, non-causal
    attention; see the module docstring)."""
    tokens_per_second: Any
    num_microbatches: Any
    num_chips: Any
    microbatch_time: Any
    hardware: Hardware
    stage_layers: Optional[tuple] = None
    """Blocks on each pipeline stage (``None`` while the depth or the degree is symbolic)."""

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
    """The prefill's breakdown rows: of the whole prompt, or of one full chunk when chunked."""
    decode_rows: tuple
    hardware: Hardware
    stage_layers: Optional[tuple] = None
    """Blocks on each pipeline stage (``None`` while the depth or the degree is symbolic)."""
    prefill_chunk: Optional[int] = None
    """Prefill tokens per sequence per chunk; ``None``: the whole prompt at once."""
    num_prefill_chunks: Any = 1
    """Chunks the prefill ran in: ``ceil(seq_len / prefill_chunk)``, 1 unchunked."""

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


def values_from_rows(rows: list[tuple[str, Any, LayerMetrics]]) -> dict[tuple[str, str], Any]:
    """``{(part, quantity): value}`` (part: embedding, blocks summed with their counts, tail) from
    a model's :meth:`~symcost.model.Model.breakdown` rows."""
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


def _span_time(kind: CollectiveKind, n: Any, payload: Any, chip: Hardware, stride: Any, count: Any = 1) -> Any:
    if n == 1:
        return sp.Integer(0)
    return collective_time(Collective(kind, "dp", n, payload, count, span=stride * n), chip)


def resolve_parallelism(model: "Model", parallelism: ParallelismLike) -> Parallelism:
    """The parallelism a step of ``model`` runs under: the model's own (from its builder or
    :meth:`~symcost.model.Model.with_parallelism`), plus the degrees given in ``parallelism``.

    Rule, per degree: not given -> the model's; given and the model sets none (1) -> the given
    one; given and equal to the model's -> that; given and different -> a ``ValueError`` naming
    the degree (the model would be costed under a sharding it does not have).

    >>> from symcost import models
    >>> tp8 = models.get("llama-3-8b").with_parallelism({"tensor_parallel": 8})
    >>> par = resolve_parallelism(tp8, {"pipeline_parallel": 2})
    >>> par.tp, par.pp
    (8, 2)
    """
    own = model.parallelism
    if parallelism is None:
        return own
    given = Parallelism.coerce(parallelism)
    merged: dict[str, Any] = {}
    for field in type(given).model_fields:
        mine, theirs = getattr(own, field), getattr(given, field)
        if field not in given.model_fields_set:
            merged[field] = mine
            continue
        if mine != 1 and mine != theirs:
            raise ConfigError(f"parallelism: {field}={theirs} conflicts with the model's own {field}={mine} "
                             f"(set when it was built or by with_parallelism); give the same degree or leave it out")
        merged[field] = theirs
    return Parallelism(**merged)


def check_expert_parallel(par: Parallelism) -> None:
    """One expert-parallel rule for training and inference: ``expert_parallel`` divides
    ``data_parallel``.

    symcost splits every expert's width ``tensor_parallel`` ways (the MoE layer's model), so the
    expert grid is Megatron-Core's with ``expert_tensor_parallel = tensor_parallel``, its default:
    ``initialize_model_parallel`` requires ``world % (ETP * EP * PP) == 0``, i.e. EP divides the
    data-parallel (and context-parallel) ranks, and the routed experts are data-parallel over
    ``dp/ep`` replicas. vLLM's ``--enable-expert-parallel`` (EP = TP x DP) and SGLang's ``--ep-size``
    instead keep each expert whole (expert TP 1); that needs an expert-TP degree the MoE layer does
    not have, so it is refused here rather than costed as a 64-way shard on 8 chips.

    >>> check_expert_parallel(Parallelism(expert_parallel=8, data_parallel=8))
    >>> check_expert_parallel(Parallelism(expert_parallel=8))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    symcost.errors.AssumptionError: data_parallel must be divisible by expert_parallel (...) (got 1 and 8)
    """
    check_divides(par.dp, par.ep, "data_parallel must be divisible by expert_parallel (experts are sharded over the "
                  "data-parallel replicas, each split tensor_parallel ways, as Megatron-Core's default "
                  "expert_tensor_parallel = tensor_parallel)")


def pipeline_stages(num_layers: int, pipeline_parallel: int, first: Optional[int] = None,
                    last: Optional[int] = None) -> tuple[int, ...]:
    """Transformer blocks on each of the ``p`` pipeline stages (consecutive blocks, first to last).

    - ``first`` / ``last`` given: Megatron-LM's ``--decoder-first-pipeline-num-layers`` /
      ``--decoder-last-pipeline-num-layers`` (``num_layers_in_first/last_pipeline_stage``): those
      stages hold that many, the other stages split the rest evenly (it must divide).
    - neither: ``L // p`` blocks each and the remainder ``r = L mod p`` one each to the ``r``
      stages before the last, counting from the back (vLLM's ``get_pp_indices``; the first stage
      carries the embedding, the last the head). 126 layers on 16 stages: ``(7, 8 x 14, 7)``, the
      Llama 3 paper's "one layer less on the first and the last stage".

    Every stage needs at least one block, so ``p <= L``.

    >>> pipeline_stages(80, 4), pipeline_stages(80, 3)
    ((20, 20, 20, 20), (27, 27, 26))
    >>> pipeline_stages(61, 16, first=3, last=2) == (3,) + (4,) * 14 + (2,)
    True
    """
    L, p = int(num_layers), int(pipeline_parallel)
    if p < 1:
        raise ConfigError(f"pipeline_parallel must be positive, got {p}")
    if p > L:
        raise ConfigError(f"pipeline_parallel must not exceed num_layers: every stage holds at least one block "
                         f"(got {p} stages for {L} layers)")
    if first is None and last is None:
        q, r = divmod(L, p)
        stages = [q] * p
        for i in range(2, r + 2):
            stages[-i] += 1
        return tuple(stages)
    ends = [n for n in (first, last) if n is not None]
    if p == 1 and ends != [L]:
        raise ConfigError(f"first/last stage layers must equal num_layers ({L}) with one stage, got {ends}")
    if p == 1:
        return (L,)
    rest, left = L - sum(ends), p - len(ends)
    if left == 0 and rest != 0 or left and rest % left:
        raise ConfigError(f"num_layers - first - last ({rest}) must be divisible by the other {left} pipeline "
                         f"stages (Megatron-LM's uneven pipeline rule)")
    middle = rest // left if left else 0
    stages = ([first] if first is not None else []) + [middle] * left + ([last] if last is not None else [])
    if min(stages) < 1:
        raise ConfigError(f"every pipeline stage needs at least one block, got {tuple(stages)}")
    return tuple(stages)


def _split(model: "Model", p: Any, v: Any, stage_layers: Optional[Sequence[int]]) -> Optional[tuple[int, ...]]:
    """The blocks per stage of ``model`` under ``p`` stages and ``v`` chunks per stage, checked;
    ``None`` while the depth or ``p`` is symbolic (then ``p * v`` must divide ``L``: even stages)."""
    L = model.num_layers
    numeric = all(sp.sympify(x).is_Integer for x in (L, p, v))
    if stage_layers is None and not numeric:
        check_divides(L, p * v, "num_layers must be divisible by pipeline_parallel * interleave")
        return None
    if not numeric:
        raise ConfigError("stage_layers needs a numeric num_layers, pipeline_parallel and interleave")
    if stage_layers is None:
        split = pipeline_stages(int(L), int(p))
    else:
        split = tuple(stage_layers)
        if (len(split) != int(p) or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in split)
                or sum(split) != int(L)):
            raise ConfigError(f"stage_layers must be {int(p)} positive ints (one per pipeline stage) adding up to "
                             f"num_layers {int(L)}, got {split}")
    if int(v) > 1 and any(n % int(v) for n in split):
        raise ConfigError(f"interleave ({int(v)}) must divide every pipeline stage's blocks, got stages {split}")
    return split


def model_parts(model: "Model", rows: Sequence[tuple[str, Any, LayerMetrics]], dtype: Any) -> dict[str, Any]:
    """Per-layer values the steps assemble stages from, given ``model.breakdown(...)`` rows:
    ``{"embedding": q, "blocks": [(count, q), ...], "tail": q}`` with ``q`` = ``{quantity: value
    of one layer}`` for latency, weight, activation, kv and expert_weight (routed-expert weight
    bytes; MoE blocks only); the tail is the final norm plus the LM head."""
    e = DataType.parse(dtype).bytes

    def quantities(metrics: LayerMetrics) -> dict[str, Any]:
        return {key: sp.sympify(getattr(metrics, field)) for key, field in _FIELDS.items()}

    by_name = {name: (n, m) for name, n, m in rows}
    tail = quantities(by_name["final_norm"][1])
    tail = {k: tail[k] + x for k, x in quantities(by_name["lm_head"][1]).items()}
    blocks = []
    for i, (blk, n) in enumerate(model.blocks):
        q = quantities(by_name[f"blocks[{i}]"][1])
        if blk.mlp.num_routed_experts is not None:
            q["expert_weight"] = sp.sympify(blk.mlp.expert_params_per_chip * e)
        blocks.append((n, q))
    return {"embedding": quantities(by_name["embedding"][1]), "blocks": blocks, "tail": tail}


def stage_layout(counts: Sequence[Any], p: Any,
                 split: Optional[tuple[int, ...]]) -> list[tuple[Any, tuple, bool, bool]]:
    """The distinct pipeline stages as ``(k, blocks of each group, holds the embedding, holds the
    tail)``: stage ``k`` holds ``split[k]`` consecutive blocks, group by group (``counts``: the
    model's block groups), the embedding when ``k = 0`` and the tail when ``k = p - 1``. Stages
    alike in content are listed once, at their lowest ``k`` (which holds the most in-flight
    micro-batches). ``split=None`` (symbolic depth): the first and last stages, each with ``1/p``
    of every group."""
    if split is None:
        if p == 1:
            return [(0, tuple(counts), True, True)]
        per = tuple(n / p for n in counts)
        return [(0, per, True, False), (p - 1, per, False, True)]
    offsets, start = [], 0
    for n in counts:
        offsets.append((start, start + int(n)))
        start += int(n)
    seen: dict[tuple, tuple[Any, tuple, bool, bool]] = {}
    lo = 0
    for k, size in enumerate(split):
        hi = lo + size
        held = tuple(max(0, min(hi, b) - max(lo, a)) for a, b in offsets)
        key = (k == 0, k == len(split) - 1, held)
        seen.setdefault(key, (k, held, key[0], key[1]))
        lo = hi
    return list(seen.values())


def stages_from_parts(parts: dict[str, Any], p: Any, split: Optional[tuple[int, ...]]) -> list[dict[str, Any]]:
    """Each distinct stage of :func:`stage_layout` as ``{quantity: the stage's total, "index": k}``
    from :func:`model_parts`."""
    emb, tail, blocks = parts["embedding"], parts["tail"], parts["blocks"]
    keys = list(dict.fromkeys([*emb, *tail, *(k for _, q in blocks for k in q)]))
    out = []
    for k, held, first, last in stage_layout([n for n, _ in blocks], p, split):
        stage: dict[str, Any] = {}
        for key in keys:
            terms = [c * q[key] for c, (_, q) in zip(held, blocks) if key in q and c != 0]
            if first and key in emb:
                terms.append(emb[key])
            if last and key in tail:
                terms.append(tail[key])
            stage[key] = sp.Add(*terms)
        stage["index"] = sp.sympify(k)
        out.append(stage)
    return out


def _in_flight(k: Any, p: Any, m: Any, v: Any) -> Any:
    """Micro-batches of activations stage ``k`` holds at its peak: 1F1B ``min(p - k, m)``;
    interleaved, Megatron-LM's warm-up ``2(p - k - 1) + (v - 1)p`` chunks plus one, at most all
    ``m v``, each chunk ``1/v`` of the stage."""
    if p == 1:
        return sp.Integer(1)
    if v == 1:
        return _min(p - k, m)
    return _min(2 * (p - k - 1) + (v - 1) * p + 1, m * v) / v


# placeholders for one stage's parameters (all, and routed experts): the ZeRO/DP terms are affine
# in them, built once and evaluated per stage
_PARAMS = sp.Symbol("_stage_params", positive=True)
_EXPERT = sp.Symbol("_stage_expert_params", positive=True)


def assemble_training(values: Sequence[dict[str, Any]], *, chip: Hardware, e: Any, s: Any, B: Any,
                      b: Any, t: Any, u: Any, p: Any, d: Any, v: Any, zero_stage: int, hidden_size: Any,
                      flops_per_sequence: Any, peak: Any, ep: Any = 1) -> dict[str, Any]:
    """The step's time and memory from its pipeline stages' per-micro-batch values (``values``:
    :func:`stages_from_parts`; see the module docstring); every argument may be a number or a
    symbol (``p == 1`` and ``v == 1`` decide the pipeline's form, so symbols there mean p > 1 and
    v > 1). The slowest stage sets ``T_mb``; the fullest stage sets the memory and its terms."""
    m = B / (d * b)
    chips = t * u * p * d
    t_mb = _max_all([st["latency"] for st in values])
    bubble = (p - 1) / v * t_mb
    compute = m * t_mb + bubble

    # stage-to-stage sends: 2 per micro-batch and chunk, 1/(t*sp) of the b x s x h activations
    sends = sp.Integer(0)
    if p != 1:
        payload = b * s * hidden_size * e / (t * u)
        sends = 2 * v * m * _span_time("p2p", 2, payload, chip, t * u * d)

    weights, gradients, optimizer, dp_comm = _data_parallel(values, chip=chip, e=e, m=m, d=d, stride=t * u, ep=ep,
                                                            zero_stage=zero_stage)
    dp_comm, weights, gradients, optimizer, activations, memory = _fullest_stage(
        values, (weights, gradients, optimizer, dp_comm), e=e, p=p, m=m, v=v)
    step = compute + sends + dp_comm
    model_flops = B * flops_per_sequence
    return {
        "step_time": step, "compute_time": compute, "bubble_time": bubble, "pipeline_comm_time": sends,
        "dp_comm_time": dp_comm, "memory_per_chip": memory, "weight_memory": weights,
        "gradient_memory": gradients, "optimizer_memory": optimizer, "activation_memory": activations,
        "model_flops": model_flops, "mfu": model_flops / (step * chips * peak),
        "tokens_per_second": B * s / step, "num_microbatches": m, "num_chips": chips,
        "microbatch_time": t_mb,
    }


def _data_parallel(values: Sequence[dict[str, Any]], *, chip: Hardware, e: Any, m: Any, d: Any, stride: Any,
                   ep: Any, zero_stage: int) -> tuple[Any, Any, Any, Any]:
    """One stage's weight, gradient and optimizer bytes and its data-parallel sync time, in the
    placeholders ``_PARAMS`` and ``_EXPERT`` (each stage's parameters are substituted later)."""
    params = _PARAMS
    # routed-expert parameters (MoE) are data-parallel over d/ep ranks only; the rest over d
    expert = _EXPERT if any(st.get("expert_weight", 0) != 0 for st in values) else 0
    groups = [(params - expert, d, stride)]
    if expert != 0:
        groups.append((expert, d / ep, stride * ep))
    dp_comm = sp.Integer(0)
    weights = gradients = optimizer = sp.Integer(0)
    for n_params, n, step in groups:
        if zero_stage == 0:
            dp_comm += _span_time("all_reduce", n, n_params * GRADIENT_BYTES, chip, step)
        else:
            # ZeRO-1 keeps whole gradients and reduce-scatters them once, at the accumulation
            # boundary; ZeRO-2/3 keep a shard, so every micro-batch's backward reduce-scatters
            # (DeepSpeed stage_1_and_2.py reduces "if partition_gradients or at the boundary")
            reductions = 1 if zero_stage == 1 else m
            dp_comm += _span_time("reduce_scatter", n, n_params * GRADIENT_BYTES, chip, step,
                                  count=reductions)
            if zero_stage == 3:  # each micro-batch gathers the weights for its forward and backward
                dp_comm += _span_time("all_gather", n, n_params * e, chip, step, count=2 * m)
            else:  # the updated weights, gathered once after the optimizer step
                dp_comm += _span_time("all_gather", n, n_params * e, chip, step)
        weights += n_params * e / (n if zero_stage == 3 else 1)
        gradients += n_params * GRADIENT_BYTES / (n if zero_stage >= 2 else 1)
        optimizer += n_params * OPTIMIZER_BYTES / (n if zero_stage >= 1 else 1)
    return weights, gradients, optimizer, dp_comm


def _fullest_stage(values: Sequence[dict[str, Any]], per_params: tuple[Any, Any, Any, Any], *, e: Any, p: Any,
                   m: Any, v: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Every stage syncs its own parameters at once: the slowest sync and the fullest stage count.
    Returns the sync time, the weight, gradient, optimizer and activation bytes and their total."""
    per_stage = _stage_terms(values, per_params, e=e, p=p, m=m, v=v)
    totals = [w + g + o + a for w, g, o, _, a in per_stage]
    dp_comm = _max_all([x[3] for x in per_stage])
    if all(sp.sympify(x).is_number for x in totals):
        fullest = per_stage[max(range(len(totals)), key=lambda i: totals[i])]
        weights, gradients, optimizer, activations = (exact(fullest[i]) for i in (0, 1, 2, 4))
        memory = max(totals)
    else:  # symbolic: each term's largest over the stages; memory the largest stage total
        weights, gradients, optimizer, activations = (_max_all([x[i] for x in per_stage]) for i in (0, 1, 2, 4))
        memory = _max_all(totals)
    return dp_comm, weights, gradients, optimizer, activations, memory


def _stage_terms(values: Sequence[dict[str, Any]], per_params: tuple[Any, Any, Any, Any], *, e: Any, p: Any,
                 m: Any, v: Any) -> list[list[Any]]:
    """Each stage's ``[weights, gradients, optimizer, dp sync, activations]``."""
    per_stage = []
    for st in values:
        at = {_PARAMS: st["weight"] / e, _EXPERT: st.get("expert_weight", 0) / e}
        terms = [sp.sympify(x).xreplace(at) for x in per_params]
        terms.append(st["activation"] * _in_flight(st["index"], p, m, v))
        per_stage.append(terms)
    return per_stage


def check_zero_stage(zero_stage: int, pipeline_parallel: Any) -> None:
    """Refuse ZeRO-2/3 with pipeline stages (a symbolic degree counts as p > 1): DeepSpeed's
    pipeline engine asserts "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism" and
    Megatron-LM's pipelines run with its distributed optimizer (ZeRO-1) only."""
    if zero_stage >= 2 and pipeline_parallel != 1:
        raise ConfigError(
            f"zero_stage={zero_stage} with pipeline_parallel={pipeline_parallel}: ZeRO-2 and ZeRO-3 are "
            "incompatible with pipeline parallelism (DeepSpeed and Megatron-LM run neither); use "
            "zero_stage 0 or 1, or pipeline_parallel=1")


def training_step(model: "Model", hardware: Hardware | str, seq_len: Any, global_batch: Any,
                  micro_batch: Any = 1, dtype: Any = "bf16", parallelism: ParallelismLike = None,
                  recompute: str = "none", interleave: Any = 1, zero_stage: int = 1,
                  overlap: bool = False, *, stage_layers: Optional[Sequence[int]] = None,
                  exact: bool = True) -> TrainingStep:
    """Time, memory and MFU of one training step (see the module docstring for the model).

    ``parallelism`` adds to the model's own (:func:`resolve_parallelism`); ``stage_layers`` gives
    the blocks per pipeline stage (default :func:`pipeline_stages`; the split used is
    ``result.stage_layers``). With positive int sizes the step is evaluated by a program compiled
    once per configuration (:func:`compile_step`); ``exact=False`` returns its float64 values."""
    sizes = _sizes(seq_len, global_batch, micro_batch) if USE_COMPILED else None
    result = _run(None if sizes is None else _training_front(model, hardware, dtype, parallelism, recompute,
                                                             interleave, zero_stage, overlap, stage_layers),
                  sizes, exact)
    if result is not None:
        return result
    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    datatype = DataType.parse(dtype)
    _check_zero(zero_stage, par)
    s, B, b, v = (dim(seq_len, "seq_len"), dim(global_batch, "global_batch"),
                  dim(micro_batch, "micro_batch"), dim(interleave, "interleave"))
    check_divides(B, par.dp * b, "global_batch must be divisible by data_parallel * micro_batch")
    split = _split(model, par.pp, v, stage_layers)
    check_expert_parallel(par)
    sharded = model.with_parallelism(par)
    rows = sharded.breakdown(b, s, "training", datatype, chip, cast(Recompute, recompute), overlap)
    parts = model_parts(sharded, rows, datatype)
    values = stages_from_parts(parts, par.pp, split)
    fields = assemble_training(values, chip=chip, e=datatype.bytes, s=s, B=B, b=b, t=par.tp, u=par.sp,
                               p=par.pp, d=par.dp, v=v, zero_stage=zero_stage,
                               hidden_size=sharded.blocks[0][0].hidden_size,
                               flops_per_sequence=flops_per_sequence(model, s, datatype),
                               peak=chip.peak_flops_expr(datatype), ep=par.ep)
    return TrainingStep(hardware=chip, stage_layers=split, **{k: _exact_value(v) for k, v in fields.items()})


def flops_per_sequence(model: "Model", s: Any, datatype: DataType) -> Any:
    """The model's training matmul FLOPs for one sequence, without recomputation (MFU's numerator):
    the whole model's, whatever parallelism ``model`` was built with."""
    one = model.with_parallelism(None).compute_metrics(batch_size=1, seq_len=s, phase="training", dtype=datatype)
    return sp.sympify(one.matmul_flops_per_chip)


def _prefill_chunk(prefill_chunk: Any, sp_degree: Any) -> Optional[sp.Expr]:
    """The chunk length in tokens per sequence, or ``None`` for an unchunked prefill."""
    if prefill_chunk is None:
        return None
    chunk = dim(prefill_chunk, "prefill_chunk")
    check_divides(chunk, sp_degree, "prefill_chunk must be divisible by sequence_parallel")
    return chunk


def _rows_latency(rows: list, skip: tuple[str, ...] = ()) -> Any:
    return sp.Add(*(n * sp.sympify(m.latency) for name, n, m in rows if name not in skip))


def _core_ops(rows: list) -> list[tuple[AttentionCore, Any]]:
    """Every attention core of a prefill breakdown with its count (layers x ops)."""
    cores = []
    for _, n, m in rows:
        for op, mult in m.ops:
            if isinstance(op, AttentionCore):
                cores.append((op, n * mult))
    return cores


def _check_flash(rows: list, model: "Model") -> None:
    for op, _ in _core_ops(rows):
        if not op.flash:
            raise ConfigError(f"prefill_chunk: chunked prefill is modelled with flash attention only (as vLLM and "
                             f"SGLang run it); {model.name} uses eager attention (flash_attention=False)")


def _sum_max_affine(c0: Any, c1: Any, m0: Any, m1: Any, count: int) -> Any:
    """``sum(max(c0 + c1*i, m0 + m1*i) for i in range(count))``, exactly, in O(1)."""
    if count <= 0:
        return sp.Integer(0)

    def total(a: Any, b: Any, lo: int, hi: int) -> Any:  # sum of a + b*i for lo <= i < hi
        k = hi - lo
        return k * a + b * sp.Rational((lo + hi - 1) * k, 2) if k > 0 else sp.Integer(0)

    slope, gap = c1 - m1, c0 - m0  # compute - memory = gap + slope * i
    if slope == 0:
        return total(c0, c1, 0, count) if gap >= 0 else total(m0, m1, 0, count)
    cross = -gap / slope  # where the two lines meet
    if slope > 0:  # compute wins from ceil(cross) on
        k = min(max(int(sp.ceiling(cross)), 0), count)
        return total(m0, m1, 0, k) + total(c0, c1, k, count)
    k = min(max(int(sp.floor(cross)) + 1, 0), count)  # compute wins while i <= cross
    return total(c0, c1, 0, k) + total(m0, m1, k, count)


def _chunk_attention_time(rows: list, prefix: int, count: int, chunk: int, chip: Hardware, peak: Any,
                          datatype: Optional[DataType] = None) -> Any:
    """Extra time of ``count`` chunks (the i-th after ``prefix + i*chunk`` earlier tokens) over the
    same chunks alone: each attention core also attends to the earlier tokens' keys (read from
    the KV cache). Each core's compute and memory terms are affine in the keys, so the sum of
    their ``max`` over the chunks is exact in O(1)."""
    extra = sp.Integer(0)
    for op, n in _core_ops(rows):
        base = op_time(op, chip, peak, datatype)

        def at(k: Any, op: AttentionCore = op) -> Any:  # the core after k more earlier keys
            return op_time(dataclasses.replace(op, kv_len=op.kv_len + k), chip, peak, datatype)

        first, second, third = at(prefix), at(prefix + chunk), at(prefix + 2 * chunk)
        c0, m0 = sp.sympify(first.compute), sp.sympify(first.memory)
        c1, m1 = sp.sympify(second.compute) - c0, sp.sympify(second.memory) - m0
        if not (c0.is_number and m0.is_number):  # symbolic batch: one term per chunk
            times = [at(prefix + i * chunk).time for i in range(count)]
            extra += n * (sp.Add(*times) - count * base.time)
            continue
        if (sp.sympify(third.compute) - c0 - 2 * c1, sp.sympify(third.memory) - m0 - 2 * m1) != (0, 0):
            raise ConfigError("prefill_chunk: an attention core's time is not affine in its keys")  # pragma: no cover
        # each chunk's core: max(compute, memory) + its kernels' fixed time, as op_time adds it
        extra += n * (_sum_max_affine(c0, c1, m0, m1, count) + count * sp.sympify(base.overhead) - count * base.time)
    return extra


def _activation_peak(rows: list) -> Any:
    # inference activations are a transient peak: the largest layer's, whatever the depth
    peaks = [m.activation_memory_per_chip for _, _, m in rows]
    return max(peaks) if not any(isinstance(x, sp.Basic) for x in peaks) else exact(sp.Max(*peaks))


def _stage_memory(sharded: "Model", decode_rows: list, datatype: DataType, p: Any, split: Any,
                  act: Any) -> tuple[Any, Any, Any]:
    """(weights, KV cache, total) of the fullest pipeline stage (``split``: blocks per stage),
    activations ``act`` on top."""
    stages = stages_from_parts(model_parts(sharded, decode_rows, datatype), p, split)
    held = [st["weight"] + st["kv"] for st in stages]
    if all(x.is_number for x in held):
        fullest = stages[max(range(len(held)), key=lambda i: held[i])]
        return fullest["weight"], fullest["kv"], max(held) + act
    # symbolic: the largest of each term; memory the largest stage
    return (_max_all([st["weight"] for st in stages]), _max_all([st["kv"] for st in stages]),
            _max_all(held) + act)


def inference_step(model: "Model", hardware: Hardware | str, batch_size: Any, seq_len: Any,
                   dtype: Any = "bf16", parallelism: ParallelismLike = None,
                   overlap: bool = False, prefill_chunk: Any = None, *,
                   stage_layers: Optional[Sequence[int]] = None, exact: bool = True) -> InferenceStep:
    """Prefill of ``seq_len`` tokens (TTFT) and one decode step attending to ``seq_len`` keys
    (TPOT) for ``batch_size`` sequences. With ``p`` pipeline stages a token passes every stage in
    turn (plus one send between stages); memory is the fullest stage's weights and KV cache (stage
    ``k`` holds ``stage_layers[k]`` blocks, default :func:`pipeline_stages`, stated in
    ``result.stage_layers``) plus the largest layer's activation peak. ``parallelism`` adds to the
    model's own (:func:`resolve_parallelism`). Each step also carries the engine's own time per
    step, ``hardware.runtime.step_overhead`` (docs/conventions.md §17).

    ``prefill_chunk`` C (tokens per sequence) runs the prefill as vLLM and SGLang's chunked
    prefill does: ``n = ceil(s/C)`` chunks in turn, each attending to every earlier token's keys
    (read from the KV cache) as well as its own. TTFT is the sum of the chunk times (and of their
    stage-to-stage sends); only the last chunk computes logits; the activation peak is one
    chunk's (``b*C`` tokens) while the KV cache holds the whole prompt. Modelled with flash
    attention only (the kernels those engines chunk with); ``seq_len`` and C must be numbers.
    NB: the earlier keys are read at the activations' bytes per element, and multi-head latent
    attention's re-expansion of the cached prefix latents is not counted. ``None``: one chunk.

    >>> from symcost import models
    >>> step = models.get("llama-3-8b").inference_step("H100_SXM", 1, 32768, prefill_chunk=8192)
    >>> # one chunk's peak: a block's residual 2h plus its MLP's input and output 4h, gate and up 4f
    >>> step.num_prefill_chunks, step.activation_memory == (2 * 4096 + 4 * 4096 + 4 * 14336) * 8192
    (4, True)

    Positive int sizes without ``prefill_chunk`` run a program compiled once (:func:`compile_step`);
    ``exact=False``: its float64 values."""
    if (fast := _inference_fast(model, hardware, batch_size, seq_len, dtype, parallelism, overlap, prefill_chunk,
                                stage_layers, exact)) is not None:
        return fast
    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    check_expert_parallel(par)
    split = _split(model, par.pp, 1, stage_layers)
    datatype = DataType.parse(dtype)
    b, s = (sym.batch_size if batch_size is None else dim(batch_size, "batch_size"),
            sym.seq_len if seq_len is None else dim(seq_len, "seq_len"))
    chunk = _check_chunked(s, _prefill_chunk(prefill_chunk, par.sp), overlap)
    p = par.pp
    sharded = model.with_parallelism(par)
    decode_rows = sharded.breakdown(b, s, "decode", datatype, chip, "none", overlap)
    h = sharded.blocks[0][0].hidden_size
    hops, stride = (p - 1) if p != 1 else 0, par.tp * par.sp * par.dp

    def send(tokens: Any, ranks: Any = par.tp * par.sp) -> Any:  # one stage boundary's activations, split over ranks
        return hops * _span_time("p2p", 2, b * tokens * h * datatype.bytes / ranks, chip, stride) if p != 1 else 0

    ttft, act, prefill_rows, n_chunks = _prefill(sharded, model, b, s, chunk, datatype, chip, overlap, send)
    tpot = _stages(values_from_rows(decode_rows), "latency", 1)[0] + send(1, par.tp)
    # the engine's own time per step (docs/conventions.md §17), once per chunk (vLLM's, SGLang's schedulers)
    ttft += n_chunks * chip.runtime.step_overhead
    tpot += chip.runtime.step_overhead
    weights, kv, memory = _stage_memory(sharded, decode_rows, datatype, p, split, act)
    values = dict(ttft=ttft, tpot=tpot, kv_cache_memory=kv, weight_memory=weights, activation_memory=act,
                  memory_per_chip=memory, tokens_per_second=b / tpot)
    return InferenceStep(**{k: _exact_value(x) for k, x in values.items()}, prefill_rows=tuple(prefill_rows),
                         decode_rows=tuple(decode_rows), hardware=chip, stage_layers=split,
                         prefill_chunk=None if chunk is None else int(chunk), num_prefill_chunks=n_chunks)


def _check_chunked(s: Any, chunk: Any, overlap: bool) -> Any:
    """``chunk``, once checked against ``s`` and ``overlap``."""
    if chunk is not None and not (s.is_Integer and chunk.is_Integer):
        raise ConfigError(f"prefill_chunk: a chunked prefill needs a numeric seq_len and prefill_chunk "
                         f"(got {s} and {chunk}); its TTFT is a sum over ceil(seq_len/prefill_chunk) chunks")
    if chunk is not None and overlap:
        raise ConfigError("prefill_chunk: a chunked prefill with overlap=True is not modelled")
    return chunk


def _prefill(sharded: "Model", model: "Model", b: Any, s: Any, chunk: Any, datatype: DataType, chip: Hardware,
             overlap: bool, send: Any) -> tuple[Any, Any, list, int]:
    """TTFT (before the engine's overhead), the activation peak, the rows and the chunk count of
    the prefill: one pass, or ``ceil(s/C)`` chunks each attending to the earlier keys."""
    if chunk is None or chunk >= s:
        prefill_rows = sharded.breakdown(b, s, "prefill", datatype, chip, "none", overlap)
        return _rows_latency(prefill_rows) + send(s), _activation_peak(prefill_rows), prefill_rows, 1
    C, total_len = int(chunk), int(s)
    full, rest = divmod(total_len, C)
    n_chunks = full + (1 if rest else 0)
    rows_c = sharded.breakdown(b, C, "prefill", datatype, chip, "none", overlap)
    _check_flash(rows_c, model)
    peak = chip.effective_peak(datatype)
    # every chunk but the last skips the LM head (no token is sampled from it)
    lm_head = sp.Add(*(n * sp.sympify(m.latency) for name, n, m in rows_c if name == "lm_head"))
    ttft = (full * (_rows_latency(rows_c) + send(C)) - (n_chunks - 1) * lm_head
            + _chunk_attention_time(rows_c, 0, full, C, chip, peak, datatype))
    if rest:
        rows_r = sharded.breakdown(b, rest, "prefill", datatype, chip, "none", overlap)
        ttft += (_rows_latency(rows_r) + send(rest)
                 + _chunk_attention_time(rows_r, full * C, 1, C, chip, peak, datatype))
    return ttft, _activation_peak(rows_c), rows_c, n_chunks


def _memory_expr(model: "Model", chip: Hardware, b: Any, s: Any, q: Any, datatype: DataType,
                 par: Parallelism) -> Any:
    """Memory per chip serving ``b`` sequences of ``s`` tokens whose prefill runs ``q`` tokens per
    sequence at a time (``q = s`` unchunked)."""
    sharded = model.with_parallelism(par)
    rows = sharded.breakdown(b, q, "prefill", datatype, chip, "none", False)
    if q is not s:
        _check_flash(rows, model)
    decode_rows = sharded.breakdown(b, s, "decode", datatype, chip, "none", False)
    split = _split(model, par.pp, 1, None)
    return _stage_memory(sharded, decode_rows, datatype, par.pp, split, _activation_peak(rows))[2]


def max_batch_size(model: "Model", hardware: Hardware | str, seq_len: Any, dtype: Any = "bf16",
                   parallelism: ParallelismLike = None, prefill_chunk: Any = None):
    """The largest batch whose weights, KV cache at ``seq_len`` and activations fit one chip's
    HBM (a :class:`~symcost.solve.IntegerSolution`, verified at n and n + 1). With
    ``prefill_chunk`` C the activations are one chunk's (``min(C, seq_len)`` tokens per sequence).

    >>> from symcost import models
    >>> models.get("llama-3-70b").max_batch_size("H100_SXM", 32768, parallelism={"tensor_parallel": 8},
    ...                                          prefill_chunk=2048).value
    42
    """
    from ..analysis.solve import max_integer

    chip = get_hardware(hardware)
    if prefill_chunk is None:
        step = inference_step(model, chip, None, seq_len, dtype, parallelism)
        return max_integer(step.memory_per_chip, sym.batch_size, chip.hbm_capacity)
    par = resolve_parallelism(model, parallelism)
    s = dim(seq_len, "seq_len")
    chunk = _prefill_chunk(prefill_chunk, par.sp)
    q = chunk if (s - chunk).is_nonnegative else s
    if q is not chunk and (s - chunk).is_negative is not True:
        raise ConfigError(f"prefill_chunk: cannot tell whether seq_len {s} exceeds prefill_chunk {chunk}")
    memory = _memory_expr(model, chip, sym.batch_size, s, q, DataType.parse(dtype), par)
    return max_integer(memory, sym.batch_size, chip.hbm_capacity)


def max_context(model: "Model", hardware: Hardware | str, batch_size: Any = 1, dtype: Any = "bf16",
                parallelism: ParallelismLike = None, prefill_chunk: Any = None):
    """The longest context (``seq_len``) whose weights, KV cache and activations fit one chip's
    HBM for ``batch_size`` sequences, verified at n and n + 1 (a multiple of the Ulysses degree).

    With ``prefill_chunk`` C (see :func:`inference_step`) the activations are those of one chunk
    of ``min(C, s)`` tokens, so past C only the KV cache grows: the limit is solved for
    ``s <= C`` (the unchunked memory) and, when C itself fits, for ``s >= C`` (weights + KV cache
    at s + one chunk's activations); memory grows with s, so the two regimes meet at C.

    >>> from symcost import models
    >>> m = models.get("llama-3-70b")
    >>> m.max_context("H100_SXM", parallelism={"tensor_parallel": 8}).value      # prefill activations bind
    597036
    >>> m.max_context("H100_SXM", parallelism={"tensor_parallel": 8}, prefill_chunk=8192).value
    1509745
    """
    from ..analysis.solve import max_integer

    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    if not par.sp.is_Integer:
        raise ConfigError(f"max_context: sequence_parallel must be a number, got {par.sp}")
    if prefill_chunk is None:
        step = inference_step(model, chip, batch_size, None, dtype, par)
        return max_integer(step.memory_per_chip, sym.seq_len, chip.hbm_capacity, multiple_of=int(par.sp))
    chunk = _prefill_chunk(prefill_chunk, par.sp)
    if chunk is None or not chunk.is_Integer:
        raise ConfigError(f"prefill_chunk must be a number for max_context, got {chunk}")
    b = dim(batch_size, "batch_size")
    datatype = DataType.parse(dtype)
    s, multiple = sym.seq_len, int(par.sp)
    whole = _memory_expr(model, chip, b, s, s, datatype, par)
    short = max_integer(whole, s, chip.hbm_capacity, upper=int(chunk), multiple_of=multiple)
    if short.value is None or short.value < chunk:
        return short  # nothing fits, or the limit lies within one chunk
    chunked = _memory_expr(model, chip, b, s, chunk, datatype, par)
    return max_integer(chunked, s, chip.hbm_capacity, lower=int(chunk), multiple_of=multiple)


# Model.training_step, .inference_step, .max_batch_size and .max_context delegate to these.
register_steps(training_step, inference_step, max_batch_size, max_context)


# -- compiled steps ------------------------------------------------------------------------------
#
# A step of one (model, chip, parallelism, dtype, options) is compiled once with the batch and
# sequence sizes free (symcost.core.compiled.Program): the same expressions as the symbolic step,
# evaluated exactly (ints and Fractions) or in float64. The fullest stage is chosen in Python, as
# the numeric step chooses it. The configuration is validated when its program is built (the
# symbolic step runs then); a call checks only its sizes: an input that is not a positive int,
# or that breaks a divisibility rule, takes the uncompiled path, which raises its own error.

_GLOBAL = sp.Symbol("B", positive=True, integer=True)  # the global batch, free in training programs
_FRONT: dict[tuple, tuple[tuple, Any]] = {}
_FRONT_SIZE = 256
USE_COMPILED = True
"""Whether the steps take their compiled programs for int sizes (tests switch it off to compare)."""


@dataclass(frozen=True)
class CompiledStep:
    """One compiled step configuration; call it with the sizes (see :func:`compile_step`)."""

    kind: str
    program: Program
    stages: int
    """Distinct pipeline stages whose memory terms the program returns."""
    chip: Hardware
    split: Optional[tuple[int, ...]]
    rows: Callable[..., list]
    """``rows(*sizes)``: the step's breakdown rows (inference: prefill and decode), built lazily."""

    def __call__(self, *sizes: Any, exact: bool = True) -> Any:
        """The step at ``sizes`` (inference: batch_size, seq_len; training: seq_len, global_batch,
        micro_batch): exact ints/Fractions, or floats with ``exact=False``."""
        if not (all(type(x) is int and x > 0 for x in sizes) and self.program.holds(*sizes)):
            return None
        if exact:
            values = tuple(normal(x) for x in self.program.exact(*sizes))
        else:
            values = tuple(float(x) for x in self.program.floats(*sizes))
        return (_inference_result if self.kind == "inference" else _training_result)(self, sizes, values)


def _sizes(*values: Any) -> Optional[tuple[int, ...]]:
    """The sizes as ints when each is a positive whole number (int or SymPy Integer), else None."""
    out = []
    for x in values:
        if type(x) is int and x > 0:
            out.append(x)
        elif isinstance(x, sp.Integer) and x > 0:
            out.append(int(x))
        else:
            return None
    return tuple(out)


_PLAIN = frozenset({str, int, type(None)})


def _token(value: Any) -> tuple[Any, bool]:
    """A cache-key part for ``value`` and whether it stands for the object's identity."""
    kind = type(value)
    if kind in _PLAIN:
        return value, False
    if kind is bool:
        return ("bool", value), False
    if kind is dict:
        try:
            return ("dict", tuple(sorted(value.items(), key=lambda kv: kv[0]))), False
        except TypeError:
            return ("id", id(value)), True
    if kind is tuple and all(type(x) in _PLAIN for x in value) or isinstance(value, sp.Basic):
        return value, False
    return ("id", id(value)), True


def _front(kind: str, build: Callable[[], Optional[CompiledStep]], *objs: Any) -> Optional[CompiledStep]:
    """The compiled step of ``objs`` (the call's own arguments), looked up without hashing models
    or chips (their identity; the entry keeps them alive) and built by ``build`` on a miss."""
    key: list[Any] = [kind]
    refs = []
    for o in objs:
        token, by_id = _token(o)
        key.append(token)
        if by_id:
            refs.append(o)
    hit = _FRONT.get(tuple(key))
    if hit is not None and all(a is b for a, b in zip(hit[0], refs)):
        return hit[1]
    compiled = build()
    if len(_FRONT) >= _FRONT_SIZE:
        _FRONT.clear()
    _FRONT[tuple(key)] = (tuple(refs), compiled)
    return compiled


def _compilable(model: "Model", par: Parallelism, chip: Hardware) -> bool:
    degrees = (par.tp, par.sp, par.pp, par.dp, par.ep)
    return (not chip.is_symbolic and all(sp.sympify(x).is_Integer for x in degrees)
            and all(is_numeric(layer) for _, layer, _ in model.parts()))


@functools.lru_cache(maxsize=64)
def _inference_program(model: "Model", chip: Hardware, par: Parallelism, datatype: DataType, overlap: bool,
                       stage_layers: Optional[tuple[int, ...]]) -> Optional[CompiledStep]:
    if not _compilable(model, par, chip):
        return None
    b, s = sym.batch_size, sym.seq_len
    with collecting() as rules:
        step = inference_step(model, chip, b, s, datatype, par, overlap, stage_layers=stage_layers)
    sharded = model.with_parallelism(par)
    stages = stages_from_parts(model_parts(sharded, list(step.decode_rows), datatype), par.pp, step.stage_layers)
    exprs = {"ttft": step.ttft, "tpot": step.tpot, "activation": step.activation_memory,
             "tokens_per_second": step.tokens_per_second,
             **{f"weight{i}": st["weight"] for i, st in enumerate(stages)},
             **{f"kv{i}": st["kv"] for i, st in enumerate(stages)}}
    found = merge(rules, *(m.assumptions for _, _, m in (*step.prefill_rows, *step.decode_rows)))

    def rows(b: int, s: int) -> list:
        return [sharded.breakdown(b, s, phase, datatype, chip, "none", overlap) for phase in ("prefill", "decode")]

    return CompiledStep("inference", Program.build("inference", (b, s), exprs, found), len(stages), chip,
                        step.stage_layers, rows)


def _inference_result(compiled: CompiledStep, sizes: tuple, values: tuple) -> "InferenceStep":
    ttft, tpot, act, tps = values[:4]
    n = compiled.stages
    weights, kv = values[4:4 + n], values[4 + n:4 + 2 * n]
    held = [w + k for w, k in zip(weights, kv)]
    i = max(range(n), key=held.__getitem__)
    rows = _LazyRows(compiled.rows, sizes)
    return InferenceStep(ttft=ttft, tpot=tpot, kv_cache_memory=kv[i], weight_memory=weights[i],
                         activation_memory=act, memory_per_chip=held[i] + act, tokens_per_second=tps,
                         prefill_rows=cast(tuple, rows.part(0)), decode_rows=cast(tuple, rows.part(1)),
                         hardware=compiled.chip, stage_layers=compiled.split)


class _LazyRows:
    """Breakdown rows built on first use (a compiled step rarely needs them)."""

    def __init__(self, make: Callable[..., list], sizes: tuple) -> None:
        self._make, self._sizes = make, sizes
        self._rows: Optional[list] = None

    def get(self) -> list:
        if self._rows is None:
            self._rows = self._make(*self._sizes)
        return self._rows

    def part(self, i: int) -> "_RowsView":
        return _RowsView(self, i)


class _RowsView(Sequence):
    """One list of a :class:`_LazyRows`: a read-only sequence equal to the tuple of its rows."""

    def __init__(self, lazy: _LazyRows, i: int) -> None:
        self._lazy, self._i = lazy, i

    def _rows(self) -> tuple:
        return tuple(self._lazy.get()[self._i])

    def __getitem__(self, i: Any) -> Any:
        return self._rows()[i]

    def __len__(self) -> int:
        return len(self._rows())

    def __eq__(self, other: object) -> bool:
        return self._rows() == (other._rows() if isinstance(other, _RowsView) else other)

    def __hash__(self) -> int:
        return hash(self._rows())

    def __repr__(self) -> str:
        return repr(self._rows())


_MEMORY = ("weight_memory", "gradient_memory", "optimizer_memory", "activation_memory", "memory_per_chip")


@functools.lru_cache(maxsize=64)
def _training_program(model: "Model", chip: Hardware, par: Parallelism, datatype: DataType, recompute: str,
                      v: int, zero_stage: int, overlap: bool,
                      stage_layers: Optional[tuple[int, ...]]) -> Optional[CompiledStep]:
    if not _compilable(model, par, chip):
        return None
    s, B, b = sym.seq_len, _GLOBAL, sym.batch_size
    split = _split(model, par.pp, v, stage_layers)
    sharded = model.with_parallelism(par)
    with collecting() as rules:
        check_divides(B, par.dp * b, "global_batch must be divisible by data_parallel * micro_batch")
        rows = sharded.breakdown(b, s, "training", datatype, chip, cast(Recompute, recompute), overlap)
    values = stages_from_parts(model_parts(sharded, rows, datatype), par.pp, split)
    e, m = datatype.bytes, B / (par.dp * b)
    fields = assemble_training(values, chip=chip, e=e, s=s, B=B, b=b, t=par.tp, u=par.sp, p=par.pp, d=par.dp,
                               v=v, zero_stage=zero_stage, hidden_size=sharded.blocks[0][0].hidden_size,
                               flops_per_sequence=flops_per_sequence(model, s, datatype),
                               peak=chip.peak_flops_expr(datatype), ep=par.ep)
    per_params = _data_parallel(values, chip=chip, e=e, m=m, d=par.dp, stride=par.tp * par.sp, ep=par.ep,
                                zero_stage=zero_stage)
    terms = _stage_terms(values, per_params, e=e, p=par.pp, m=m, v=v)
    exprs = {k: x for k, x in fields.items() if k not in _MEMORY}
    exprs.update({f"stage{i}.{j}": x for i, st in enumerate(terms) for j, x in enumerate(st) if j != 3})
    found = merge(rules, *(metrics.assumptions for _, _, metrics in rows))
    return CompiledStep("training", Program.build("training", (s, B, b), exprs, found), len(terms), chip, split,
                        lambda *sizes: [])


def _training_result(compiled: CompiledStep, sizes: tuple, values: tuple) -> "TrainingStep":
    names = compiled.program.names
    n = len(names) - 4 * compiled.stages
    fields = dict(zip(names[:n], values[:n]))
    per_stage = [values[n + 4 * i:n + 4 * i + 4] for i in range(compiled.stages)]
    totals = [w + g + o + a for w, g, o, a in per_stage]
    i = max(range(compiled.stages), key=totals.__getitem__)
    w, g, o, a = per_stage[i]
    return TrainingStep(hardware=compiled.chip, stage_layers=compiled.split, weight_memory=w, gradient_memory=g,
                        optimizer_memory=o, activation_memory=a, memory_per_chip=totals[i], **fields)


def _inference_compiled(model: "Model", hardware: Hardware | str, dtype: Any, parallelism: ParallelismLike,
                        overlap: bool, stage_layers: Optional[Sequence[int]]) -> Optional[CompiledStep]:
    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    check_expert_parallel(par)
    return _inference_program(model, chip, par, DataType.parse(dtype), bool(overlap),
                              None if stage_layers is None else tuple(stage_layers))


def _training_compiled(model: "Model", hardware: Hardware | str, dtype: Any, parallelism: ParallelismLike,
                       recompute: str, interleave: Any, zero_stage: int, overlap: bool,
                       stage_layers: Optional[Sequence[int]]) -> Optional[CompiledStep]:
    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    datatype = DataType.parse(dtype)
    _check_zero(zero_stage, par)
    if recompute not in ("none", "selective", "full"):
        return None  # the uncompiled step raises the layer's own error
    check_expert_parallel(par)
    return _training_program(model, chip, par, datatype, recompute, int(interleave), zero_stage, bool(overlap),
                             None if stage_layers is None else tuple(stage_layers))


def _inference_front(model: "Model", hardware: Hardware | str, dtype: Any, parallelism: ParallelismLike,
                     overlap: bool, stage_layers: Optional[Sequence[int]]) -> Optional[CompiledStep]:
    return _front("inference", lambda: _inference_compiled(model, hardware, dtype, parallelism, overlap, stage_layers),
                  model, hardware, dtype, parallelism, overlap, stage_layers)


def _training_front(model: "Model", hardware: Hardware | str, dtype: Any, parallelism: ParallelismLike,
                    recompute: str, interleave: Any, zero_stage: int, overlap: bool,
                    stage_layers: Optional[Sequence[int]]) -> Optional[CompiledStep]:
    if _sizes(interleave) is None:
        return None
    return _front("training", lambda: _training_compiled(model, hardware, dtype, parallelism, recompute, interleave,
                                                         zero_stage, overlap, stage_layers),
                  model, hardware, dtype, parallelism, recompute, interleave, zero_stage, overlap, stage_layers)


def _check_zero(zero_stage: Any, par: Parallelism) -> None:
    if isinstance(zero_stage, bool) or zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    check_zero_stage(zero_stage, par.pp)


def _inference_fast(model: "Model", hardware: Hardware | str, batch_size: Any, seq_len: Any, dtype: Any,
                    parallelism: ParallelismLike, overlap: bool, prefill_chunk: Any,
                    stage_layers: Optional[Sequence[int]], exact: bool) -> Optional["InferenceStep"]:
    sizes = _sizes(batch_size, seq_len) if prefill_chunk is None and USE_COMPILED else None
    compiled = None if sizes is None else _inference_front(model, hardware, dtype, parallelism, overlap,
                                                           stage_layers)
    return _run(compiled, sizes, exact)


def _run(compiled: Optional[CompiledStep], sizes: Optional[tuple], exact: bool) -> Any:
    """The compiled step at ``sizes``, or ``None`` (then the uncompiled step runs: ``exact`` only)."""
    result = None if compiled is None or sizes is None else compiled(*sizes, exact=exact)
    if result is None and not exact:
        raise ConfigError("exact=False (the float path) needs a compiled step: positive int sizes, numeric model, "
                          "parallelism and chip, and no prefill_chunk")
    return result


def compile_step(model: "Model", hardware: Hardware | str, phase: str = "inference", dtype: Any = "bf16",
                 parallelism: ParallelismLike = None, **options: Any) -> Callable[..., Any]:
    """The step of ``model`` on ``hardware`` compiled once, as a function of its sizes.

    ``phase="inference"``: ``f(batch_size, seq_len, exact=True)`` -> :class:`InferenceStep`
    (``options``: ``overlap``, ``stage_layers``); ``phase="training"``: ``f(seq_len,
    global_batch, micro_batch=1, exact=True)`` -> :class:`TrainingStep` (``options``:
    ``recompute``, ``interleave``, ``zero_stage``, ``overlap``, ``stage_layers``). The
    configuration is validated here, once; each call evaluates compiled code: exact ints and
    Fractions (equal to the uncompiled step), or float64 with ``exact=False`` (agreeing to 1e-12).
    :func:`training_step` and :func:`inference_step` use the same compiled programs whenever
    their sizes are positive ints; a wrong size gets the uncompiled step's error.

    >>> from symcost import models
    >>> f = compile_step(models.get("llama-2-7b"), "H100_SXM", "inference")
    >>> exact, fast = f(8, 2048), f(8, 2048, exact=False)
    >>> abs(fast.ttft - exact.ttft) <= 1e-12 * exact.ttft
    True
    """
    if phase == "inference":
        _inference_front(model, hardware, dtype, parallelism, options.get("overlap", False),
                         options.get("stage_layers"))

        def infer(batch_size: Any, seq_len: Any, *, exact: bool = True) -> InferenceStep:
            return inference_step(model, hardware, batch_size, seq_len, dtype, parallelism, exact=exact, **options)
        return infer
    if phase != "training":
        raise ConfigError(f"phase: 'training' or 'inference', got {phase!r}")
    known = {"recompute": "none", "interleave": 1, "zero_stage": 1, "overlap": False, "stage_layers": None}
    unknown = set(options) - set(known)
    if unknown:
        raise ConfigError(f"compile_step: unknown training options {sorted(unknown)}; valid: {sorted(known)}")
    _training_front(model, hardware, dtype, parallelism, *({**known, **options}[k] for k in known))

    def train(seq_len: Any, global_batch: Any, micro_batch: Any = 1, *, exact: bool = True) -> TrainingStep:
        return training_step(model, hardware, seq_len, global_batch, micro_batch, dtype, parallelism, exact=exact,
                             **options)
    return train

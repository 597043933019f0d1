"""What the training and the inference steps share: the step records, per-layer values of a model's
parts, the parallelism a step runs under, pipeline stages and their layout (see :mod:`symcost.plan.step`),
and the helpers both steps call (:func:`max_all`, :func:`end_stages`, :func:`span_time`,
:func:`stage_split`, :func:`in_flight`)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import sympy as sp

from ..core._expr import check_divides, exact_value, extreme
from ..core.dtypes import DataType
from ..core.metrics import LayerMetrics
from ..core.ops import Collective, CollectiveKind, weight_elements
from ..core.parallelism import Parallelism, ParallelismLike
from ..errors import ConfigError
from ..hardware import Hardware
from ..hardware.timing import collective_time
from ..models.model import ByPart, Model

# NB: Megatron-LM accumulates gradients in fp32 "main grads" and keeps Adam's fp32 master weights,
# first and second moments: 4 and 4 + 4 + 4 bytes per parameter beside the weights themselves.
GRADIENT_BYTES = sp.Integer(4)
OPTIMIZER_BYTES = sp.Integer(12)


def _fits(memory: Any, chip: Hardware) -> Optional[bool]:
    verdict = sp.Le(sp.sympify(memory), sp.sympify(chip.hbm_capacity))
    return None if verdict not in (sp.true, sp.false) else bool(verdict)


def _min(a: Any, b: Any) -> Any:
    # NB: not compared while symbolic (extreme): SymPy's evaluated Min searches for an order
    # between the in-flight count and p - k (a tenth of a cold search) and rarely finds one
    return exact_value(extreme(sp.Min, a, b))


def max_all(values: Sequence[Any]) -> Any:
    """The largest of a few stage values (distinct ones only; plain ``max`` for numbers)."""
    distinct = list(dict.fromkeys(sp.sympify(x) for x in values))
    if len(distinct) == 1:
        return exact_value(distinct[0])
    if all(x.is_number for x in distinct):
        return exact_value(max(distinct))
    return exact_value(extreme(sp.Max, *distinct))  # not compared: SymPy's search costs seconds per step


@dataclass(frozen=True)
class TrainingStep:
    """One optimizer step: times in seconds, memory in bytes per chip (the fullest chip)."""

    step_time: Any
    compute_time: Any
    bubble_time: Any
    pipeline_comm_time: Any
    dp_comm_time: Any
    """The gradient synchronisation after the backward: the data-parallel sync's exposed part, a tied
    embedding's all-reduce between the first and last stage, and the TP all-reduce of the
    gradients of weights each TP rank holds whole (docs/conventions.md §16 item 5)."""
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
    optimizer_time: Any = 0
    """The optimizer step's HBM passes, once per step (:func:`~symcost.plan.training.optimizer_step_bytes`)."""

    @property
    def fits(self) -> Optional[bool]:
        """Whether ``memory_per_chip`` fits the chip's HBM (``None`` while symbolic)."""
        return _fits(self.memory_per_chip, self.hardware)

    def breakdown(self) -> dict[str, Any]:
        """Step time and memory, term by term (for display)."""
        return {"compute": self.compute_time - self.bubble_time, "bubble": self.bubble_time,
                "pipeline_comm": self.pipeline_comm_time, "dp_comm": self.dp_comm_time,
                "optimizer_step": self.optimizer_time,
                "weights": self.weight_memory, "gradients": self.gradient_memory,
                "optimizer": self.optimizer_memory, "activations": self.activation_memory}

    # NB: for people (symcost.plan.display): times, bytes and MFU with units; the fields stay exact
    def __repr__(self) -> str:
        from .display import training_repr
        return training_repr(self)

    def __str__(self) -> str:
        from .display import training_text
        return training_text(self)

    def _repr_latex_(self) -> str:
        from .display import training_latex
        return training_latex(self)

    def _repr_html_(self) -> str:
        from .display import training_html
        return training_html(self)


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

    # NB: for people (symcost.plan.display): times and bytes with units; the fields stay exact
    def __repr__(self) -> str:
        from .display import inference_repr
        return inference_repr(self)

    def __str__(self) -> str:
        from .display import inference_text
        return inference_text(self)

    def _repr_latex_(self) -> str:
        from .display import inference_latex
        return inference_latex(self)

    def _repr_html_(self) -> str:
        from .display import inference_html
        return inference_html(self)


@dataclass(frozen=True)
class DecodeStep:
    """One decode step on an instance that only decodes (:func:`~symcost.plan.inference.decode_step`):
    its time per output token and memory per chip (the fullest stage), in seconds and bytes."""

    tpot: Any
    weight_memory: Any
    kv_cache_memory: Any
    activation_memory: Any
    """The decode step's activation peak (one new token per sequence), not a prefill's."""
    memory_per_chip: Any
    hardware: Hardware

    @property
    def fits(self) -> Optional[bool]:
        """Whether ``memory_per_chip`` fits the chip's HBM (``None`` while symbolic)."""
        return _fits(self.memory_per_chip, self.hardware)


_FIELDS = {"latency": "latency", "weight": "weight_memory_per_chip",
           "activation": "activation_memory_per_chip", "kv": "kv_cache_memory_per_chip"}


def values_from_rows(rows: list[tuple[str, Any, LayerMetrics]]) -> dict[tuple[str, str], Any]:
    """``{(part, quantity): value}`` (part: embedding, blocks summed with their counts, tail) from
    a model's :meth:`~symcost.models.model.Model.breakdown` rows."""
    values: dict[tuple[str, str], Any] = {}
    for key, field in _FIELDS.items():
        part = ByPart.of([(n, sp.sympify(getattr(m, field))) for _, n, m in rows])
        values[("embedding", key)] = part.embedding[1]
        values[("blocks", key)] = sp.Add(*(n * x for n, x in part.blocks))
        values[("tail", key)] = part.final_norm[1] + part.lm_head[1]
    return values


def end_stages(values: dict[tuple[str, str], Any], key: str, p: Any) -> tuple[Any, Any]:
    """(first stage, last stage) of one quantity; the whole model when p = 1."""
    emb, blocks, tail = values[("embedding", key)], values[("blocks", key)], values[("tail", key)]
    if p == 1:
        whole = emb + blocks + tail
        return whole, whole
    return emb + blocks / p, blocks / p + tail


def span_time(kind: CollectiveKind, n: Any, payload: Any, chip: Hardware, stride: Any, count: Any = 1) -> Any:
    """Seconds of ``count`` collectives of ``payload`` bytes over ``n`` chips ``stride`` apart
    (the group spans ``stride * n`` chips, which picks the link tier); 0 for one chip."""
    if n == 1:
        return sp.Integer(0)
    return collective_time(Collective(kind, "dp", n, payload, count, span=stride * n), chip)


def resolve_parallelism(model: "Model", parallelism: ParallelismLike) -> Parallelism:
    """The parallelism a step of ``model`` runs under: the model's own (from its builder or
    :meth:`~symcost.models.model.Model.with_parallelism`), plus the degrees given in ``parallelism``.

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
        # the model sets none: a degree of 1, or an option at its default (cp_comm_type "p2p")
        if mine != type(own).model_fields[field].default and mine != theirs:
            raise ConfigError(f"parallelism: {field}={theirs} conflicts with the model's own {field}={mine} "
                             f"(set when it was built or by with_parallelism); give the same degree or leave it out",
                             field=field)
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

    With ``expert_tensor_parallel`` given (Megatron's expert grid), the rule is Megatron-Core's own
    (``initialize_model_parallel``: ``world_size % (ETP * EP * PP) == 0``): ETP x EP divides a
    pipeline stage's ``TP x CP x DP`` ranks; the routed experts are then data-parallel over
    ``TP x CP x DP / (ETP x EP)`` ranks.

    >>> check_expert_parallel(Parallelism(expert_parallel=8, data_parallel=8))
    >>> check_expert_parallel(Parallelism(expert_parallel=8))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    symcost.errors.AssumptionError: data_parallel must be divisible by expert_parallel (...) (got 1 and 8)
    >>> check_expert_parallel(Parallelism(tensor_parallel=2, data_parallel=16, expert_parallel=32,
    ...                                   expert_tensor_parallel=1))
    """
    if par.expert_grid:
        check_divides(par.tp * par.cp * par.dp, par.etp * par.ep, "tensor_parallel * context_parallel * data_parallel",
                      by="expert_tensor_parallel * expert_parallel", note=" (Megatron-Core's expert grid)")
        return
    check_divides(par.dp, par.ep, "data_parallel", by="expert_parallel",
                  note=" (experts are sharded over the data-parallel replicas, each split tensor_parallel "
                  "ways, as Megatron-Core's default expert_tensor_parallel = tensor_parallel)")


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


def checked_switch(value: Any, field: str) -> bool:
    """A step's on/off keyword as a bool: ``True``, ``False`` (NumPy's too) or 1/0; anything else,
    a string above all (``"no"`` is truthy), is one line naming ``field``.

    >>> checked_switch(0, "overlap")
    False
    """
    import numpy as np

    if isinstance(value, (bool, np.bool_)) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ConfigError(f"{field} must be True or False, got {value!r}")


def checked_stage_layers(value: Any) -> Optional[tuple[Any, ...]]:
    """``stage_layers`` as a tuple (``None`` stays ``None``): a list or tuple of blocks per stage,
    checked against the model by :func:`stage_split`; a bare number or a string is one line.

    >>> checked_stage_layers([16, 16])
    (16, 16)
    """
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"stage_layers must be a sequence of ints, one per pipeline stage (e.g. [16, 16]), "
                          f"got {value!r}")
    return tuple(value)


def stage_split(model: "Model", p: Any, v: Any, stage_layers: Optional[Sequence[int]]) -> Optional[tuple[int, ...]]:
    """The blocks per stage of ``model`` under ``p`` stages and ``v`` chunks per stage, checked;
    ``None`` while the depth or ``p`` is symbolic (then ``p * v`` must divide ``L``: even stages)."""
    L = model.num_layers
    numeric = all(sp.sympify(x).is_Integer for x in (L, p, v))
    if stage_layers is None and not numeric:
        check_divides(L, p * v, "num_layers", by="pipeline_parallel * interleave")
        return None
    if not numeric:
        raise ConfigError("stage_layers needs a numeric num_layers, pipeline_parallel and interleave")
    if stage_layers is None:
        split = pipeline_stages(int(L), int(p))
    else:
        split = checked_stage_layers(stage_layers) or ()
        if (len(split) != int(p) or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in split)
                or sum(split) != int(L)):
            raise ConfigError(f"stage_layers must be {int(p)} positive ints (one per pipeline stage) adding up to "
                             f"num_layers {int(L)}, got {split}")
    if int(v) > 1 and any(n % int(v) for n in split):
        # NB: Megatron-LM's account_for_embedding_in_pipeline_split / account_for_loss_in_pipeline_split
        # count the embedding as a layer of the first virtual stage and the loss as one of the last
        # (Megatron-Bridge runs Llama 3.1 405B so: 126 + 2 layers in 8 x 8 chunks of 2)
        ends = [n + (k == 0) + (k == len(split) - 1) for k, n in enumerate(split)]
        if any(n % int(v) for n in ends):
            raise ConfigError(f"interleave ({int(v)}) must divide every pipeline stage's blocks (or, counting the "
                              f"embedding and the loss as one layer each, Megatron's accounting, the first and last "
                              f"stage's blocks + 1), got stages {split}")
    return split


def model_parts(model: "Model", rows: Sequence[tuple[str, Any, LayerMetrics]], dtype: Any,
                gemm_weight: bool = False) -> dict[str, Any]:
    """Per-layer values the steps assemble stages from, given ``model.breakdown(...)`` rows:
    ``{"embedding": q, "blocks": [(count, q), ...], "tail": q}`` with ``q`` = ``{quantity: value
    of one layer}`` for latency, weight, activation, kv and expert_weight (routed-expert weight
    bytes; MoE blocks only); the tail is the final norm plus the LM head, and with a tied LM head
    ``tied_weight``, the bytes of the table's copy a last pipeline stage holds
    (:func:`stages_from_parts`). With ``gemm_weight`` (training rows) each block also states
    ``gemm_weight``, the bytes of its GEMM weights (:func:`~symcost.core.ops.weight_elements`):
    what a narrow-format weight copy covers (the embedding is a lookup, the norms no GEMMs, and
    the LM head, Megatron-Core's own ``ColumnParallelLinear``, runs outside Transformer Engine).
    Each block and the tail state ``tp_summed``, the parameters whose gradients the training step
    sums over TP once per step (:attr:`~symcost.layers.base.Layer.tp_summed_params`: the final norm's
    in the tail; the embedding has none), and each block ``buffer``, its parameters trained without
    a gradient (:attr:`~symcost.layers.base.Layer.buffer_params`, replicated on every chip)."""
    e = DataType.parse(dtype).bytes

    def quantities(metrics: LayerMetrics) -> dict[str, Any]:
        return {key: sp.sympify(getattr(metrics, field)) for key, field in _FIELDS.items()}

    part = ByPart.of([m for _, _, m in rows])
    tail = quantities(part.final_norm)
    tail = {k: tail[k] + x for k, x in quantities(part.lm_head).items()}
    if model.lm_head.tied:
        tail["tied_weight"] = sp.sympify(model.lm_head.table_memory(e))
    tail["tp_summed"] = sp.sympify(model.final_norm.tp_summed_params)
    blocks = []
    for (blk, n), metrics in zip(model.blocks, part.blocks, strict=True):
        q = quantities(metrics)
        q["tp_summed"] = sp.sympify(blk.tp_summed_params)
        q["buffer"] = sp.sympify(blk.buffer_params)
        if blk.num_routed_experts is not None:
            q["expert_weight"] = sp.sympify(blk.expert_params_per_chip * e)
        if gemm_weight:
            q["gemm_weight"] = weight_elements(metrics.ops) * e
        blocks.append((n, q))
    return {"embedding": quantities(part.embedding), "blocks": blocks, "tail": tail}


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


_ZERO = sp.Integer(0)


def stages_from_parts(parts: dict[str, Any], p: Any, split: Optional[tuple[int, ...]]) -> list[dict[str, Any]]:
    """Each distinct stage of :func:`stage_layout` as ``{quantity: the stage's total, "index": k}``
    from :func:`model_parts`.

    A tied LM head (``tail["tied_weight"]``) under pipeline parallelism: the last stage holds a
    copy of the embedding's table for its head, as Megatron-LM does
    (``LanguageModule.setup_embeddings_and_output_layer``: a second copy of the word embeddings
    on the last stage, a parameter there) and vLLM (its last PP rank builds ``embed_tokens`` when
    ``tie_word_embeddings``); its bytes join the stage's ``weight``. The first and the last stage
    then keep the two copies equal by all-reducing their gradients (Megatron's embedding group,
    ``finalize_model_grads``): each stage states it as ``embedding_group`` (1 or 0) and the
    table's bytes it syncs as ``shared_weight``. One stage holds one table: no copy, no group."""
    emb, tail, blocks = parts["embedding"], parts["tail"], parts["blocks"]
    tied = tail.get("tied_weight")
    keys = [key for key in dict.fromkeys([*emb, *tail, *(k for _, q in blocks for k in q)]) if key != "tied_weight"]
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
        if tied is not None:
            grouped = first != last  # the first or the last of several stages (p = 1: both)
            stage["weight"] += tied if last and not first else 0
            stage["shared_weight"], stage["embedding_group"] = (tied, sp.Integer(1)) if grouped else (_ZERO, _ZERO)
        stage["index"] = sp.sympify(k)
        out.append(stage)
    return out


def checked_recompute_layers(value: Any, recompute: str) -> Optional[int]:
    """``recompute_layers`` checked against the mode: ``None`` (every block under ``recompute``),
    or, with ``recompute="full"`` only, an integer ``N >= 0`` (anything :func:`operator.index`
    takes, a SymPy or NumPy integer too; not a bool), returned as an int: the first blocks of each
    pipeline stage's chunks recomputed in full, Megatron-Core's ``--recompute-granularity full
    --recompute-method block --recompute-num-layers N`` (:func:`block_recompute_stages`); the upper
    bound, a stage's blocks, is checked there.

    >>> checked_recompute_layers(sp.Integer(5), "full"), checked_recompute_layers(None, "selective")
    (5, None)
    """
    if value is None:
        return None
    if recompute != "full":
        raise ConfigError(f"recompute_layers needs recompute='full' (Megatron's recompute_method 'block' recomputes "
                          f"whole layers), got recompute={recompute!r}", field="recompute_layers")
    try:
        n = -1 if isinstance(value, bool) else operator.index(value)
    except TypeError:
        n = -1
    if n < 0:
        raise ConfigError(f"recompute_layers must be an int >= 0 (blocks recomputed per pipeline stage), got {value!r}",
                          field="recompute_layers")
    return n


def chunk_blocks(blocks: int, v: int, first: bool, last: bool) -> list[int]:
    """Blocks of each of a stage's ``v`` chunks (virtual stages), in order: ``blocks / v`` each; where
    ``v`` does not divide them, :func:`stage_split`'s Megatron accounting (the embedding a layer of
    the first stage's first chunk, the loss one of the last stage's last chunk).

    >>> chunk_blocks(4, 2, False, False), chunk_blocks(3, 2, True, False), chunk_blocks(32, 1, True, True)
    ([2, 2], [1, 2], [32])
    """
    if blocks % v == 0:
        return [blocks // v] * v
    sizes = [(blocks + first + last) // v] * v
    sizes[0] -= first
    sizes[-1] -= last
    return sizes


def chunk_groups(held: Sequence[int], chunks: Sequence[int], n: Optional[int]) -> list[tuple[list[int], list[int]]]:
    """Per chunk of a stage (``held`` blocks per group, in the model's order, cut into ``chunks``),
    the groups of its blocks in order: ``(recomputed, kept)``, the first ``n`` of the chunk
    (``None``: all) and the rest, Megatron-Core's ``block`` method (``layer_idx < n``: a chunk shorter
    than ``n`` recomputes all its blocks). NB: a stage's chunks take its blocks contiguously, as
    :func:`stage_layout` cuts stages; Megatron's interleaved chunks hold layers ``p`` chunks apart,
    so a model whose block groups change mid-stage may group a chunk's blocks differently.

    >>> chunk_groups((2, 4), [3, 3], 2)   # chunks (g0 g0 g1) (g1 g1 g1)
    [([0, 0], [1]), ([1, 1], [1])]
    """
    order = [g for g, count in enumerate(held) for _ in range(int(count))]
    out, start = [], 0
    for size in chunks:
        r = size if n is None else min(n, size)
        out.append((order[start:start + r], order[start + r:start + size]))
        start += size
    return out


def rebuild_peak(runs: Sequence[tuple[Any, dict[str, Any], dict[str, Any]]], rest: Any) -> list[Any]:
    """What rebuilding a chunk's recomputed blocks may add to its stage's peak, beyond its
    in-flight micro-batches (the candidates, each to be maxed with 0).

    ``runs``: ``(count, kept, full)`` per run of recomputed blocks of one group, in order (``kept``,
    ``full``: the group's :func:`model_parts` values without and with recomputation: ``in`` =
    ``full["activation"]``, the block's saved input); ``rest``: the activations the chunk keeps
    after them (its other blocks', and the tail on the last stage's last chunk). The 1F1B stage's
    peak holds its in-flight micro-batches of ``S`` each; the oldest one's backward runs the tail
    and the kept blocks first, freeing each, then rebuilds the recomputed ones from the last: block
    ``j`` holds the inputs of blocks ``1..j`` and its own activations back, ``kept_j - in_j`` more.
    The peak is ``max(in_flight S, (in_flight - 1) S + emb + sum_{i <= j} in_i + kept_j - in_j)``,
    i.e. ``in_flight S + max(0, kept_j - in_j - sum_{i > j} in_i - rest)`` (``emb``, before the
    blocks, cancels); within a run the last block is the largest.

    >>> rebuild_peak([(4, {"activation": 90}, {"activation": 4})], 16)  # 4 blocks, then the tail
    [70]
    """
    out = []
    for i, (_, q, f) in enumerate(runs):
        later = sp.Add(*(c * g["activation"] for c, _, g in runs[i + 1:]))
        out.append(q["activation"] - f["activation"] - later - rest)
    return out


def _runs(groups: Sequence[int], blocks: Sequence[tuple[Any, dict[str, Any]]],
          full: Sequence[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:
    runs: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []
    for g in groups:
        if runs and runs[-1][1] is blocks[g][1]:
            runs[-1] = (runs[-1][0] + 1, runs[-1][1], runs[-1][2])
        else:
            runs.append((1, blocks[g][1], full[g][1]))
    return runs


def _stage_peak(kept: dict[str, Any], full: dict[str, Any], chunks: list[tuple[list[int], list[int]]],
                last: bool) -> Any:
    candidates: list[Any] = [_ZERO]
    for c, (recomputed, rest) in enumerate(chunks):
        held = sp.Add(*(kept["blocks"][g][1]["activation"] for g in rest))
        if last and c == len(chunks) - 1:
            held += kept["tail"].get("activation", _ZERO)
        candidates += rebuild_peak(_runs(recomputed, kept["blocks"], full["blocks"]), held)
    return max_all(candidates)


def _symbolic_full_peak(kept: dict[str, Any], full: dict[str, Any], held: tuple, last: bool, v: Any) -> Any:
    # every block recomputed, the stage's share of each group in order; interleaved (v > 1) a chunk
    # without the tail holds 1/v of each, the largest candidate
    runs = [(c / v, q, f) for c, (_, q), (_, f) in zip(held, kept["blocks"], full["blocks"], strict=True)]
    rest = kept["tail"].get("activation", _ZERO) if last and v == 1 else _ZERO
    return max_all([_ZERO, *rebuild_peak(runs, rest)])


def block_recompute_stages(kept: dict[str, Any], full: dict[str, Any], p: Any, split: Optional[tuple[int, ...]],
                           v: Any, n: Optional[int]) -> list[dict[str, Any]]:
    """:func:`stages_from_parts` under Megatron-Core's ``--recompute-granularity full
    --recompute-method block --recompute-num-layers n``: in each pipeline stage (each of its ``v``
    chunks when interleaved: every chunk is a ``TransformerBlock`` of its own) the first ``n``
    blocks run checkpointed (``kept``: :func:`model_parts` without recomputation; ``full``: with
    ``recompute="full"``), the others keep their activations; the embedding, the final norm and
    the head are not recomputed. ``n=None``: every block, plain ``recompute="full"``.
    NVIDIA/Megatron-LM core_v0.14.0
    ``megatron/core/transformer/transformer_block.py`` ``_checkpointed_forward``: ``for layer_idx in
    range(self.num_layers_per_pipeline_rank)`` (``len(self.layers)``, the chunk's layers) checkpoints
    ``custom(layer_idx, layer_idx + 1)`` while ``layer_idx < recompute_num_layers`` and runs the rest
    plainly (``megatron/training/arguments.py``: "the number of individual Transformer layers to
    recompute within each pipeline stage"; later releases moved the loop to ``megatron/core/recompute.py``):
    a chunk shorter than ``n`` recomputes all its blocks, so ``n`` is bounded by the largest
    pipeline stage's blocks, not a chunk's, and clamped per chunk (:func:`chunk_groups`).
    Under FP8 the loop shifts its window past layers whose input needs no gradient
    (``recompute_skip_num_layers``); none here: the embedding's output and a stage's received input
    (``p2p_communication.py`` allocates it with ``requires_grad=True``) both need one.

    A stage of ``r_g`` recomputed blocks of group ``g`` costs ``stage_kept + sum_g r_g (full_g -
    kept_g)`` in latency (each one's forward again in the backward) and activations (it saves its
    input only). Its peak adds ``recompute_peak`` beside the in-flight micro-batches
    (:func:`rebuild_peak`, the largest over its chunks, at least 0): a block is rebuilt during the
    oldest micro-batch's backward after its later blocks and tail are freed, so it raises the peak
    only where they held less than it brings back (every block of a chunk recomputed, as plain
    ``full``). The split must be numeric for ``n``.

    >>> import symcost as sc
    >>> gpt = sc.Model.gpt(hidden_size=64, num_heads=4, num_layers=4, vocab_size=128, seq_len=32)
    >>> rows = {mode: gpt.breakdown(1, 32, "training", "bf16", "H100_SXM", mode) for mode in ("none", "full")}
    >>> kept, full = (model_parts(gpt, rows[mode], "bf16") for mode in ("none", "full"))
    >>> [(s["index"], s["recompute_peak"]) for s in block_recompute_stages(kept, full, 2, (2, 2), 1, 1)]
    [(0, 0), (1, 0)]
    >>> [s["recompute_peak"] for s in block_recompute_stages(kept, full, 2, (2, 2), 1, None)]
    [86016, 69632]
    """
    layout = stage_layout([c for c, _ in kept["blocks"]], p, split)
    if split is None:
        if n is not None:
            raise ConfigError("recompute_layers needs a numeric num_layers, pipeline_parallel and interleave "
                              "(which blocks each stage recomputes)", field="recompute_layers")
        out = stages_from_parts(full, p, split)
        for stage, (_, held, _, last) in zip(out, layout, strict=True):
            stage["recompute_peak"] = _symbolic_full_peak(kept, full, held, last, v)
        return out
    largest = max(sum(held) for _, held, _, _ in layout)
    if n is not None and n > largest:
        raise ConfigError(f"recompute_layers must be between 0 and {largest}, the blocks of the largest pipeline "
                          f"stage, got {n}", field="recompute_layers")
    out = stages_from_parts(kept if n is not None else full, p, split)
    for stage, (_, held, first, last) in zip(out, layout, strict=True):
        chunks = chunk_groups(held, chunk_blocks(sum(held), int(v), first, last), n)
        if n is not None:
            counts = [sum(g == i for recomputed, _ in chunks for g in recomputed) for i in range(len(held))]
            for key in ("latency", "activation"):
                stage[key] = stage[key] + sp.Add(*(r * (f[key] - q[key]) for r, (_, q), (_, f)
                                                   in zip(counts, kept["blocks"], full["blocks"], strict=True) if r))
        stage["recompute_peak"] = _stage_peak(kept, full, chunks, last)
    return out


def in_flight(k: Any, p: Any, m: Any, v: Any) -> Any:
    """Micro-batches of activations stage ``k`` holds at its peak: 1F1B ``min(p - k, m)``;
    interleaved, Megatron-LM's warm-up ``2(p - k - 1) + (v - 1)p`` chunks plus one, at most all
    ``m v``, each chunk ``1/v`` of the stage."""
    if p == 1:
        return sp.Integer(1)
    if v == 1:
        return _min(p - k, m)
    return _min(2 * (p - k - 1) + (v - 1) * p + 1, m * v) / v

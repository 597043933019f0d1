"""Plan a deployment: which layout, at which concurrency, meets the TTFT and TPOT targets with the
most tokens/s per GPU, aggregated or disaggregated, and the Pareto front of tokens/s/user
against tokens/s/GPU.

**Aggregated**: ``r = floor(G / (t p))`` replicas of one engine at TP ``t`` x PP ``p``, each at
concurrency ``c`` (its :func:`~symcost.plan.serving.batching.serving_curve`, swept over
``c = 1 .. max_concurrency``). A replica's TTFT and TPOT are the deployment's; its tokens/s per
GPU too (``r`` replicas serve ``r`` times the tokens on ``r`` times the GPUs).

**Attention data-parallelism with expert parallelism** (a mixture-of-experts model; SGLang's
``--enable-dp-attention``, the wide-EP deployments of DeepSeek-V3): ``d`` ranks each run attention,
KV cache and the dense parts for their own requests and hold ``1/d`` of the experts, the tokens
crossing to their experts and back in the all-to-alls of the core's expert grid (EP ``d`` over DP
``d``, :func:`_par`). One rank's curve is an engine's (its chip, its concurrency); a replica is
``d`` ranks. NB: every rank at the same load; the engine's memory defaults are a TP 1 rank's
(SGLang adds to its reserve with DP attention, not modelled); prefill pools stay TP x PP.

**Disaggregated** (DistServe, Zhong et al. 2024): ``n_p`` prefill instances (TP x PP layout of
their own) and ``n_d`` decode instances (another), ``n_p t_p p_p + n_d t_d p_d <= G``. A decode
instance runs a continuous batch of ``B`` requests, decode only (no prefill interference):
``TPOT(B)`` is the static decode step at the mean context (:meth:`EngineSteps.decode`), and it
serves ``B / (D TPOT(B))`` requests/s, its KV cache bounding ``B`` (as the aggregated engine's:
the engine's memory rule and fraction, paged KV blocks). A prefill instance is
:mod:`~symcost.plan.disaggregated`'s M/D/1 queue of batch-1 prompts, its KV cache sent over the
scale-out link (:func:`~symcost.plan.disaggregated.kv_transfer` on both sides): the TTFT target
``X`` allows a utilization ``rho <= 2 T'/(D_m + 2 T')``, ``T' = X - D_s - T_kv`` (solving
:func:`~symcost.plan.disaggregated.mean_ttft` ``<= X``), so ``n_p rho/D_m`` requests/s. A mix of
prompt lengths spreads the service time: the queue is M/G/1, ``D_m`` the mean ``E[S]`` over the
prompts, the mean wait Pollaczek-Khinchine's ``lambda E[S^2]/(2 (1 - rho))`` and the load
``rho <= 2 E[S] T'/(E[S^2] + 2 E[S] T')`` (:mod:`~symcost.plan.serving.queueing` says which queue
is used where). The
deployment serves ``lambda = min(n_p rho/D_m, n_d B/(D TPOT(B)))`` requests/s, ``lambda O`` tokens/s
over its GPUs; its TPOT is ``TPOT(B)`` (NB: conservative when the decode pool is not the bound).

**A percentile TTFT target** (``ttft_percentile`` ``q``, e.g. 9/10 for p90): a disaggregated
prefill instance's wait has M/D/1's distribution (:mod:`~symcost.plan.serving.queueing`), whose
``q``-quantile in service times depends on the load alone, so the target allows the largest
``rho`` with ``W(T'/D_m) >= q`` (:func:`~symcost.plan.serving.queueing.md1_load_for_wait`, once
per prefill and decode layout) in place of the mean's ``2 T'/(D_m + 2 T')``, and a row's TTFT is
``D_s + T_kv`` plus the ``q``-quantile of the wait at its load (float64 rows: cached per load,
:func:`~symcost.plan.serving.queueing.wait_in_services`). NB: an aggregated row is a closed loop
at steady state, every request alike (the mean-field model of :mod:`.batching`): it has one TTFT,
so its percentile is its mean; the first wave of a benchmark's start, whose TTFTs spread, is not
the steady state the plan sizes.

A point meets the SLA when its TTFT and TPOT are within the targets; the front keeps the points
meeting it that no other point beats on both tokens/s/user (``1/TPOT``) and tokens/s/GPU. The
search is a float64 sweep; the best point of each kind is evaluated again exactly.

**Cost**: at a price ``P`` per GPU-hour, the plan's ``G`` GPUs cost ``P G`` per hour whether a
deployment uses them all or not, so a deployment serving ``X`` output tokens/s costs
``P G 10^6/(3600 X)`` per million output tokens (``cost_per_million_tokens``). The objective
``"cost"`` takes the cheapest (the most tokens/s over all GPUs); ``"throughput"`` (the default) the
most tokens/s per GPU it uses (per GPU used, the cost would rank the deployments the same way).
A budget ``B`` per hour buys ``floor(B/P)`` GPUs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import sympy as sp

from ...core import symbols as sym
from ...errors import ConfigError, SymcostError
from ...hardware import Hardware
from ...hardware import get as get_hardware
from ...hardware.serving import memory_bound, paged_tokens
from ...models.model import Model
from ..disaggregated import kv_transfer
from ..inference import decode_step, inference_step, prefill_stage_time
from .batching import engine_defaults, serving_curve
from .queueing import md1_load_for_wait, md1_wait_quantile, mg1_load_for_mean_wait, mg1_mean_wait, wait_in_services
from .steps import engine_steps
from .workload import Workload, exact_number

__all__ = ["Deployment", "DeploymentPlan", "gpus_for_budget", "pareto_front", "plan_deployment"]

COLUMNS = ("kind", "layout", "gpus", "concurrency", "ttft", "tpot", "tokens_per_second", "tokens_per_second_per_gpu",
           "tokens_per_second_per_user", "memory_per_chip", "cost_per_million_tokens", "meets_sla")
"""The columns of :meth:`DeploymentPlan.to_pandas`, one row per evaluated deployment."""


@dataclass(frozen=True)
class Deployment:
    """One deployment at one load: ``kind`` ``"aggregated"`` or ``"disaggregated"``; ``layout``
    says its instances (``"2 x TP 4"``, ``"prefill 1 x TP 4 + decode 1 x TP 4"``); ``gpus`` it
    uses; ``concurrency`` the requests in flight over all of it; times in seconds, rates per
    second (float64 from the sweep, exact for :attr:`DeploymentPlan.best`); ``memory_per_chip``
    the fullest chip's bytes at that load (weights, KV cache, activations);
    ``cost_per_million_tokens`` the plan's GPUs' price per million output tokens (``None`` without
    a price, in every row, the table and the JSON alike; the module's docstring)."""

    kind: str
    layout: str
    gpus: int
    concurrency: Any
    ttft: Any
    tpot: Any
    tokens_per_second: Any
    tokens_per_second_per_gpu: Any
    tokens_per_second_per_user: Any
    memory_per_chip: Any
    cost_per_million_tokens: Any
    meets_sla: bool

    def __str__(self) -> str:
        from ...core import units

        return (f"{self.kind} {self.layout} ({self.gpus} GPUs) at concurrency {float(self.concurrency):.4g}: "
                f"{float(self.tokens_per_second_per_gpu):,.0f} tokens/s/GPU, "
                f"{float(self.tokens_per_second_per_user):,.1f} tokens/s/user, TTFT "
                f"{units.format_time(self.ttft, digits=3)}, TPOT {units.format_time(self.tpot, digits=3)}")


def pareto_front(user: Any, gpu: Any) -> np.ndarray:
    """The indices of the points no other point beats on both ``user`` and ``gpu`` (higher is
    better; of equal points the first), ordered by ``user`` descending.

    >>> pareto_front([3, 2, 1, 2], [1, 2, 3, 1]).tolist()
    [0, 1, 2]
    """
    user, gpu = np.asarray(user, dtype=float), np.asarray(gpu, dtype=float)
    order = np.lexsort((-gpu, -user))  # user descending, then gpu descending
    front, best = [], -np.inf
    for i in order:
        if gpu[i] > best:
            front.append(i)
            best = gpu[i]
    return np.asarray(front, dtype=int)


@dataclass(frozen=True)
class _Options:
    """What every engine of the plan shares."""

    model: Model
    chip: Hardware
    workload: Workload
    gpus: int
    dtype: Any
    ttft: sp.Expr
    tpot: sp.Expr
    token_budget: Optional[int]
    memory_fraction: Any
    max_concurrency: int
    gpu_price: Any = None
    objective: str = "throughput"
    ttft_percentile: Any = None
    """The quantile ``q`` the TTFT target holds at (``None``: the mean); the module's docstring."""
    max_num_seqs: Optional[int] = None
    """The most requests an engine runs (``None``: the engine profile's)."""

    def prefill_load(self, slack: Any, stage: Any, square: Any) -> Any:
        """The utilization a prefill instance may run at, its service time of mean ``E[D_m]``
        (``stage``) and second moment ``square``, ``T'`` being the TTFT target's slack: M/G/1's
        ``2 E[S] T'/(E[S^2] + 2 E[S] T')`` for the mean (M/D/1's ``2 T'/(D_m + 2 T')`` for one
        prompt length), else the largest load whose M/D/1 ``q``-quantile wait is ``T'`` (the
        module's docstring)."""
        if self.ttft_percentile is None:
            return mg1_load_for_mean_wait(slack, stage, square)
        return _load_for_wait(self.ttft_percentile, sp.Rational(slack / stage))

    def cost(self, tokens_per_second: Any) -> Any:
        """``P G 10^6/(3600 X)`` (``None`` without a price): the module's docstring."""
        if self.gpu_price is None:
            return None
        return self.gpu_price * self.gpus * 10**6 / (3600 * tokens_per_second)

    def engine(self, layout: tuple[int, int, int]) -> Any:
        """The engine's budget, memory fraction and rule, KV block on ``layout``
        (:func:`~symcost.plan.serving.batching.engine_defaults`)."""
        return engine_defaults(self.chip, layout[0] * layout[1], self.token_budget, self.memory_fraction,
                               self.max_num_seqs)


@functools.lru_cache(maxsize=256)
def _load_for_wait(q: sp.Rational, wait: sp.Rational) -> sp.Rational:
    return md1_load_for_wait(q, wait)


def _layout(tp: int, pp: int, dp: int = 1) -> str:
    if dp != 1:
        return f"DP-attention {dp} x EP {dp}"
    return f"TP {tp}" + (f" x PP {pp}" if pp != 1 else "")


def _par(tp: int, pp: int, dp: int = 1) -> dict[str, int]:
    """The parallelism of a layout: TP x PP, or (``dp > 1``) attention data-parallel over ``dp``
    ranks with the experts split ``dp`` ways (the core's expert grid: EP ``dp`` over DP ``dp``,
    ETP 1), each rank running attention for its own requests."""
    if dp != 1:
        return {"data_parallel": dp, "expert_parallel": dp, "expert_tensor_parallel": 1}
    return {"tensor_parallel": tp, "pipeline_parallel": pp}


def _is_moe(model: Model) -> bool:
    """Whether a block of ``model`` runs a mixture of experts (the layer contract's ``num_routed_experts``)."""
    return any(blk.num_routed_experts is not None for blk, _ in model.blocks)


def _powers(gpus: int, chip: Hardware, least: int = 1) -> list[int]:
    return [2**k for k in range(8) if least <= 2**k <= min(gpus, int(chip.scale_up_domain))]


def layouts(model: Model, chip: Hardware, gpus: int, tp: Optional[Sequence[int]] = None,
            pp: Sequence[int] = (1,), ep: Optional[Sequence[int]] = None) -> list[tuple[int, int, int]]:
    """The ``(tp, pp, dp)`` layouts the search tries: TP degrees of ``tp`` (default 1, 2, 4, ... up
    to the scale-up domain) and PP degrees of ``pp`` whose product fits ``gpus`` and whose
    sharding the model allows (``dp = 1``); for a mixture-of-experts model also attention
    data-parallelism with expert parallelism, ``(1, 1, d)`` for ``d`` of ``ep`` (default 2, 4, ...
    up to the scale-up domain; degrees below 2 are none) that divide its experts (:func:`_par`).
    EP degrees of 2 or more for a dense model are one line (``ep: ...``), not dropped.

    >>> from symcost import models
    >>> layouts(models.get("llama-3-8b"), get_hardware("H100_SXM"), 8)
    [(1, 1, 1), (2, 1, 1), (4, 1, 1), (8, 1, 1)]
    >>> layouts(models.get("mixtral-8x7b"), get_hardware("H100_SXM"), 8, tp=[8])
    [(8, 1, 1), (1, 1, 2), (1, 1, 4), (1, 1, 8)]
    """
    tps = tp if tp is not None else _powers(gpus, chip)
    candidates = [(int(t), int(p), 1) for t in tps for p in pp if t * p <= gpus]
    if ep is not None and not _is_moe(model) and any(int(d) >= 2 for d in ep):
        raise ConfigError(f"ep: attention-DP x EP degrees need a mixture-of-experts model; {model.name} has no "
                          f"routed experts (got {[int(d) for d in ep]})")
    if _is_moe(model):
        eps = ep if ep is not None else _powers(gpus, chip, 2)
        candidates += [(1, 1, int(d)) for d in eps if 2 <= d <= gpus]
    found = []
    for lay in candidates:
        try:
            model.with_parallelism(_par(*lay))
        except (ValueError, SymcostError):
            continue  # heads, widths or experts the degree does not divide
        found.append(lay)
    return found


def one_stage_weights(model: Model, dtype: Any, parallelism: Any) -> Any:
    """The weights per chip of ``model`` in one pipeline stage under ``parallelism`` (added to the
    model's own), read off its layers without costing a step: every part's
    :meth:`~symcost.layers.base.Layer.weight_memory` times its count, the sum the step's stage
    memory takes (:func:`~symcost.plan.pipeline.stages_from_parts`; one stage holds one table of a
    tied LM head). A model whose resolved pipeline degree is not 1 (its own ``pipeline_parallel``
    or the one given) has several stages: refused (``ConfigError``), its stages' weights are not
    this sum.

    >>> from symcost import models
    >>> m = models.get("llama-3-8b")
    >>> one_stage_weights(m, "bf16", {"tensor_parallel": 2}) == m.inference_step(
    ...     "H100_SXM", 1, 1, parallelism={"tensor_parallel": 2}).weight_memory
    True
    """
    from ...core.dtypes import DataType
    from ...core.phase import Phase
    from ...layers.base import Context, narrow_gemm_bytes, tensor_bytes
    from ..pipeline import resolve_parallelism

    datatype, phase = DataType.parse(dtype), Phase.DECODE
    par = resolve_parallelism(model, parallelism)
    if par.pp != 1:
        raise ConfigError(f"pipeline_parallel: one_stage_weights sums one stage; {model.name} runs "
                          f"pipeline_parallel={par.pp} (its own or the one given), whose stages hold parts of it",
                          field="pipeline_parallel")
    sharded = model.with_parallelism(par)
    one = sp.Integer(1)
    return sp.Add(*(n * layer.weight_memory(Context(one, one, phase, tensor_bytes(datatype, phase), layer.parallelism,
                                                    "none", narrow_gemm_bytes(datatype, phase), datatype))
                    for _, layer, n in sharded.parts()))


def _no_room(opts: _Options, layout: tuple[int, int, int]) -> bool:
    """Whether a one-stage ``layout``'s weights alone exceed its engine's memory bound: the room
    ``bound(W, A) - W - A`` left for the KV cache is below 0 at ``A = 0``, and no larger under
    activations ``A >= 0`` (each rule of :func:`~symcost.hardware.serving.memory_bound`: ``phi M -
    W - A``, ``phi (M - W - A)``, ``phi M - W``), so no request fits: :func:`serving_curve`
    raises, and neither a prefill nor a decode instance fits (``None``). Said before the layout's
    symbolic step is built (most of a plan's time); ``False`` where it is not shown (several
    stages, symbolic sizes, an error the steps report their own way). The stages and the engine's
    GPUs are the degrees the steps run with (:func:`~symcost.plan.pipeline.resolve_parallelism`:
    the model's own where the layout gives none, as :func:`serving_curve` resolves them); a layout
    whose resolved TP x PP is not its own (a model built with its own degrees) is not ruled out."""
    from ..pipeline import resolve_parallelism

    try:
        par = resolve_parallelism(opts.model, _par(*layout))
    except (ValueError, SymcostError):
        return False  # a layout the model's own degrees refuse: the steps report it
    if par.pp != 1 or (par.tp, par.pp) != (layout[0], layout[1]):
        return False
    try:
        engine = engine_defaults(opts.chip, int(par.tp * par.pp), opts.token_budget, opts.memory_fraction,
                                 opts.max_num_seqs)
        weights = one_stage_weights(opts.model, opts.dtype, par)
    except SymcostError:
        return False
    room = sp.sympify(memory_bound(engine.memory_rule, engine.memory_fraction, opts.chip.hbm_capacity, weights, 0)
                      - weights)
    return bool(room.is_number and room < 0)


def _aggregated(opts: _Options, layout: tuple[int, int, int]) -> Optional[dict[str, Any]]:
    """Every concurrency of ``r`` replicas of one layout, as columns (``None`` when it does not fit).
    An attention-DP layout's curve is one rank's (its own requests, ``concurrency`` each; the
    experts' all-to-all with the other ranks at the same load): ``r d`` such engines."""
    tp, pp, dp = layout
    try:
        curve = serving_curve(opts.model, opts.chip, opts.workload, dtype=opts.dtype, parallelism=_par(*layout),
                              token_budget=opts.token_budget, memory_fraction=opts.memory_fraction,
                              max_num_seqs=opts.max_num_seqs)
    except SymcostError:
        return None  # the weights leave no room for one request's KV cache
    replicas = opts.gpus // (curve.chips * dp)
    if replicas < 1:
        return None
    engines = replicas * dp
    grid = np.arange(1, opts.max_concurrency + 1, dtype=np.float64)
    s = curve.sweep(grid)
    mem = curve.memory
    running = np.minimum(grid, curve.running_limit)
    return {"kind": "aggregated", "layout": f"{replicas} x {_layout(tp, pp, dp)}", "gpus": engines * curve.chips,
            "concurrency": engines * grid, "ttft": s.ttft, "tpot": s.tpot,
            "tokens_per_second": engines * s.tokens_per_second,
            "tokens_per_second_per_gpu": s.tokens_per_second_per_gpu,
            "tokens_per_second_per_user": s.tokens_per_second_per_user,
            "memory_per_chip": float(mem.weights + mem.activations) + running * float(mem.kv_per_request),
            "curve": curve, "replicas": engines}


def batch_grid(largest: int) -> list[int]:
    """Decode batches the disaggregated search tries: 1, 2, 3, 4, 6, 8, 12, ... (powers of two and
    1.5 times them) up to ``largest``.

    >>> batch_grid(20)
    [1, 2, 3, 4, 6, 8, 12, 16]
    """
    values = sorted({v for k in range(20) for v in (2**k, 3 * 2**k // 2) if 1 <= v <= largest})
    return values


@dataclass(frozen=True)
class _Prefill:
    """One prefill instance of a layout: ``D_s``, ``D_m``, its KV send and its memory per chip."""

    layout: tuple[int, int, int]
    chips: int
    whole: Any
    stage: Any
    send: Any
    memory: Any
    square: Any = None
    """``E[D_m^2]``, the second moment of the service time over the workload's prompts (M/G/1)."""


@dataclass(frozen=True)
class _Decode:
    """One decode instance of a layout: its TPOT over the batches ``batches``, the KV receive."""

    layout: tuple[int, int, int]
    chips: int
    batches: np.ndarray
    tpot: np.ndarray
    receive: Any
    memory: np.ndarray
    memory_per_chip: Any = None
    """The memory per chip as an exact expression in the batch (``memory`` is its float64 sweep)."""


def _mean(workload: Workload, value: Any) -> Any:
    """``sum(w * value(isl, osl))`` over the workload's points."""
    return sp.Add(*(w * sp.sympify(value(isl, osl)) for isl, osl, w in workload.points))


def _prefill(opts: _Options, layout: tuple[int, int, int]) -> Optional[_Prefill]:
    """A prefill instance (batch-1 prompts), or ``None`` when one prompt does not fit it."""
    if layout[2] != 1:
        return None  # prefill pools run TP x PP layouts (attention data-parallelism is for decode)
    model, chip, par = opts.model, opts.chip, _par(*layout)
    try:
        engine = opts.engine(layout)
        steps = {isl: inference_step(model, chip, 1, isl, opts.dtype, par) for isl, _, _ in opts.workload.points}
        memory = max(s.memory_per_chip for s in steps.values())
        if any(s.memory_per_chip > memory_bound(engine.memory_rule, engine.memory_fraction, chip.hbm_capacity,
                                                s.weight_memory, s.activation_memory) for s in steps.values()):
            return None
        whole = _mean(opts.workload, lambda isl, _: steps[isl].ttft)
        # D_m of each prompt length once (its mean and its second moment); with one stage it is D_s,
        # the TTFT (prefill_stage_time's docstring), already costed. D_m = D_s holds because the
        # steps above are unchunked (no prefill_chunk): a chunked step's TTFT is not one stage's time
        stages = {isl: sp.sympify(steps[isl].ttft if layout[1] == 1 else
                                  prefill_stage_time(model, chip, 1, isl, opts.dtype, par)) for isl in steps}
        stage = _mean(opts.workload, lambda isl, _: stages[isl])
        square = _mean(opts.workload, lambda isl, _: stages[isl] ** 2)
        send = _mean(opts.workload, lambda isl, _: kv_transfer(model, chip, isl, opts.dtype, par)[1])
    except SymcostError:
        return None
    return _Prefill(layout, layout[0] * layout[1], whole, stage, send, memory, square)


def _held(workload: Workload, engine: Any, runtime: Any) -> list[tuple[int, Any]]:
    """``(tokens, weight)`` whose weighted KV caches are what a running request holds: each point's
    whole length in blocks where the engine reserves it; on demand the mean over its decode steps
    (:meth:`~symcost.plan.serving.workload.Workload.held_tokens`, ``n + f`` tokens) as the caches
    of ``n`` and ``n + 1`` tokens weighted ``1 - f`` and ``f`` (exact where a token's cache is the
    same bytes throughout, as :func:`~symcost.plan.serving.batching._kv_at` counts it)."""
    block = engine.kv_block_tokens
    if engine.kv_allocation != "on_demand":
        return [(int(paged_tokens(keys, block)), w) for keys, w in workload.final_contexts(runtime)]
    held = workload.held_tokens(runtime, block)
    whole = int(sp.floor(held))
    return [(whole, 1 - (held - whole)), (whole + 1, held - whole)] if held != whole else [(whole, sp.Integer(1))]


def _decode(opts: _Options, layout: tuple[int, int, int]) -> Optional[_Decode]:
    """A decode instance over the batches that fit its KV cache, or ``None`` when none does."""
    from ...analysis.solve import max_integer

    model, chip, par = opts.model, opts.chip, _par(*layout)
    runtime, b = chip.runtime, sym.batch_size
    try:
        engine = opts.engine(layout)
        # the KV cache of each request in blocks (paged_tokens), what the engine allocates (_held);
        # the bound by the engine's rule
        rows = [(decode_step(model, chip, b, keys, opts.dtype, par), w) for keys, w in _held(opts.workload, engine,
                                                                                             runtime)]
        memory = sp.Add(*(w * sp.sympify(row.memory_per_chip) for row, w in rows))
        weights = sp.Add(*(w * sp.sympify(row.weight_memory) for row, w in rows))
        activations = sp.Add(*(w * sp.sympify(row.activation_memory) for row, w in rows))
        extra = memory_bound(engine.memory_rule, engine.memory_fraction, chip.hbm_capacity, weights, activations) \
            - engine.memory_fraction * chip.hbm_capacity
        top = opts.max_concurrency if engine.max_num_seqs is None else min(opts.max_concurrency, engine.max_num_seqs)
        fits = max_integer(memory - extra, b, engine.memory_fraction * chip.hbm_capacity, upper=top,
                           kind="bytes").value
        if not fits:
            return None  # before its step is built: a layout with no room for one batch costs nothing more
        steps = engine_steps(model, chip, opts.dtype, par)
        receive = _mean(opts.workload, lambda isl, _: kv_transfer(model, chip, isl, opts.dtype, par)[1])
    except SymcostError:
        return None
    from ...core.sweep import Sweeper

    stages, ranks = layout[1], layout[2]
    # a pipelined decode instance runs its batch as p micro-batches, as the aggregated engine does;
    # an attention-DP instance runs d ranks of its own b requests each (b: one rank's batch here)
    context = float(opts.workload.decode_context(runtime))
    batches = np.asarray(batch_grid(fits), dtype=np.float64)
    per = np.maximum(1.0, batches / stages) if stages != 1 else batches
    tpot = steps.numeric.decode(per, context)  # the compiled step (EngineSteps.numeric), float64
    swept = Sweeper({"memory": memory}, fast_compile=True)(batch_size=batches)
    return _Decode(layout, layout[0] * stages * ranks, ranks * batches, tpot, receive, swept.memory, memory)


def _wait(opts: _Options, load: np.ndarray, stage: float, square: float) -> np.ndarray:
    """The prefill queue's wait at each load (float64): M/G/1's mean ``rho E[S^2]/(2 E[S] (1 - rho))``
    (M/D/1's for one prompt length), or M/D/1's ``q``-quantile (cached per load); loads stay at
    most the target's, below 1."""
    if opts.ttft_percentile is None:
        return load * square / (2 * stage * (1 - load))
    q = opts.ttft_percentile
    return stage * np.asarray([wait_in_services(float(x), q) for x in np.atleast_1d(load)])


def _disaggregated(opts: _Options, pre: _Prefill, dec: _Decode) -> list[dict[str, Any]]:
    """Every count of prefill and decode instances of two layouts over the decode batches."""
    t_kv = sp.Max(sp.sympify(pre.send), sp.sympify(dec.receive))
    slack = opts.ttft - pre.whole - t_kv
    if not slack > 0:
        return []  # one prompt's prefill and transfer already miss the TTFT target
    d_s, d_m, t_kv_f = float(pre.whole), float(pre.stage), float(t_kv)
    rho = float(opts.prefill_load(slack, pre.stage, pre.square))  # the utilization that meets the TTFT target
    square = float(pre.square)
    steps, tokens = float(opts.workload.decode_steps(opts.chip.runtime)), float(opts.workload.output_len)
    serve = dec.batches / (steps * dec.tpot)  # requests/s of one decode instance
    out = []
    for n_p in range(1, (opts.gpus - dec.chips) // pre.chips + 1):
        for n_d in range(1, (opts.gpus - n_p * pre.chips) // dec.chips + 1):
            rate = np.minimum(n_p * rho / d_m, n_d * serve)
            load = rate * d_m / n_p
            ttft = d_s + t_kv_f + _wait(opts, load, d_m, square)
            gpus = n_p * pre.chips + n_d * dec.chips
            out.append({"kind": "disaggregated", "gpus": gpus,
                        "layout": f"prefill {n_p} x {_layout(*pre.layout)} + decode {n_d} x {_layout(*dec.layout)}",
                        "concurrency": rate * (ttft + steps * dec.tpot), "ttft": ttft, "tpot": dec.tpot,
                        "tokens_per_second": rate * tokens, "tokens_per_second_per_gpu": rate * tokens / gpus,
                        "tokens_per_second_per_user": 1 / dec.tpot,
                        "memory_per_chip": np.maximum(dec.memory, float(pre.memory)),
                        "counts": (n_p, n_d), "pools": (pre, dec), "batch": dec.batches})
    return out


@dataclass(frozen=True)
class DeploymentPlan:
    """Every deployment the search evaluated (:meth:`to_pandas`, :attr:`columns`), the ones that
    meet the targets and beat every other on tokens/s/user or tokens/s/GPU (:attr:`front`, by
    tokens/s/user descending), and the best of each kind by tokens/s/GPU, evaluated exactly
    (``None`` when no deployment of that kind meets the targets); see the module's docstring."""

    model: str
    hardware: str
    engine: str
    workload: Workload
    gpus: int
    ttft_target: Any
    tpot_target: Any
    columns: dict
    front: tuple
    best_aggregated: Optional[Deployment]
    best_disaggregated: Optional[Deployment]
    gpu_price: Any = None
    """The price per GPU-hour the costs are at (``None``: no costs)."""
    objective: str = "throughput"
    """What :attr:`best_aggregated` and :attr:`best_disaggregated` are best at: ``"throughput"``
    (tokens/s per GPU used) or ``"cost"`` (per million tokens on the plan's GPUs)."""
    ttft_percentile: Any = None
    """The quantile the TTFT target holds at, e.g. 9/10 (``None``: the mean TTFT)."""

    @property
    def disaggregation_gain(self) -> Any:
        """The best disaggregated tokens/s/GPU over the best aggregated (``None`` unless both exist)."""
        if self.best_aggregated is None or self.best_disaggregated is None:
            return None
        return self.best_disaggregated.tokens_per_second_per_gpu / self.best_aggregated.tokens_per_second_per_gpu

    def to_pandas(self) -> Any:
        """One row per evaluated deployment, the :data:`COLUMNS` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame({k: self.columns[k] for k in COLUMNS})

    def __str__(self) -> str:
        from .display import plan_text

        return plan_text(self)


def _flatten(groups: list[dict[str, Any]], ttft: float, tpot: float, opts: "_Options") -> tuple[dict, list]:
    """The groups' columns as flat arrays, and ``(group, index)`` of each row."""
    sizes = [len(np.atleast_1d(g["ttft"])) for g in groups]
    where = [(g, i) for g, n in zip(groups, sizes) for i in range(n)]
    # each column joined as arrays (a group's scalars broadcast to its rows): the values and the
    # dtype NumPy gives the same rows as one list (int64, float64, str; object where one is)
    arrays = {k: np.concatenate([np.broadcast_to(np.asarray(g[k]), (n,)) for g, n in zip(groups, sizes)])
              for k in COLUMNS[:-2]}
    with np.errstate(divide="ignore"):  # no price: None in every row, as the exact rows (opts.cost)
        arrays["cost_per_million_tokens"] = (np.full(len(arrays["ttft"]), None, dtype=object)
                                             if opts.gpu_price is None else
                                             float(opts.cost(1)) / arrays["tokens_per_second"])
    with np.errstate(invalid="ignore"):
        arrays["meets_sla"] = (arrays["ttft"] <= ttft * (1 + 1e-12)) & (arrays["tpot"] <= tpot * (1 + 1e-12))
    return arrays, where


def _row(columns: dict, i: int) -> Deployment:
    """Row ``i`` of the columns as a :class:`Deployment` (NumPy scalars as Python numbers)."""
    return Deployment(**{k: v[i] if v.dtype == object else v[i].item() for k, v in columns.items()})


def _exact_aggregated(opts: "_Options", group: dict[str, Any], index: int) -> Deployment:
    """The aggregated row ``index`` of ``group`` evaluated exactly (its curve at that concurrency)."""
    curve, replicas = group["curve"], group["replicas"]
    point = curve.at(index + 1)
    mem = curve.memory
    memory = mem.weights + mem.activations + point.running * mem.kv_per_request
    tokens = replicas * point.tokens_per_second
    return Deployment("aggregated", group["layout"], group["gpus"], replicas * point.concurrency, point.ttft,
                      point.tpot, tokens, point.tokens_per_second_per_gpu,
                      point.tokens_per_second_per_user, memory, opts.cost(tokens), True)


def _exact_disaggregated(opts: _Options, group: dict[str, Any], index: int) -> Deployment:
    """The disaggregated row ``index`` of ``group`` evaluated exactly (M/G/1's mean wait,
    :func:`~symcost.plan.serving.queueing.mg1_mean_wait`: M/D/1's, DistServe eq. 2, for one length)."""

    pre, dec = group["pools"]
    n_p, n_d = group["counts"]
    batch, ranks = int(dec.batches[index]), dec.layout[2]
    steps = engine_steps(opts.model, opts.chip, opts.dtype, _par(*dec.layout))
    context = opts.workload.decode_context(opts.chip.runtime)
    tpot = sp.sympify(steps.decode(sp.Max(1, sp.Rational(batch, dec.layout[1] * ranks)), context))
    d = opts.workload.decode_steps(opts.chip.runtime)
    t_kv = sp.Max(sp.sympify(pre.send), sp.sympify(dec.receive))
    slack = opts.ttft - pre.whole - t_kv
    rate = sp.Min(n_p * opts.prefill_load(slack, pre.stage, pre.square) / pre.stage, n_d * batch / (d * tpot))
    ttft = (pre.whole + t_kv + mg1_mean_wait(rate / n_p, pre.stage, pre.square) if opts.ttft_percentile is None else
            pre.whole + t_kv + md1_wait_quantile(rate / n_p, pre.stage, opts.ttft_percentile))
    tokens = rate * opts.workload.output_len
    gpus = group["gpus"]
    return Deployment("disaggregated", group["layout"], gpus, rate * (ttft + d * tpot), ttft, tpot, tokens,
                      tokens / gpus, 1 / tpot,
                      max(sp.sympify(dec.memory_per_chip).xreplace({sym.batch_size: sp.Rational(batch, ranks)}),
                          pre.memory),
                      opts.cost(tokens), True)


def _best(opts: _Options, columns: dict, where: list, kind: str) -> Optional[Deployment]:
    """The row of ``kind`` meeting the targets with the most tokens/s/GPU (objective
    ``"throughput"``) or the least cost (``"cost"``: the most tokens/s), evaluated exactly (the
    next one when the exact values miss a target the float64 sweep met by rounding)."""
    rows = np.nonzero((columns["kind"] == kind) & columns["meets_sla"])[0]
    key = columns["tokens_per_second_per_gpu" if opts.objective == "throughput" else "tokens_per_second"]
    for i in rows[np.argsort(-key[rows], kind="stable")]:
        group, index = where[i]
        exact = (_exact_aggregated(opts, group, index) if kind == "aggregated"
                 else _exact_disaggregated(opts, group, index))
        if exact.ttft <= opts.ttft and exact.tpot <= opts.tpot:
            return exact
    return None


def plan_deployment(model: Model, hardware: Hardware | str, workload: Workload | tuple, gpus: int, ttft: Any,
                    tpot: Any, *, dtype: Any = "bf16", tp: Optional[Sequence[int]] = None, pp: Sequence[int] = (1,),
                    max_concurrency: int = 512, disaggregated: bool = True, token_budget: Optional[int] = None,
                    memory_fraction: Any = None, gpu_price: Any = None, objective: str = "throughput",
                    ep: Optional[Sequence[int]] = None, ttft_percentile: Any = None,
                    max_num_seqs: Optional[int] = None) -> DeploymentPlan:
    """The deployments of ``model`` on ``gpus`` chips of ``hardware`` (under its engine profile)
    serving ``workload`` within a mean ``ttft`` and a ``tpot`` target (seconds): aggregated replicas
    at every concurrency up to ``max_concurrency`` and, with ``disaggregated``, every count of
    prefill and decode instances; layouts of :func:`layouts` (``tp``, ``pp``; for a MoE model
    also attention-DP x EP degrees ``ep``, aggregated and as decode pools). ``gpu_price`` (per
    GPU-hour) adds each deployment's cost per million output tokens; ``objective`` ``"cost"``
    picks the cheapest of each kind instead of the most tokens/s/GPU; ``ttft_percentile`` (e.g. 9/10)
    holds the TTFT target at that quantile instead of the mean; ``max_num_seqs`` caps the requests
    an engine (a replica, a decode instance) runs, by default the engine profile's. See the module's
    docstring.

    >>> from symcost import models
    >>> plan = plan_deployment(models.get("llama-3-8b"), "H100_SXM", (1024, 130), 2, ttft=1, tpot=0.02, tp=[1])
    >>> plan.best_aggregated.layout, plan.best_disaggregated.layout
    ('2 x TP 1', 'prefill 1 x TP 1 + decode 1 x TP 1')
    """
    chip = get_hardware(hardware)
    load = workload if isinstance(workload, Workload) else Workload.of(*workload)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ConfigError(f"gpus must be a positive whole number, got {gpus!r}")
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ConfigError(f"max_concurrency must be a positive whole number, got {max_concurrency!r}")
    if objective not in ("throughput", "cost"):
        raise ConfigError(f"objective must be 'throughput' or 'cost', got {objective!r}")
    if objective == "cost" and gpu_price is None:
        raise ConfigError("objective: 'cost' needs gpu_price (per GPU-hour)")
    opts = _Options(model, chip, load, gpus, dtype, exact_number(ttft, "ttft"), exact_number(tpot, "tpot"),
                    token_budget, None if memory_fraction is None else exact_number(memory_fraction, "memory_fraction"),
                    max_concurrency, None if gpu_price is None else exact_number(gpu_price, "gpu_price"), objective,
                    _quantile(ttft_percentile), max_num_seqs)
    if opts.ttft_percentile is not None and len({isl for isl, _, _ in load.points}) > 1:
        raise ConfigError("ttft_percentile: the prefill wait's distribution is M/D/1's, for one prompt length; a mix "
                          f"of prompt lengths ({load.label()}) queues as M/G/1, whose mean only is modelled")
    tried = layouts(model, chip, gpus, tp, pp, ep)
    if not tried:
        raise ConfigError(f"layouts: no TP x PP layout of {model.name} fits {gpus} GPUs (tp {tp}, pp {list(pp)})")
    roomy = [lay for lay in tried if not _no_room(opts, lay)]  # before any layout's step is built
    groups = [g for g in (_aggregated(opts, lay) for lay in roomy) if g is not None]
    if disaggregated:
        prefill = [p for p in (_prefill(opts, lay) for lay in roomy) if p is not None]
        decode = [d for d in (_decode(opts, lay) for lay in roomy) if d is not None]
        groups += [g for p in prefill for d in decode if p.chips + d.chips <= gpus for g in _disaggregated(opts, p, d)]
    if not groups:
        raise ConfigError(f"memory: no layout of {model.name} on {gpus} x {chip.name} holds one request of "
                          f"{load.label()}")
    columns, where = _flatten(groups, float(opts.ttft), float(opts.tpot), opts)
    meets = np.nonzero(columns["meets_sla"])[0]
    user, gpu = columns["tokens_per_second_per_user"], columns["tokens_per_second_per_gpu"]
    front = meets[pareto_front(user[meets], gpu[meets])]
    return DeploymentPlan(model.name, chip.name, chip.runtime.label, load, gpus, opts.ttft, opts.tpot, columns,
                          tuple(_row(columns, int(i)) for i in front), _best(opts, columns, where, "aggregated"),
                          _best(opts, columns, where, "disaggregated") if disaggregated else None, opts.gpu_price,
                          objective, opts.ttft_percentile)


def _quantile(value: Any) -> Any:
    """``ttft_percentile`` as an exact fraction in (0, 1), or ``None``."""
    if value is None:
        return None
    rule = f"ttft_percentile must be a fraction between 0 and 1 (9/10 for p90), got {value!r}"
    try:
        q = exact_number(value, "ttft_percentile")
    except ConfigError:
        raise ConfigError(rule) from None
    if not 0 < q < 1:
        raise ConfigError(rule)
    return q


def gpus_for_budget(budget: Any, gpu_price: Any) -> int:
    """The GPUs a ``budget`` per hour buys at ``gpu_price`` per GPU-hour: ``floor(B/P)``.

    >>> gpus_for_budget(20, 2.5)                    # a float by its decimal digits: 5/2
    8
    """
    n = int(sp.floor(exact_number(budget, "budget") / exact_number(gpu_price, "gpu_price")))
    if n < 1:
        raise ConfigError(f"budget: {budget} per hour buys no GPU at {gpu_price} per GPU-hour")
    return n

"""The planner's shortcuts (issue 23's speed target) leave every answer as it was: the plan built
with them equals the plan built the old way (copies of the functions as they were before it: each
pool's terms costed afresh, an engine's and a decode instance's step built before their KV room is
checked, that room counted by a copy of the old check, the columns joined row by row as lists), on
the docs' question (Llama-3-70B on 8 H200 under vLLM's profile), a small space brute-forced over TP
x PP, Llama-3-70B on H100s with KV room for only a few long requests, a mix of prompt lengths
(M/G/1: the prefill's second moment), a p90 TTFT target with a price, and a MoE model with
attention-DP x EP layouts. Equal means equal: the best deployments exactly (SymPy), every evaluated
row's every column (values and dtypes), the front."""

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from test_serving import ROUND, TINY

from symcost import models
from symcost.analysis.solve import max_integer
from symcost.core import symbols as sym
from symcost.core._expr import exact_value
from symcost.core.sweep import Sweeper
from symcost.errors import ConfigError, SymcostError
from symcost.hardware import get as get_hardware
from symcost.hardware.serving import memory_bound, paged_tokens
from symcost.plan.disaggregated import kv_transfer
from symcost.plan.inference import decode_step, inference_step, prefill_stage_time
from symcost.plan.serving import Workload, batching, deploy
from symcost.plan.serving.deploy import COLUMNS, plan_deployment
from symcost.plan.serving.steps import engine_steps


def _slow_flatten(groups, ttft, tpot, opts):
    """The columns row by row, as Python lists made arrays at the end (the planner before issue 23's
    speed work)."""
    columns = {k: [] for k in COLUMNS}
    where = []
    for g in groups:
        n = len(np.atleast_1d(g["ttft"]))
        for k in COLUMNS[:-2]:
            columns[k].extend(np.broadcast_to(np.asarray(g[k]), (n,)).tolist())
        where.extend((g, i) for i in range(n))
    arrays = {k: np.asarray(v) for k, v in columns.items() if k not in ("meets_sla", "cost_per_million_tokens")}
    with np.errstate(divide="ignore"):
        arrays["cost_per_million_tokens"] = (np.full(len(arrays["ttft"]), None, dtype=object)
                                             if opts.gpu_price is None else
                                             float(opts.cost(1)) / arrays["tokens_per_second"])
    with np.errstate(invalid="ignore"):
        arrays["meets_sla"] = (arrays["ttft"] <= ttft * (1 + 1e-12)) & (arrays["tpot"] <= tpot * (1 + 1e-12))
    return arrays, where


def _slow_prefill(opts, layout):
    """Every term of a prefill pool costed on its own call (D_m twice: its mean and its square)."""
    if layout[2] != 1:
        return None
    model, chip, par = opts.model, opts.chip, deploy._par(*layout)
    mean = deploy._mean
    try:
        engine = opts.engine(layout)
        steps = [inference_step(model, chip, 1, isl, opts.dtype, par) for isl, _, _ in opts.workload.points]
        memory = max(s.memory_per_chip for s in steps)
        if any(s.memory_per_chip > deploy.memory_bound(engine.memory_rule, engine.memory_fraction, chip.hbm_capacity,
                                                       s.weight_memory, s.activation_memory) for s in steps):
            return None
        whole = mean(opts.workload, lambda isl, _: inference_step(model, chip, 1, isl, opts.dtype, par).ttft)
        stage = mean(opts.workload, lambda isl, _: prefill_stage_time(model, chip, 1, isl, opts.dtype, par))
        square = mean(opts.workload, lambda isl, _: sp.sympify(prefill_stage_time(model, chip, 1, isl, opts.dtype,
                                                                                   par)) ** 2)
        send = mean(opts.workload, lambda isl, _: kv_transfer(model, chip, isl, opts.dtype, par)[1])
    except SymcostError:
        return None
    return deploy._Prefill(layout, layout[0] * layout[1], whole, stage, send, memory, square)


def _slow_memory(model, chip, workload, engine, dtype, par):
    """``batching._memory`` as it was (1f0e8e8): the KV capacity in requests, an error below one."""
    empty = inference_step(model, chip, 1, 1, dtype, par)
    step = inference_step(model, chip, 1, engine.token_budget, dtype, par)
    block = engine.kv_block_tokens
    if engine.kv_allocation == "on_demand":
        kv = batching._kv_at(model, chip, workload.held_tokens(chip.runtime, block), dtype, par)
    else:
        kv = sp.Add(*(w * inference_step(model, chip, 1, int(paged_tokens(keys, block)), dtype, par).kv_cache_memory
                      for keys, w in workload.final_contexts(chip.runtime)))
    bound = memory_bound(engine.memory_rule, engine.memory_fraction, chip.hbm_capacity, empty.weight_memory,
                         step.activation_memory)
    room = bound - empty.weight_memory - step.activation_memory
    limit = int(sp.floor(room / kv)) if room > 0 else 0
    if limit < 1:
        raise ConfigError("memory: no room for one request's KV cache")
    return batching.ServingMemory(exact_value(bound), empty.weight_memory, step.activation_memory, exact_value(kv),
                                  limit, engine.memory_rule, block)


def _slow_curve(model, hardware, workload, *, dtype="bf16", parallelism=None, token_budget=None, memory_fraction=None,
                mixed=None, max_num_seqs=None):
    """``serving_curve`` as it was (1f0e8e8): the engine's step built first, then its defaults,
    then its KV room (:func:`_slow_memory`)."""
    chip = get_hardware(hardware)
    load = workload if isinstance(workload, Workload) else Workload.of(*workload)
    steps = engine_steps(model, chip, dtype, parallelism)
    par = steps.parallelism
    engine = batching.engine_defaults(chip, int(par.tp * par.pp), token_budget, memory_fraction, max_num_seqs)
    budget, fraction = engine.token_budget, engine.memory_fraction
    stages, chips = int(par.pp), int(par.chips_per_replica * par.pp)
    memory = _slow_memory(model, chip, load, engine, dtype, par)
    means = batching._Load(load.prompt_len, load.decode_steps(chip.runtime), load.decode_context(chip.runtime),
                           sp.Integer(budget))
    batched = chip.runtime.backend not in batching.SEPARATE_PREFILL if mixed is None else bool(mixed)
    seqs = engine.max_num_seqs
    limit, bound = ((memory.kv_limit, "kv-bound") if seqs is None or seqs >= memory.kv_limit
                    else (seqs, "max-seqs"))
    return batching.ServingCurve(model, chip, steps, load, budget, fraction, batched, memory, chips, seqs,
                                 batching._Engine(steps, means, batched, limit, bound, stages))


def _slow_decode(opts, layout):
    """``deploy._decode`` as it was (1f0e8e8): the step built before the batches that fit are
    checked (none: no instance)."""
    model, chip, par = opts.model, opts.chip, deploy._par(*layout)
    runtime, b = chip.runtime, sym.batch_size
    try:
        engine = opts.engine(layout)
        rows = [(decode_step(model, chip, b, keys, opts.dtype, par), w)
                for keys, w in deploy._held(opts.workload, engine, runtime)]
        memory = sp.Add(*(w * sp.sympify(row.memory_per_chip) for row, w in rows))
        weights = sp.Add(*(w * sp.sympify(row.weight_memory) for row, w in rows))
        activations = sp.Add(*(w * sp.sympify(row.activation_memory) for row, w in rows))
        extra = memory_bound(engine.memory_rule, engine.memory_fraction, chip.hbm_capacity, weights, activations) \
            - engine.memory_fraction * chip.hbm_capacity
        top = opts.max_concurrency if engine.max_num_seqs is None else min(opts.max_concurrency, engine.max_num_seqs)
        fits = max_integer(memory - extra, b, engine.memory_fraction * chip.hbm_capacity, upper=top,
                           kind="bytes").value
        steps = engine_steps(model, chip, opts.dtype, par)
        receive = deploy._mean(opts.workload, lambda isl, _: kv_transfer(model, chip, isl, opts.dtype, par)[1])
    except SymcostError:
        return None
    if not fits:
        return None
    stages, ranks = layout[1], layout[2]
    context = float(opts.workload.decode_context(runtime))
    batches = np.asarray(deploy.batch_grid(fits), dtype=np.float64)
    per = np.maximum(1.0, batches / stages) if stages != 1 else batches
    tpot = steps.numeric.decode(per, context)
    swept = Sweeper({"memory": memory}, fast_compile=True)(batch_size=batches)
    return deploy._Decode(layout, layout[0] * stages * ranks, ranks * batches, tpot, receive, swept.memory, memory)


@pytest.fixture
def slow(monkeypatch):
    """Patch the old ways in: ``serving_curve`` and ``_decode`` as they were (each step built before
    its KV room is checked, by copies of the old checks), the prefill terms afresh, the columns as
    lists."""
    monkeypatch.setattr(deploy, "serving_curve", _slow_curve)
    monkeypatch.setattr(deploy, "_decode", _slow_decode)
    monkeypatch.setattr(deploy, "_prefill", _slow_prefill)
    monkeypatch.setattr(deploy, "_flatten", _slow_flatten)
    monkeypatch.setattr(deploy, "_no_room", lambda opts, layout: False)  # every layout's steps built


H200_VLLM = ("llama-3-70b", "vllm", "H200", (4000, 500), 8, 1, Fraction(3, 100), {})
CASES = {
    # the docs' question (docs/how-to/serving.md): every TP layout, concurrency 1..512, both kinds
    "docs": H200_VLLM,
    "dense_tp_pp": ("llama-3-8b", None, "H100_SXM", (1024, 130), 4, 1, Fraction(2, 100),
                    dict(tp=[1, 2, 4], pp=[1, 2], max_concurrency=64)),
    "p90_price_cost": ("llama-3-8b", None, "H100_SXM", (2048, 256), 4, Fraction(1, 2), Fraction(2, 100),
                       dict(tp=[1, 2], max_concurrency=48, ttft_percentile=Fraction(9, 10), gpu_price=2,
                            objective="cost")),
    # KV room for 3 requests of 8192 + 1024 tokens on TP=2 (70 GB of weights per 80 GB chip): the
    # layouts the room checks keep but barely (an engine of 1..3 requests, a decode instance of few)
    "tight_kv": ("llama-3-70b", None, "H100_SXM", (8192, 1024), 4, 5, Fraction(1, 10),
                 dict(tp=[2, 4], pp=[1, 2], max_concurrency=16)),
    # TP 1 of Llama-3-70B (141 GB of weights) fits no 80 GB chip under any rule: skipped before its
    # steps (deploy._no_room); SGLang's static rule and TensorRT-LLM's free rule
    "no_room_static": ("llama-3-70b", "sglang", "H100_SXM", (2048, 256), 8, 1, Fraction(5, 100),
                       dict(tp=[1, 4, 8], max_concurrency=32)),
    "no_room_free": ("llama-3-70b", "tensorrt-llm", "H100_SXM", (2048, 256), 8, 1, Fraction(5, 100),
                     dict(tp=[1, 4], max_concurrency=32)),
    "moe_dp_ep": ("mixtral-8x7b", None, "H100_SXM", (1024, 128), 4, 1, Fraction(3, 100),
                  dict(tp=[2, 4], ep=[2, 4], max_concurrency=32)),
}


def _plan(case):
    name, engine, hardware, load, gpus, ttft, tpot, options = case
    chip = get_hardware(hardware) if engine is None else get_hardware(hardware).with_runtime(engine)
    return plan_deployment(models.get(name), chip, load, gpus, ttft, tpot, **options)


def _mix_plan():
    # two prompt lengths (M/G/1): the prefill's mean service time and its second moment differ
    load = Workload.mix([(5, 8, Fraction(1, 3)), (9, 4, Fraction(2, 3))])
    return plan_deployment(TINY, ROUND, load, 4, Fraction(1, 2000), Fraction(4, 10**5), token_budget=40,
                           memory_fraction=Fraction(1, 2), max_concurrency=64)


def _assert_same(fast, slow):
    assert fast.best_aggregated == slow.best_aggregated
    assert fast.best_disaggregated == slow.best_disaggregated
    assert fast.front == slow.front
    assert set(fast.columns) == set(slow.columns)
    for k in COLUMNS:
        a, b = fast.columns[k], slow.columns[k]
        assert a.dtype == b.dtype, k
        assert a.tolist() == b.tolist(), k


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_fast_plan_equals_the_slow_one(case, request):
    fast = _plan(CASES[case])
    request.getfixturevalue("slow")
    _assert_same(fast, _plan(CASES[case]))


def test_a_mix_of_prompt_lengths_plans_the_same_fast_and_slow(request):
    fast = _mix_plan()
    assert len({isl for isl, _, _ in fast.workload.points}) == 2
    request.getfixturevalue("slow")
    _assert_same(fast, _mix_plan())


def test_the_brute_force_best_of_every_row_is_the_plans(request):
    """On the small TP x PP space: the best row of each kind meeting the targets, found by looking at
    every evaluated row, is the plan's best (its layout and load)."""
    plan = _plan(CASES["dense_tp_pp"])
    cols = plan.columns
    for kind, best in (("aggregated", plan.best_aggregated), ("disaggregated", plan.best_disaggregated)):
        rows = [i for i in range(len(cols["ttft"])) if cols["kind"][i] == kind and cols["meets_sla"][i]]
        top = max(rows, key=lambda i: (cols["tokens_per_second_per_gpu"][i], -i))
        assert (cols["layout"][top], cols["gpus"][top]) == (best.layout, best.gpus)
        assert float(best.tokens_per_second_per_gpu) == pytest.approx(cols["tokens_per_second_per_gpu"][top],
                                                                     rel=1e-12)

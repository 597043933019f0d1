"""The planner's shortcuts (issue 23's speed target) leave every answer as it was: the plan built
with them equals the plan built the slow way (each pool's terms costed afresh, the step of every
layout built whether its KV cache has room or not, the columns joined row by row as lists), on
the docs' question (Llama-3-70B on 8 H200 under vLLM's profile), a small space brute-forced
over TP x PP, a mix of prompt lengths (M/G/1: the prefill's second moment), a p90 TTFT target
with a price, and a MoE model with attention-DP x EP layouts. Equal means equal: the best
deployments exactly (SymPy), every evaluated row's every column (values and dtypes), the front."""

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from test_serving import ROUND, TINY

from symcost import models
from symcost.errors import SymcostError
from symcost.hardware import get as get_hardware
from symcost.plan.disaggregated import kv_transfer
from symcost.plan.inference import inference_step, prefill_stage_time
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


@pytest.fixture
def slow(monkeypatch):
    """Patch the slow ways in: the step built first for every layout (as ``serving_curve`` did, the
    KV room checked after it), the prefill terms afresh, the columns as lists."""
    def slow_curve(model, hardware, workload, **options):
        engine_steps(model, hardware, options.get("dtype", "bf16"), options.get("parallelism"))
        return fast_curve(model, hardware, workload, **options)

    fast_curve = batching.serving_curve
    monkeypatch.setattr(deploy, "serving_curve", slow_curve)
    monkeypatch.setattr(deploy, "_prefill", _slow_prefill)
    monkeypatch.setattr(deploy, "_flatten", _slow_flatten)


H200_VLLM = ("llama-3-70b", "vllm", "H200", (4000, 500), 8, 1, Fraction(3, 100), {})
CASES = {
    # the docs' question (docs/how-to/serving.md): every TP layout, concurrency 1..512, both kinds
    "docs": H200_VLLM,
    "dense_tp_pp": ("llama-3-8b", None, "H100_SXM", (1024, 130), 4, 1, Fraction(2, 100),
                    dict(tp=[1, 2, 4], pp=[1, 2], max_concurrency=64)),
    "p90_price_cost": ("llama-3-8b", None, "H100_SXM", (2048, 256), 4, Fraction(1, 2), Fraction(2, 100),
                       dict(tp=[1, 2], max_concurrency=48, ttft_percentile=Fraction(9, 10), gpu_price=2,
                            objective="cost")),
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

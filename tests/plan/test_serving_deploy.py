"""Planning a deployment (symcost.plan.serving.deploy): the Pareto front checked by brute force,
the disaggregated rate and TTFT by hand, the best points exact, replicas, layouts and errors."""

import itertools
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from test_serving import ROUND, TINY

from symcost.errors import ConfigError
from symcost.plan.disaggregated import kv_transfer, mean_ttft
from symcost.plan.inference import decode_step, inference_step, prefill_stage_time
from symcost.plan.serving import engine_steps, serving_curve
from symcost.plan.serving.deploy import batch_grid, layouts, pareto_front, plan_deployment

OPTIONS = dict(token_budget=40, memory_fraction=Fraction(1, 2), max_concurrency=64)
TTFT, TPOT = Fraction(1, 2000), Fraction(4, 10**5)  # 500 us, 40 us: some rows of each kind miss them


@pytest.fixture(scope="module")
def plan():
    return plan_deployment(TINY, ROUND, (5, 8), 4, TTFT, TPOT, **OPTIONS)


def _dominated(i, user, gpu):
    return any(user[j] >= user[i] and gpu[j] >= gpu[i] and (user[j] > user[i] or gpu[j] > gpu[i])
               for j in range(len(user)))


def _disaggregated_terms(best):
    """A disaggregated row's layout ``(n_p, tp_p, n_d, tp_d)`` read from its label, and the terms
    of its TTFT costed on their own: the prefill's D_s, its slowest stage D_m, the KV transfer."""
    n_p, tp_p, n_d, tp_d = (int(w) for w in best.layout.replace("prefill", "").replace("decode", "")
                            .replace("+", "").replace("x TP", "").split())
    d_s = inference_step(TINY, ROUND, 1, 5, parallelism={"tensor_parallel": tp_p}).ttft
    d_m = prefill_stage_time(TINY, ROUND, 1, 5, parallelism={"tensor_parallel": tp_p})
    t_kv = max(kv_transfer(TINY, ROUND, 5, parallelism={"tensor_parallel": tp_p})[1],
               kv_transfer(TINY, ROUND, 5, parallelism={"tensor_parallel": tp_d})[1])
    return n_p, tp_p, n_d, tp_d, d_s, d_m, t_kv


def test_pareto_front_is_the_non_dominated_set_by_brute_force():
    """On random points (with ties): a point is on the front iff no other point is at least as good
    on both axes and better on one (equal points: the first kept)."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        user, gpu = rng.integers(0, 8, 40).astype(float), rng.integers(0, 8, 40).astype(float)
        front = set(pareto_front(user, gpu).tolist())
        undominated = {i for i in range(40) if not _dominated(i, user, gpu)}
        # of equal undominated points the front keeps one
        assert {(user[i], gpu[i]) for i in front} == {(user[i], gpu[i]) for i in undominated}
        assert len(front) == len({(user[i], gpu[i]) for i in undominated})


def test_the_plans_front_meets_the_targets_and_nothing_meeting_them_beats_it(plan):
    cols = plan.columns
    meets = np.nonzero(cols["meets_sla"])[0]
    user, gpu = cols["tokens_per_second_per_user"][meets], cols["tokens_per_second_per_gpu"][meets]
    assert plan.front
    for d in plan.front:
        assert d.meets_sla and d.ttft <= TTFT * (1 + 1e-12) and d.tpot <= TPOT * (1 + 1e-12)
        assert not any(u >= d.tokens_per_second_per_user and g >= d.tokens_per_second_per_gpu
                       and (u > d.tokens_per_second_per_user or g > d.tokens_per_second_per_gpu)
                       for u, g in zip(user, gpu))
    users = [d.tokens_per_second_per_user for d in plan.front]
    assert users == sorted(users, reverse=True)


def test_the_best_aggregated_is_the_curve_exactly(plan):
    """The row with the most tokens/s/GPU among the aggregated ones meeting the targets, evaluated
    exactly: its replica's serving curve at its concurrency."""
    best = plan.best_aggregated
    cols = plan.columns
    mine = (cols["kind"] == "aggregated") & cols["meets_sla"]
    assert float(best.tokens_per_second_per_gpu) == pytest.approx(cols["tokens_per_second_per_gpu"][mine].max(),
                                                                  rel=1e-12)
    replicas, tp = (int(x) for x in best.layout.replace(" x TP", "").split())
    point = serving_curve(TINY, ROUND, (5, 8), parallelism={"tensor_parallel": tp}, token_budget=40,
                          memory_fraction=Fraction(1, 2)).at(best.concurrency / replicas)
    assert (best.ttft, best.tpot) == (point.ttft, point.tpot)
    assert best.tokens_per_second == replicas * point.tokens_per_second and best.gpus == replicas * tp
    assert best.ttft <= TTFT and best.tpot <= TPOT


def test_disaggregated_rate_and_ttft_by_hand(plan):
    """Prefill instances are M/D/1 queues of batch-1 prompts: the TTFT target X allows a utilization
    rho = 2T'/(D_m + 2T'), T' = X - D_s - T_kv, so n_p rho/D_m requests/s; n_d decode instances of
    batch B serve n_d B/(D TPOT(B)); the deployment the smaller. Where the prefill binds, the mean
    TTFT (DistServe eq. 2, mean_ttft) is the target exactly."""
    best = plan.best_disaggregated
    assert best is not None
    n_p, tp_p, n_d, tp_d, d_s, d_m, t_kv = _disaggregated_terms(best)
    slack = TTFT - d_s - t_kv
    rho = 2 * slack / (d_m + 2 * slack)
    steps = engine_steps(TINY, ROUND, parallelism={"tensor_parallel": tp_d})
    batch = next(b for b in batch_grid(64) if steps.decode(b, 9) == best.tpot)
    rate = min(n_p * rho / d_m, n_d * sp.Rational(batch) / (7 * best.tpot))
    assert best.tokens_per_second == 8 * rate and best.tokens_per_second_per_gpu == 8 * rate / best.gpus
    assert best.ttft == mean_ttft(d_s, t_kv, rate, n_p, d_m) <= TTFT
    if rate == n_p * rho / d_m:
        assert best.ttft == TTFT
    # (review) its memory per chip is exact, the larger pool's: the decode instance's at that batch
    # holding each request's final context (ISL 5 + the 7 decode steps of OSL 8 = 12 keys), not the
    # float64 sweep's
    decode_memory = decode_step(TINY, ROUND, batch, 12, parallelism={"tensor_parallel": tp_d}).memory_per_chip
    prefill_memory = inference_step(TINY, ROUND, 1, 5, parallelism={"tensor_parallel": tp_p}).memory_per_chip
    assert best.memory_per_chip == max(sp.sympify(decode_memory), sp.sympify(prefill_memory))
    assert isinstance(sp.sympify(best.memory_per_chip), sp.Rational)


def test_pd_ratio_sizes_the_prefill_pool_as_the_plan_does(plan):
    """The plan's best disaggregated deployment is prefill-bound: at its rate, pd_ratio (the same
    M/D/1 pool, solved for the fewest instances) needs exactly its prefill instances."""
    from symcost.plan.disaggregated import pd_ratio

    best = plan.best_disaggregated
    n_p, tp_p, n_d, tp_d = (int(w) for w in best.layout.replace("prefill", "").replace("decode", "")
                            .replace("+", "").replace("x TP", "").split())
    assert best.ttft == TTFT  # the prefill pool binds
    sized = pd_ratio(TINY, best.tokens_per_second / 8, 5, 8, TTFT, TPOT, ROUND, ROUND,
                     {"tensor_parallel": tp_p}, {"tensor_parallel": tp_d})
    assert sized.num_prefill == n_p and sized.ttft == best.ttft


def test_a_replica_never_lowers_tokens_per_second():
    """Twice the GPUs: every aggregated layout runs twice the replicas, each at the same state, so
    the same concurrency per replica serves twice the tokens/s at the same tokens/s/GPU."""
    small = plan_deployment(TINY, ROUND, (5, 8), 2, TTFT, TPOT, disaggregated=False, **OPTIONS)
    large = plan_deployment(TINY, ROUND, (5, 8), 4, TTFT, TPOT, disaggregated=False, **OPTIONS)
    for layout in ("TP 1", "TP 2"):
        a = small.columns["layout"] == f"{2 // int(layout[-1])} x {layout}"
        b = large.columns["layout"] == f"{4 // int(layout[-1])} x {layout}"
        np.testing.assert_allclose(2 * small.columns["tokens_per_second"][a], large.columns["tokens_per_second"][b])
        np.testing.assert_allclose(small.columns["tokens_per_second_per_gpu"][a],
                                   large.columns["tokens_per_second_per_gpu"][b])
    assert large.best_aggregated.tokens_per_second >= small.best_aggregated.tokens_per_second


def test_layouts_are_those_the_model_divides():
    """TINY has 4 heads (2 KV heads): TP 8 does not divide them; TP x PP must fit the GPUs."""
    assert layouts(TINY, ROUND, 8) == [(1, 1, 1), (2, 1, 1), (4, 1, 1)]
    assert layouts(TINY, ROUND, 4, pp=(1, 2)) == [(1, 1, 1), (1, 2, 1), (2, 1, 1), (2, 2, 1), (4, 1, 1)]
    # a dense model has no attention-DP x EP layout: asking for one is one line (the review
    # finding: it was dropped without a word); degree 1, none, is accepted
    assert layouts(TINY, ROUND, 8, ep=[1]) == [(1, 1, 1), (2, 1, 1), (4, 1, 1)]
    with pytest.raises(ConfigError, match="^ep: attention-DP x EP degrees need a mixture-of-experts model"):
        layouts(TINY, ROUND, 8, ep=[1, 2])
    assert batch_grid(7) == [1, 2, 3, 4, 6]


def test_every_evaluated_row_is_a_column_and_the_table_lists_them(plan):
    pd = pytest.importorskip("pandas")
    frame = plan.to_pandas()
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(plan.columns["ttft"])
    assert set(frame["kind"]) == {"aggregated", "disaggregated"}
    assert "best aggregated" in str(plan) and "Pareto front" in str(plan)


@pytest.mark.parametrize("call, message", [
    (lambda: plan_deployment(TINY, ROUND, (5, 8), 0, TTFT, TPOT), "gpus must be a positive whole number"),
    (lambda: plan_deployment(TINY, ROUND, (5, 8), 2, -1, TPOT), "ttft must be a positive number"),
    (lambda: plan_deployment(TINY, ROUND, (5, 8), 2, TTFT, TPOT, tp=[3]), "no TP x PP layout"),
    (lambda: plan_deployment(TINY, ROUND, (5, 8), 2, TTFT, TPOT, memory_fraction=Fraction(1, 10)),
     "memory: no layout of tiny"),
    (lambda: plan_deployment(TINY, ROUND, (5, 8), 2, TTFT, TPOT, max_concurrency=0), "max_concurrency"),
    # review finding: EP degrees on a dense model were dropped without a word (layouts() read them
    # only for a mixture of experts); degree 1 means none and stays accepted
    (lambda: plan_deployment(TINY, ROUND, (5, 8), 2, TTFT, TPOT, ep=[2]),
     r"^ep: attention-DP x EP degrees need a mixture-of-experts model; tiny has no routed experts \(got \[2\]\)$"),
])
def test_bad_input_is_one_line(call, message):
    with pytest.raises(ConfigError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


def test_brute_force_front_on_all_rows_of_a_small_plan(plan):
    """Every row meeting the targets and not on the front is beaten by a front point."""
    cols = plan.columns
    front = [(d.tokens_per_second_per_user, d.tokens_per_second_per_gpu) for d in plan.front]
    for i in itertools.compress(range(len(cols["ttft"])), cols["meets_sla"]):
        u, g = cols["tokens_per_second_per_user"][i], cols["tokens_per_second_per_gpu"][i]
        assert any(fu >= u and fg >= g for fu, fg in front)


# -- cost ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def priced():
    """The module's plan at 3 per GPU-hour, on 3 GPUs (TP 1 and TP 2 layouts: some deployments
    leave a GPU idle, which is still paid for), under each objective."""
    return {objective: plan_deployment(TINY, ROUND, (5, 8), 3, TTFT, TPOT, gpu_price=3, objective=objective,
                                       **OPTIONS) for objective in ("throughput", "cost")}


def test_without_a_price_the_cost_is_none_everywhere(plan):
    """Review finding: without a price the sweep's rows (the front, the table) said NaN and the
    exact best rows None. One convention: ``None`` in every Deployment, the columns and the table,
    and the text shows no cost."""
    rows = [plan.best_aggregated, plan.best_disaggregated, *plan.front]
    assert all(d.cost_per_million_tokens is None for d in rows)
    assert all(v is None for v in plan.columns["cost_per_million_tokens"])
    assert plan.to_pandas()["cost_per_million_tokens"].tolist() == [None] * len(plan.columns["ttft"])
    assert "per 1M tokens" not in str(plan)


def test_cost_per_million_tokens_by_hand(priced):
    """3 GPUs at 3 per hour cost 9/3600 per second; at X output tokens/s a million tokens take
    10^6/X seconds: 9 x 10^6/(3600 X) = 2500/X (exact for the best, float64 for every row)."""
    plan = priced["throughput"]
    for best in (plan.best_aggregated, plan.best_disaggregated):
        assert best.cost_per_million_tokens == sp.Rational(2500) / best.tokens_per_second
    cols = plan.columns
    assert np.allclose(cols["cost_per_million_tokens"], 2500 / cols["tokens_per_second"], rtol=1e-15)


def test_the_cost_objective_takes_the_most_tokens_over_the_gpus_paid_for(priced):
    """By brute force over the rows meeting the targets: the cheapest of each kind is the row with
    the most tokens/s (all 3 GPUs paid for); the throughput objective's, the most tokens/s/GPU."""
    for objective, key in (("cost", "tokens_per_second"), ("throughput", "tokens_per_second_per_gpu")):
        plan = priced[objective]
        cols = plan.columns
        for kind in ("aggregated", "disaggregated"):
            mine = (cols["kind"] == kind) & cols["meets_sla"]
            best = getattr(plan, f"best_{kind}")
            assert float(getattr(best, key)) == pytest.approx(cols[key][mine].max(), rel=1e-12)
    # the cheapest never costs more than the best per GPU used, nor serves more tokens per GPU used
    cheap, fast = priced["cost"].best_aggregated, priced["throughput"].best_aggregated
    assert cheap.cost_per_million_tokens <= fast.cost_per_million_tokens
    assert fast.tokens_per_second_per_gpu >= cheap.tokens_per_second_per_gpu


def test_a_budget_buys_whole_gpus():
    from symcost.plan.serving.deploy import gpus_for_budget

    assert gpus_for_budget(20, Fraction(5, 2)) == 8 and gpus_for_budget(Fraction(99, 10), 1) == 9
    with pytest.raises(ConfigError, match="budget: 1 per hour buys no GPU at 2 per GPU-hour"):
        gpus_for_budget(1, 2)
    with pytest.raises(ConfigError, match="objective: 'cost' needs gpu_price"):
        plan_deployment(TINY, ROUND, (5, 8), 2, TTFT, TPOT, objective="cost", **OPTIONS)


# -- attention data-parallelism with expert parallelism (MoE) --------------------------------


def _tiny_moe():
    from symcost.models.builders import mixtral

    return mixtral(hidden_size=128, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=1000,
                   intermediate_size=256, num_experts=4, top_k=2, name="tiny-moe")


def test_moe_layouts_add_attention_dp_with_ep_degrees_that_divide_the_experts():
    """4 experts: EP 2 and 4 divide them, 8 does not; TP 8 does not divide the 4 heads."""
    moe = _tiny_moe()
    assert layouts(moe, ROUND, 8) == [(1, 1, 1), (2, 1, 1), (4, 1, 1), (1, 1, 2), (1, 1, 4)]
    assert layouts(moe, ROUND, 8, tp=[1], ep=[1, 4]) == [(1, 1, 1), (1, 1, 4)]


def test_an_attention_dp_rank_holds_its_share_of_the_experts_and_replicas_count_ranks():
    """A rank of DP-attention 2 x EP 2 holds half the experts: each expert 3 x 128 x 256 = 98,304
    parameters, 4 per layer, 2 layers = 786,432; half of them, 393,216 x 2 bytes = 786,432 bytes
    fewer than TP 1 (attention and the rest whole on every rank). On 4 GPUs: 2 replicas of 2
    ranks, 4 engines: concurrency and tokens/s 4 times a rank's, tokens/s/GPU a rank's."""
    moe = _tiny_moe()
    options = dict(token_budget=40, memory_fraction=Fraction(1, 2))
    dense = serving_curve(moe, ROUND, (5, 8), parallelism={"tensor_parallel": 1}, **options)
    rank = serving_curve(moe, ROUND, (5, 8), parallelism={"data_parallel": 2, "expert_parallel": 2,
                                                           "expert_tensor_parallel": 1}, **options)
    assert dense.memory.weights - rank.memory.weights == 786_432 and rank.chips == 1
    plan = plan_deployment(moe, ROUND, (5, 8), 4, 1, 1, tp=[1], ep=[2], disaggregated=False, max_concurrency=8,
                           **options)
    cols = plan.columns
    mine = cols["layout"] == "2 x DP-attention 2 x EP 2"
    assert set(cols["gpus"][mine]) == {4}
    assert cols["concurrency"][mine].tolist() == [4.0 * c for c in range(1, 9)]
    at3 = rank.at(3)
    row = np.nonzero(mine)[0][2]
    assert cols["tokens_per_second"][row] == pytest.approx(4 * float(at3.tokens_per_second), rel=1e-12)
    assert cols["tokens_per_second_per_gpu"][row] == pytest.approx(float(at3.tokens_per_second_per_gpu), rel=1e-12)


def test_an_attention_dp_decode_pool_batches_per_rank():
    """A decode instance of DP-attention 2 x EP 2: 2 GPUs, a batch B of B/2 per rank, its TPOT the
    rank's decode step at B/2 requests (engine_steps), its KV bound a rank's."""
    from symcost.plan.serving.deploy import _decode, _Options
    from symcost.plan.serving.workload import Workload

    moe = _tiny_moe()
    opts = _Options(moe, ROUND, Workload.of(5, 8), 4, "bf16", sp.Integer(1), sp.Integer(1), 40, Fraction(1, 2), 64)
    dec = _decode(opts, (1, 1, 2))
    steps = engine_steps(moe, ROUND, parallelism={"data_parallel": 2, "expert_parallel": 2,
                                                   "expert_tensor_parallel": 1})
    context = opts.workload.decode_context(ROUND.runtime)
    assert dec.chips == 2 and dec.batches.tolist() == [2.0 * b for b in batch_grid(64)]
    for k, b in enumerate(batch_grid(64)):
        assert dec.tpot[k] == pytest.approx(float(steps.decode(b, context)), rel=1e-12)


# -- a percentile TTFT target ------------------------------------------------------------------


@pytest.fixture(scope="module")
def p90():
    return plan_deployment(TINY, ROUND, (5, 8), 4, TTFT, TPOT, ttft_percentile=Fraction(9, 10), **OPTIONS)


def test_a_p90_ttft_target_bounds_the_prefill_load_by_the_wait_distribution(p90):
    """With a p90 target X the prefill instances (M/D/1, service D_m, Poisson arrivals at
    lambda/n_p each) may run at the load rho whose p90 wait is T' = X - D_s - T_kv: W(T') >= 0.9,
    W the waiting-time CDF (queueing.md1_wait_cdf), and no more (W(T') < 0.9 a hair above it).
    The best disaggregated row's TTFT is D_s + T_kv + the p90 wait at its load."""
    from symcost.plan.serving.queueing import md1_wait_cdf, md1_wait_quantile

    best = p90.best_disaggregated
    assert best is not None and p90.ttft_percentile == Fraction(9, 10)
    n_p, tp_p, n_d, tp_d, d_s, d_m, t_kv = _disaggregated_terms(best)
    slack = TTFT - d_s - t_kv
    rate = best.tokens_per_second / 8  # 8 output tokens per request
    per_instance = rate / n_p
    assert md1_wait_cdf(per_instance, d_m, slack) >= sp.Rational(9, 10)
    assert float(best.ttft) == pytest.approx(float(d_s + t_kv + md1_wait_quantile(per_instance, d_m,
                                                                                   sp.Rational(9, 10))), rel=1e-12)
    assert best.ttft <= TTFT
    if best.ttft > TTFT * (1 - 1e-9):  # the prefill pool binds: a load 1e-6 higher misses the p90
        assert md1_wait_cdf(per_instance * (1 + sp.Rational(1, 10**6)), d_m, slack) < sp.Rational(9, 10)


def test_a_p90_target_is_stricter_than_the_mean_for_prefill_and_says_so(plan, p90):
    """The p90 of the M/D/1 wait exceeds its mean at these loads, so the disaggregated rows serve at
    most the mean plan's rate; aggregated rows (a closed loop at steady state: every request alike,
    one TTFT) are the mean plan's, and the text says both."""
    mean_best, best = plan.best_disaggregated, p90.best_disaggregated
    assert best.tokens_per_second_per_gpu <= mean_best.tokens_per_second_per_gpu
    agg = p90.columns["kind"] == "aggregated"
    assert np.array_equal(p90.columns["ttft"][agg], plan.columns["ttft"][agg])
    text = str(p90)
    assert "TTFT p90 <=" in text and "aggregated rows: a closed loop's steady state has one TTFT" in text


def test_a_bad_ttft_percentile_is_one_line():
    for bad in (0, 1, Fraction(3, 2), "p90"):
        with pytest.raises(ConfigError, match="ttft_percentile must be a fraction between 0 and 1") as err:
            plan_deployment(TINY, ROUND, (5, 8), 2, TTFT, TPOT, ttft_percentile=bad, **OPTIONS)
        assert "\n" not in str(err.value)


MIX = ((5, 8, 1), (15, 8, 1))


def test_a_prompt_mix_queues_its_prefills_as_mg1():
    """Issue 23 item 5: prompts of 5 and 15 tokens, half each, take D_m(5) and D_m(15) on a prefill
    instance: the queue is M/G/1 with E[S] their mean and E[S^2] the mean of their squares
    (Pollaczek-Khinchine), so the row's mean TTFT is E[D_s] + T_kv + lambda E[S^2]/(2 (1 - lambda
    E[S])), lambda = rate/n_p, and the target allows rho <= 2 E[S] T'/(E[S^2] + 2 E[S] T'). (Before,
    an M/D/1 queue at the mean service E[S] had a shorter wait than the spread gives.)"""
    from symcost.plan.serving import Workload

    plan = plan_deployment(TINY, ROUND, Workload.mix(MIX), 4, TTFT, TPOT, **OPTIONS)
    best = plan.best_disaggregated
    n_p, tp_p, n_d, tp_d = (int(w) for w in best.layout.replace("prefill", "").replace("decode", "")
                            .replace("+", "").replace("x TP", "").split())
    pre, dec = {"tensor_parallel": tp_p}, {"tensor_parallel": tp_d}
    stages = [prefill_stage_time(TINY, ROUND, 1, isl, parallelism=pre) for isl in (5, 15)]
    mean, square = (stages[0] + stages[1]) / 2, (stages[0] ** 2 + stages[1] ** 2) / 2
    assert square > mean**2  # a spread: the two prompts' prefills differ
    d_s = sum(inference_step(TINY, ROUND, 1, isl, parallelism=pre).ttft for isl in (5, 15)) / 2
    t_kv = max(sum(kv_transfer(TINY, ROUND, isl, parallelism=p)[1] for isl in (5, 15)) / 2 for p in (pre, dec))
    rate = best.tokens_per_second / 8  # O = 8 outputs per request
    lam = rate / n_p
    assert best.ttft == d_s + t_kv + lam * square / (2 * (1 - lam * mean)) <= TTFT
    slack = TTFT - d_s - t_kv
    assert lam * mean <= 2 * mean * slack / (square + 2 * mean * slack)


def test_a_percentile_target_for_a_prompt_mix_is_one_line():
    """The wait's distribution is M/D/1's, one service time: a mix of prompt lengths (M/G/1) has a
    mean only, so a percentile target is refused, naming the field."""
    from symcost.plan.serving import Workload

    with pytest.raises(ConfigError, match=r"^ttft_percentile: .*one prompt length"):
        plan_deployment(TINY, ROUND, Workload.mix(MIX), 4, TTFT, TPOT, ttft_percentile=Fraction(9, 10), **OPTIONS)
